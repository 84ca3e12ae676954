/* config.c: the key table and the three sources (file, environment, flags).
 * Every key is declared once below, with its type, bounds and the comment that the example
 * file and --help print, so documentation and behaviour cannot drift apart. */
#include "config.h"
#include "memcache.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum key_type { KEY_STRING, KEY_LONG, KEY_BOOL, KEY_LOG_LEVEL, KEY_OCTAL };

struct key {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size;      /* for strings: buffer size */
    long min, max;    /* for numbers */
    const char *def;  /* default, as text */
    const char *help; /* one line, for the example file and --help */
};

#define STR(field) KEY_STRING, offsetof(struct vellum_config, field), \
                   sizeof(((struct vellum_config *)0)->field), 0, 0
#define NUM(field, lo, hi) KEY_LONG, offsetof(struct vellum_config, field), 0, lo, hi

static const struct key keys[] = {
    {"listen", STR(listen), "127.0.0.1:9000",
     "where the FastCGI pool listens: host:port (TCP) or a unix socket path (/run/vellum.sock)"},
    {"workers", NUM(workers, 0, 1024), "0",
     "worker processes; 0 = one per core Vellum may use (its CPU affinity, capped by a cgroup "
     "CPU quota such as docker --cpus)"},
    {"socket_mode", KEY_OCTAL, offsetof(struct vellum_config, socket_mode), 0, 0, 0777, "0666",
     "permissions of a unix listen socket (octal), so the web server's user can connect"},
    {"image_root", STR(image_root), "/var/lib/vellum/images",
     "folder holding the source images; identifiers are paths under it and never escape it"},
    {"database", STR(database), "/var/lib/vellum/vellum.db",
     "SQLite database with manifests and collections (filled by `vellum import`)"},
    {"base_url", STR(base_url), "",
     "public URL in front of every id (https://iiif.example.org); empty = from the request"},
    {"prefix", STR(prefix), "", "path prefix of every route (e.g. /vellum); empty = none"},
    {"log_level", KEY_LOG_LEVEL, offsetof(struct vellum_config, log_level), 0, 0, 3, "info",
     "error, warn, info (one access-log line per request) or debug"},
    {"max_requests_per_worker", NUM(max_requests_per_worker, 0, LONG_MAX), "100000",
     "recycle a worker after this many requests; 0 = never"},
    {"shutdown_timeout_ms", NUM(shutdown_timeout_ms, 0, 3600000), "10000",
     "on stop or reload, how long in-flight requests may take before workers are killed"},
    {"debug_routes", KEY_BOOL, offsetof(struct vellum_config, debug_routes), 0, 0, 1, "false",
     "serve /debug/sleep?ms=N and /debug/crash (for the tests); keep false in production"},
    {"max_width", NUM(max_width, 0, 1000000), "10000",
     "largest output width (maxWidth in info.json); 0 = no limit"},
    {"max_height", NUM(max_height, 0, 1000000), "10000",
     "largest output height (maxHeight); 0 = same as max_width"},
    {"max_area", NUM(max_area, 0, LONG_MAX), "50000000",
     "largest output area in pixels (maxArea); 0 = no limit"},
    {"max_decode_pixels", NUM(max_decode_pixels, 1, LONG_MAX), "400000000",
     "refuse a request that would decode more source pixels than this"},
    {"max_request_memory_mb", NUM(max_request_memory_mb, 0, 1048576), "2048",
     "refuse (413) a request estimated (from the header) to need more memory; 0 = no limit"},
    {"request_timeout_ms", NUM(request_timeout_ms, 0, 3600000), "30000",
     "wall-clock limit per request; a decode past it answers 503 (worker replaced); 0 = none"},
    {"block_cache_mb", NUM(block_cache_mb, 0, 1048576), "256",
     "decoded JPEG 2000 blocks shared by the workers (see docs/performance.md), in MB; 0 = off"},
    {"block_size", NUM(block_size, 64, 8192), "1024",
     "a cached block covers at most this many pixels of the full image per side (bigger: fewer "
     "decodes, slower first tile of a block)"},
    {"block_cache_dir", STR(block_cache_dir), "",
     "folder of the block cache (tmpfs is best); empty = /dev/shm/vellum-<uid>"},
    {"tile_store_dir", STR(tile_store_dir), "",
     "keep every image made for a GET as a file here, for the web server to send itself "
     "(docs/deploy.md); empty = off"},
    {"tile_store_mb", NUM(tile_store_mb, 1, 16777216), "4096",
     "cap of the tile store in MB; past it the files nginx sent least recently are removed "
     "down to 3/4"},
    {"memcached_servers", STR(memcached_servers), "",
     "memcached servers (host:port,host:port) that several Vellum hosts share images through "
     "(docs/deploy.md); empty = off"},
    {"memcached_ttl_s", NUM(memcached_ttl_s, 0, 2592000), "86400",
     "how long memcached keeps an image, in seconds (at most 30 days); 0 = until it is evicted"},
    {"jpeg_quality", NUM(jpeg_quality, 1, 100), "85", "JPEG output quality, 1..100"},
    {"decode_threads", NUM(decode_threads, 1, 64), "1",
     "OpenJPEG threads per direct decode, given only cores no other decode holds (block decodes, "
     "and direct ones over several JPEG 2000 tiles, take every free core)"},
    {"cache_max_age", NUM(cache_max_age, 0, 31536000), "86400",
     "Cache-Control max-age in seconds for images and info.json"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* "image-root" and "IMAGE_ROOT" name the same key as "image_root". */
static const struct key *key_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const char *k = keys[i].name;
        if (strlen(k) != len)
            continue;
        size_t j = 0;
        for (; j < len; j++) {
            char c = (char)tolower((unsigned char)name[j]);
            if (c == '-')
                c = '_';
            if (c != k[j])
                break;
        }
        if (j == len)
            return &keys[i];
    }
    return NULL;
}

