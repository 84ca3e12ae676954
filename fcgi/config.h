/* config.h: Vellum's settings. One table of keys (config.c) drives the config file
 * (key = value), VELLUM_* environment variables and --flags, in that order of precedence
 * (flags win), and prints the commented example (`vellum config --example`). */
#ifndef VELLUM_CONFIG_H
#define VELLUM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "verr.h"

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

struct vellum_config {
    char config_path[1024];       /* the file read, or "" when none */
    char listen[512];             /* "host:port" or a unix socket path ("unix:/path" or "/path") */
    long workers;                 /* 0 = number of cores */
    long socket_mode;             /* permissions of a unix listen socket */
    char image_root[1024];
    char database[1024];
    char base_url[512];           /* "" = build ids from the request */
    char prefix[256];             /* URL prefix in front of every route, "" or "/something" */
    long log_level;               /* enum log_level */
    long max_requests_per_worker; /* 0 = never recycle */
    long shutdown_timeout_ms;     /* drain time for in-flight requests on SIGTERM / reload */
    bool debug_routes;
    char memcached_servers[1024]; /* "host:port,..." shared by hosts; "" = off */
    long memcached_ttl_s;         /* how long memcached keeps an image; 0 = until evicted */            /* /debug/... routes for tests; never in production */
    /* Image API */
    long max_width;               /* maxWidth advertised and enforced; 0 = none */
    long max_height;              /* maxHeight; 0 = same as max_width */
    long max_area;                /* maxArea; 0 = none */
    long max_decode_pixels;       /* refuse to decode more than this many pixels per request */
    long max_request_memory_mb;   /* refuse requests estimated to need more; 0 = none */
    long request_timeout_ms;      /* wall-clock limit per request; 0 = none */
    long block_cache_mb;          /* decoded-block cache shared by workers; 0 = off */
    long block_size;              /* most a block covers, pixels of the full image per side */
    char block_cache_dir[1024];   /* "" = block_cache_default_dir() */
    char tile_store_dir[1024];    /* images kept as files for the web server; "" = off */
    long tile_store_mb;           /* cap of the tile store */
    long jpeg_quality;
    long decode_threads;          /* OpenJPEG threads per decode */
    long cache_max_age;           /* Cache-Control max-age (seconds) for images and info.json */
};

/* Fill cfg with the built-in defaults. */
void config_defaults(struct vellum_config *cfg);

/* Load the configuration: defaults, then the file (--config FILE / VELLUM_CONFIG, else
 * /etc/vellum/vellum.conf when it exists), then VELLUM_* variables from envp, then the flags in
 * argv (--key value or --key=value; '-' and '_' are the same in keys). argv holds only flags.
 * On error returns -1 with a message naming the key, the value, where it came from and what is
 * allowed. */
int config_load(struct vellum_config *cfg, int argc, char **argv, char **envp, struct verr *err);

/* Set one key from a string; source names where it came from (for messages). */
int config_set(struct vellum_config *cfg, const char *key, const char *value, const char *source,
               struct verr *err);

/* Write the effective configuration as key = value lines. */
void config_print(const struct vellum_config *cfg, FILE *out);

/* Write a complete, commented example configuration with the defaults. */
void config_print_example(FILE *out);

/* The help lines for flags (one per key), for --help. */
void config_print_flags(FILE *out);

#endif
