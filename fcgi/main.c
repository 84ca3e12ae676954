/* main.c: the `vellum` command and its verbs. Started with a listening socket on fd 0 and no
 * verb (mod_fcgid, spawn-fcgi), it serves as a single FastCGI worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_import.h"
#include "codec.h"
#include "config.h"
#include "iiif.h"
#include "log.h"
#include "pool.h"
#include "source_cache.h"

extern char **environ;

static void usage(FILE *out)
{
    fputs("Usage: vellum VERB [OPTIONS]\n"
          "\n"
          "Vellum is a IIIF image and presentation server (FastCGI, behind nginx or Apache).\n"
          "\n"
          "Verbs:\n"
          "  serve            run the FastCGI worker pool (see `vellum serve --help`)\n"
          "  config           print the effective configuration (--example: a commented file)\n"
          "  import FILE...   load catalogue exports (CSV, JSON Lines); see docs/import.md\n"
          "  info SOURCE      what Vellum reads from a source image's header\n"
          "  render ID REGION SIZE ROTATION QUALITY.FORMAT [-o FILE]\n"
          "                   run one Image API 3.0 request offline (ID under image_root)\n"
          "  --version        print the version\n"
          "  --help           this text\n"
          "\n"
          "Started by mod_fcgid or spawn-fcgi (a listening socket on fd 0), vellum serves as one\n"
          "worker and the web server manages the processes.\n"
          "\n"
          "Configuration: vellum.conf (--config FILE, VELLUM_CONFIG, or /etc/vellum/vellum.conf),\n"
          "then VELLUM_<KEY> environment variables, then --<key> flags.\n",
          out);
}

static void serve_usage(FILE *out)
{
    fputs("Usage: vellum serve [--config FILE] [--key value]...\n"
          "\n"
          "Runs the FastCGI worker pool in the foreground. Signals: SIGTERM/SIGINT drain and stop;\n"
          "SIGHUP re-reads the configuration and replaces the workers one by one.\n"
          "\n"
          "Options (each is also a vellum.conf key and a VELLUM_<KEY> variable):\n"
          "  --config FILE              configuration file\n",
          out);
    config_print_flags(out);
}

struct reload_ctx {
    int argc;
    char **argv;
};

/* SIGHUP: the same sources as at start-up, read again (the environment is the process's own). */
static int reload_config(void *ctx, struct vellum_config *cfg, struct verr *err)
{
    struct reload_ctx *r = ctx;
    return config_load(cfg, r->argc, r->argv, environ, err);
}

static int has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], flag))
            return 1;
    }
    return 0;
}

static int load_or_die(struct vellum_config *cfg, int argc, char **argv)
{
    struct verr err = {0, ""};
    if (config_load(cfg, argc, argv, environ, &err) < 0) {
        fprintf(stderr, "vellum: configuration error: %s\n", err.msg);
        return -1;
    }
    log_set_level((enum log_level)cfg->log_level);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    if (has_flag(argc, argv, "--help") || has_flag(argc, argv, "-h")) {
        serve_usage(stdout);
        return 0;
    }
    static struct vellum_config cfg;
    if (load_or_die(&cfg, argc, argv) < 0)
        return 2;
    if (pool_fd0_is_listener())
        return pool_run_single(&cfg);
    struct reload_ctx rc = {argc, argv};
    return pool_run(&cfg, reload_config, &rc);
}

static int cmd_config(int argc, char **argv)
{
    if (has_flag(argc, argv, "--help")) {
        fputs("Usage: vellum config [--example] [--config FILE] [--key value]...\n"
              "Prints the configuration vellum would run with, or (--example) a commented\n"
              "vellum.conf with every key and its default.\n",
              stdout);
        return 0;
    }
    if (has_flag(argc, argv, "--example")) {
        config_print_example(stdout);
        return 0;
    }
    struct vellum_config cfg;
    if (load_or_die(&cfg, argc, argv) < 0)
        return 2;
    config_print(&cfg, stdout);
    return 0;
}

static const char *format_name(enum codec_format f)
{
    switch (f) {
    case CODEC_FORMAT_JP2: return "JP2";
    case CODEC_FORMAT_J2K: return "J2K codestream";
    case CODEC_FORMAT_JPEG: return "JPEG";
    case CODEC_FORMAT_PNG: return "PNG";
    }
    return "?";
}

