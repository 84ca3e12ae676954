/* main.c: the `vellum` command and its verbs. Started with a listening socket on fd 0 and no
 * verb (mod_fcgid, spawn-fcgi), it serves as a single FastCGI worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pool.h"

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
    fprintf(stderr, "vellum: unknown verb \"%s\"\n\n", verb);
    usage(stderr);
    return 2;
}