static bool parse_long(const char *s, int base, long *out)
{
    char *end;
    if (*s == '\0' || isspace((unsigned char)*s))
        return false;
    errno = 0;
    long v = strtol(s, &end, base);
    if (errno || *end != '\0')
        return false;
    *out = v;
    return true;
}

static int key_set(struct vellum_config *cfg, const struct key *k, const char *value,
                   const char *source, struct verr *err)
{
    char *field = (char *)cfg + k->offset;
    long v;
    switch (k->type) {
    case KEY_STRING:
        if (strlen(value) >= k->size)
            return verr_set(err, 400, "%s = \"%.40s...\" (%s): longer than %zu characters",
                            k->name, value, source, k->size - 1);
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case KEY_LONG:
    case KEY_OCTAL:
        if (!parse_long(value, k->type == KEY_OCTAL ? 8 : 10, &v) || v < k->min || v > k->max) {
            if (k->type == KEY_OCTAL)
                return verr_set(err, 400, "%s = \"%.60s\" (%s): expected an octal mode from 0 to %lo",
                                k->name, value, source, k->max);
            return verr_set(err, 400, "%s = \"%.60s\" (%s): expected an integer from %ld to %ld",
                            k->name, value, source, k->min, k->max);
        }
        *(long *)field = v;
        return 0;
    case KEY_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on") ||
            !strcmp(value, "1")) {
            *(bool *)field = true;
            return 0;
        }
        if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off") ||
            !strcmp(value, "0")) {
            *(bool *)field = false;
            return 0;
        }
        return verr_set(err, 400, "%s = \"%.60s\" (%s): expected true or false", k->name, value,
                        source);
    case KEY_LOG_LEVEL:
        for (long i = 0; i < 4; i++) {
            if (!strcmp(value, level_names[i])) {
                *(long *)field = i;
                return 0;
            }
        }
        return verr_set(err, 400, "%s = \"%.60s\" (%s): expected error, warn, info or debug",
                        k->name, value, source);
    }
    return verr_set(err, 500, "%s: unknown key type", k->name);
}

int config_set(struct vellum_config *cfg, const char *key, const char *value, const char *source,
               struct verr *err)
{
    const struct key *k = key_find(key, strlen(key));
    if (!k)
        return verr_set(err, 400, "unknown setting \"%.60s\" (%s); `vellum config --example` lists them",
                        key, source);
    return key_set(cfg, k, value, source, err);
}