static int cmd_info(int argc, char **argv)
{
    if (argc < 1 || has_flag(argc, argv, "--help")) {
        fputs("Usage: vellum info SOURCE...\nPrints size, resolution levels, tiles, components and\n"
              "ICC profile of each source file, as the server sees them.\n",
              argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        struct codec_info info;
        struct verr err = {0, ""};
        memset(&info, 0, sizeof info);
        if (codec_probe(argv[i], 0, &info, &err) < 0) {
            fprintf(stderr, "vellum: %s: %s (status %d)\n", argv[i], err.msg, err.status);
            rc = 1;
            continue;
        }
        printf("%s\n  format: %s\n  size: %ux%u\n  channels: %d (%d-bit source)\n"
               "  resolution levels: %d (scale factors 1..%u native)\n",
               argv[i], format_name(info.format), info.width, info.height, info.channels,
               info.bit_depth, info.levels, 1u << info.levels);
        if (info.tile_w)
            printf("  tiles: %ux%u\n", info.tile_w, info.tile_h);
        else
            printf("  tiles: none (one tile)\n");
        if (info.orientation > 1)
            printf("  EXIF orientation: %d (sizes are as displayed)\n", info.orientation);
        printf("  ICC profile: %s", info.icc ? "yes" : "none");
        if (info.icc)
            printf(" (%zu bytes)", info.icc_len);
        printf("\n");
        codec_info_clear(&info);
    }
    return rc;
}

static int cmd_render(int argc, char **argv)
{
    if (argc < 5 || has_flag(argc, argv, "--help")) {
        fputs("Usage: vellum render ID REGION SIZE ROTATION QUALITY.FORMAT [-o FILE] [--key value]...\n"
              "Runs one Image API 3.0 request against ID under image_root, writing the image to\n"
              "FILE or stdout. Example: vellum render page1.jp2 full 512, 0 default.jpg -o t.jpg\n",
              argc < 5 ? stderr : stdout);
        return argc < 5 ? 2 : 0;
    }
    const char *outpath = NULL;
    char *flags[64];
    int nflags = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            outpath = argv[++i];
        else if (nflags < 64)
            flags[nflags++] = argv[i];
    }
    struct vellum_config cfg;
    if (load_or_die(&cfg, nflags, flags) < 0)
        return 2;
    struct verr err = {0, ""};
    char path[4096];
    struct codec_info info;
    struct iiif_params params;
    struct iiif_plan plan;
    struct iiif_limits limits = {(uint32_t)cfg.max_width,
                                 (uint32_t)(cfg.max_height ? cfg.max_height : cfg.max_width),
                                 (uint64_t)cfg.max_area};
    unsigned char *bytes = NULL;
    size_t len = 0;
    memset(&info, 0, sizeof info);
    int rc = 1;
    if (codec_resolve(cfg.image_root, argv[0], path, sizeof path, &err) < 0 ||
        codec_probe(path, (uint64_t)cfg.max_decode_pixels, &info, &err) < 0 ||
        iiif_parse(IIIF_V3, argv[1], argv[2], argv[3], argv[4], &params, &err) < 0 ||
        iiif_plan_request(&params, info.width, info.height, &limits, &plan, &err) < 0)
        goto fail;
    struct codec_render_opts opts = {
        .max_decode_pixels = (uint64_t)cfg.max_decode_pixels,
        .jpeg_quality = (int)cfg.jpeg_quality,
        .threads = (int)cfg.decode_threads,
        .max_bytes = (uint64_t)cfg.max_request_memory_mb << 20,
    };
    if (codec_render(path, &info, &plan, &opts, &bytes, &len, &err) < 0)
        goto fail;
    FILE *out = outpath ? fopen(outpath, "wb") : stdout;
    if (!out) {
        verr_set(&err, 500, "cannot write %s", outpath);
        goto fail;
    }
    size_t w = fwrite(bytes, 1, len, out);
    if ((outpath ? fclose(out) : fflush(out)) != 0 || w != len) {
        verr_set(&err, 500, "write error");
        goto fail;
    }
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "vellum: render: %s (status %d)\n", err.msg, err.status);
    free(bytes);
    codec_info_clear(&info);
    return rc;
}

int main(int argc, char **argv)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc < 2) {
        /* mod_fcgid and spawn-fcgi run us without arguments, the socket on fd 0. */
        if (pool_fd0_is_listener()) {
            static struct vellum_config cfg;
            if (load_or_die(&cfg, 0, NULL) < 0)
                return 2;
            return pool_run_single(&cfg);
        }
        usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(verb, "--version") || !strcmp(verb, "version")) {
        printf("vellum %s\n", VELLUM_VERSION);
        return 0;
    }
    if (!strcmp(verb, "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(verb, "config"))
        return cmd_config(argc - 2, argv + 2);
    if (!strcmp(verb, "import"))
        return cmd_import(argc - 2, argv + 2, environ);
    if (!strcmp(verb, "info"))
        return cmd_info(argc - 2, argv + 2);
    if (!strcmp(verb, "render"))
        return cmd_render(argc - 2, argv + 2);
    fprintf(stderr, "vellum: unknown verb \"%s\"\n\n", verb);
    usage(stderr);
    return 2;
}
