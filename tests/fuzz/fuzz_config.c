/* fuzz_config: Vellum's configuration parsing (fcgi/config.h). Each input is read twice:
 *  1. as a config file, through config_load(--config FILE), FILE being a per-process
 *     temporary file the input is written to;
 *  2. as a command line: its lines become argv, except lines "VELLUM_KEY=value", which become
 *     the environment (--config and VELLUM_CONFIG are dropped: they would name other files).
 * A successful load must leave every setting in range and is printed (config_print). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define MAX_ARGS 64

static char file[4096];
static FILE *devnull;

static void cleanup(void)
{
    if (file[0])
        unlink(file);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(file, sizeof file, "%s/vellum-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(file);
    if (fd < 0) {
        perror("mkstemp");
        abort();
    }
    close(fd);
    atexit(cleanup);
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    return 0;
}

static void write_file(const void *data, size_t size)
{
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(file);
        abort();
    }
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_config: %s\n", what);
    abort();
}

/* Strings stay terminated inside their fields, whatever was loaded. */
static void check_config(const struct vellum_config *c)
{
    if (!memchr(c->config_path, 0, sizeof c->config_path) ||
        !memchr(c->listen, 0, sizeof c->listen) ||
        !memchr(c->image_root, 0, sizeof c->image_root) ||
        !memchr(c->database, 0, sizeof c->database) ||
        !memchr(c->base_url, 0, sizeof c->base_url) || !memchr(c->prefix, 0, sizeof c->prefix))
        fail("a string setting is not NUL-terminated");
    if (c->log_level < LOG_LEVEL_ERROR || c->log_level > LOG_LEVEL_DEBUG || c->jpeg_quality < 1 ||
        c->jpeg_quality > 100 || c->max_decode_pixels < 1 || c->workers < 0)
        fail("a number setting outside its range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vellum_config cfg;
    struct verr err = {0, ""};

    /* 1. A config file. */
    write_file(data, size);
    {
        char *argv[] = {"--config", file, NULL};
        char *envp[] = {NULL};
        memset(&cfg, 0, sizeof cfg);
        if (config_load(&cfg, 2, argv, envp, &err) == 0) {
            check_config(&cfg);
            config_print(&cfg, devnull);
        } else if (err.status != 400) {
            fail("load error without status 400");
        }
    }

    /* 2. A command line and environment. */
    char *text = malloc(size + 1);
    char *argv[MAX_ARGS + 1], *envp[MAX_ARGS + 1];
    int argc = 0, envc = 0;
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = text, *next; line && argc < MAX_ARGS && envc < MAX_ARGS; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (!strncmp(line, "--config", 8) || !strncmp(line, "VELLUM_CONFIG=", 14))
            continue;
        if (!strncmp(line, "VELLUM_", 7) && strchr(line, '='))
            envp[envc++] = line;
        else
            argv[argc++] = line;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    memset(&cfg, 0, sizeof cfg);
    err.status = 0;
    if (config_load(&cfg, argc, argv, envp, &err) == 0) {
        check_config(&cfg);
        config_print(&cfg, devnull);
    } else if (err.status != 400) {
        fail("load error without status 400");
    }
    free(text);
    return 0;
}