void config_defaults(struct vellum_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        /* The defaults are in the table and valid by construction; a failure here is a bug
         * that the unit test catches. */
        (void)key_set(cfg, &keys[i], keys[i].def, "default", NULL);
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* key = value lines; '#' starts a comment line; values may be wrapped in double quotes. */
static int load_file(struct vellum_config *cfg, const char *path, struct verr *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return verr_set(err, 400, "cannot read config file %.200s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = verr_set(err, 400, "%.200s line %d: line longer than %zu bytes", path, lineno,
                          sizeof line - 2);
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = verr_set(err, 400, "%.200s line %d: expected key = value, got \"%.60s\"", path,
                          lineno, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        char source[300];
        snprintf(source, sizeof source, "%.200s line %d", path, lineno);
        if (config_set(cfg, key, value, source, err) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = verr_set(err, 400, "error reading config file %.200s", path);
    fclose(f);
    return rc;
}

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++) {
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

int config_load(struct vellum_config *cfg, int argc, char **argv, char **envp, struct verr *err)
{
    config_defaults(cfg);

    /* Which file: --config wins over VELLUM_CONFIG, which wins over the system default. */
    const char *path = env_get(envp, "VELLUM_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    if (path && *path) {
        if (load_file(cfg, path, err) < 0)
            return -1;
        snprintf(cfg->config_path, sizeof cfg->config_path, "%s", path);
    } else if (access("/etc/vellum/vellum.conf", R_OK) == 0) {
        if (load_file(cfg, "/etc/vellum/vellum.conf", err) < 0)
            return -1;
        snprintf(cfg->config_path, sizeof cfg->config_path, "/etc/vellum/vellum.conf");
    }

    for (size_t i = 0; i < NKEYS; i++) {
        char name[80] = "VELLUM_";
        size_t j = 7;
        for (const char *c = keys[i].name; *c && j < sizeof name - 1; c++)
            name[j++] = (char)toupper((unsigned char)*c);
        name[j] = '\0';
        const char *v = env_get(envp, name);
        if (v) {
            char source[100];
            snprintf(source, sizeof source, "environment %s", name);
            if (key_set(cfg, &keys[i], v, source, err) < 0)
                return -1;
        }
    }

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return verr_set(err, 400, "unexpected argument \"%.60s\"", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const char *value;
        if (klen == 6 && !strncmp(a, "config", 6)) {
            if (!eq)
                i++;
            continue;
        }
        const struct key *k = key_find(a, klen);
        if (!k)
            return verr_set(err, 400, "unknown option --%.*s; see --help", (int)(klen > 60 ? 60 : klen), a);
        if (eq) {
            value = eq + 1;
        } else if (k->type == KEY_BOOL && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return verr_set(err, 400, "option --%s needs a value", k->name);
        }
        char source[100];
        snprintf(source, sizeof source, "flag --%s", k->name);
        if (key_set(cfg, k, value, source, err) < 0)
            return -1;
    }

    if (cfg->prefix[0] && (cfg->prefix[0] != '/' || cfg->prefix[strlen(cfg->prefix) - 1] == '/'))
        return verr_set(err, 400, "prefix = \"%.60s\": must start with '/' and not end with '/'",
                        cfg->prefix);
    size_t bl = strlen(cfg->base_url);
    if (bl && strncmp(cfg->base_url, "http://", 7) && strncmp(cfg->base_url, "https://", 8))
        return verr_set(err, 400, "base_url = \"%.60s\": must start with http:// or https://",
                        cfg->base_url);
    if (bl && cfg->base_url[bl - 1] == '/')
        cfg->base_url[bl - 1] = '\0';
    if (!cfg->listen[0])
        return verr_set(err, 400, "listen = \"\": expected host:port or a socket path");
    if (cfg->memcached_servers[0] && !memcache_servers_ok(cfg->memcached_servers))
        return verr_set(err, 400, "memcached_servers = \"%.60s\": expected host:port,host:port",
                        cfg->memcached_servers);
    return 0;
}

static void value_text(const struct vellum_config *cfg, const struct key *k, char *buf, size_t len)
{
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case KEY_STRING: {
        /* The file format trims spaces and strips one pair of quotes: quote values that would
         * otherwise not read back as they are. */
        size_t n = strlen(field);
        bool quote = n && (isspace((unsigned char)field[0]) ||
                           isspace((unsigned char)field[n - 1]) || field[0] == '"');
        snprintf(buf, len, quote ? "\"%s\"" : "%s", field);
        break;
    }
    case KEY_LONG:
        snprintf(buf, len, "%ld", *(const long *)field);
        break;
    case KEY_OCTAL:
        snprintf(buf, len, "0%lo", *(const long *)field);
        break;
    case KEY_BOOL:
        snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
        break;
    case KEY_LOG_LEVEL:
        snprintf(buf, len, "%s", level_names[*(const long *)field & 3]);
        break;
    }
}

void config_print(const struct vellum_config *cfg, FILE *out)
{
    if (cfg->config_path[0])
        fprintf(out, "# read from %s\n", cfg->config_path);
    for (size_t i = 0; i < NKEYS; i++) {
        char v[1100];
        value_text(cfg, &keys[i], v, sizeof v);
        fprintf(out, "%s = %s\n", keys[i].name, v);
    }
}

void config_print_example(FILE *out)
{
    fputs("# vellum.conf: Vellum's configuration (key = value; '#' starts a comment).\n"
          "# Every key can also be set by an environment variable VELLUM_<KEY> (VELLUM_IMAGE_ROOT)\n"
          "# or a flag --<key> (--image-root); flags win over the environment, which wins over\n"
          "# this file. The values below are the defaults.\n",
          out);
    for (size_t i = 0; i < NKEYS; i++)
        fprintf(out, "\n# %s\n%s = %s\n", keys[i].help, keys[i].name, keys[i].def);
}

void config_print_flags(FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char flag[64];
        size_t j = 0;
        for (const char *c = keys[i].name; *c && j < sizeof flag - 1; c++)
            flag[j++] = *c == '_' ? '-' : *c;
        flag[j] = '\0';
        fprintf(out, "  --%-26s %s (default: %s)\n", flag, keys[i].help,
                keys[i].def[0] ? keys[i].def : "empty");
    }
}
