/* cmd_import.c: `vellum import [--config FILE] [--key value]... FILE...`. Separates the flags
 * (for config_load) from the files, opens the configured database writable and imports each
 * file in its own transaction (db_import_file), with progress on stderr and a summary on
 * stdout. The first failing file stops the run; the files before it stay imported. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_import.h"
#include "config.h"
#include "db.h"

static void import_usage(FILE *out)
{
    fputs("Usage: vellum import [--config FILE] [--key value]... FILE...\n"
          "\n"
          "Loads catalogue exports into the SQLite database (--database) that the Presentation\n"
          "API serves, reading each canvas's image size from its file under --image-root.\n"
          "\n"
          "Formats, by extension (the full contract, with examples: docs/import.md):\n"
          "  .csv             UTF-8, a header row, one row per canvas, the rows of an object\n"
          "                   consecutive. Columns: manifest, image (required), label, summary,\n"
          "                   rights, required_statement, nav_date, viewing_direction, behavior,\n"
          "                   collection, metadata.NAME, canvas_label, range. Language tags:\n"
          "                   label@fr; several values in a cell: \"a | b\"; nested ranges and\n"
          "                   collections: \"Part 1 > Chapter 2\".\n"
          "  .jsonl, .ndjson  one JSON object per line: {\"manifest\": \"id\", \"label\": {...},\n"
          "                   \"canvases\": [{\"label\": ..., \"image\": \"id\"}], \"ranges\": "
          "[...], ...}\n"
          "\n"
          "Each file is one transaction: an error rolls that file back entirely and stops the\n"
          "run, with a message naming the file, line and column (exit status 1).\n"
          "The files before a failing one stay imported.\n"
          "Importing an object again replaces it (canvases, ranges, metadata, collections);\n"
          "an unchanged object is left as it was.\n"
          "\n"
          "Options (each is also a vellum.conf key and a VELLUM_<KEY> variable; use\n"
          "--key=value for an option that takes no value, and -- before files named --*):\n"
          "  --config FILE              configuration file\n",
          out);
    config_print_flags(out);
}

struct progress {
    bool is_tty;
};

static void on_progress(void *ctx, const char *file, size_t rows_done)
{
    const struct progress *p = ctx;
    /* Logs of scripted imports get progress only for long files; a terminal gets it all. */
    if (p->is_tty || rows_done > 10000)
        fprintf(stderr, "import: %s: %zu rows...\n", file, rows_done);
}

int cmd_import(int argc, char **argv, char **envp)
{
    char **flags = calloc((size_t)argc + 1, sizeof *flags);
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nflags = 0, nfiles = 0, rc = 2;
    bool is_end_of_flags = false;
    struct db *db = NULL;
    static struct vellum_config cfg;
    struct verr err = {0, ""};

    if (!flags || !files) {
        fputs("vellum: import: out of memory\n", stderr);
        goto done;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_end_of_flags || strncmp(a, "-", 1) || !strcmp(a, "-")) {
            files[nfiles++] = argv[i];
        } else if (!strcmp(a, "--")) {
            is_end_of_flags = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            import_usage(stdout);
            rc = 0;
            goto done;
        } else {
            flags[nflags++] = argv[i];
            if (!strchr(a, '=') && i + 1 < argc)
                flags[nflags++] = argv[++i];
        }
    }
    if (nfiles == 0) {
        fputs("vellum: import: no file to import; see `vellum import --help`\n", stderr);
        goto done;
    }
    if (config_load(&cfg, nflags, flags, envp, &err) < 0) {
        fprintf(stderr, "vellum: import: configuration error: %s\n", err.msg);
        goto done;
    }
    rc = 1;
    if (!(db = db_open(cfg.database, true, &err))) {
        fprintf(stderr, "vellum: import: %s\n", err.msg);
        goto done;
    }
    struct progress progress = {isatty(STDERR_FILENO) == 1};
    struct db_import_stats total = {0, 0, 0, 0};
    for (int i = 0; i < nfiles; i++) {
        struct db_import_stats st;
        if (db_import_file(db, files[i], cfg.image_root, on_progress, &progress, &st, &err) < 0) {
            fprintf(stderr, "vellum: import: %s\n", err.msg);
            if (i == 1)
                fprintf(stderr,
                        "vellum: import: %s was not imported; the file before it stays"
                        " imported\n",
                        files[i]);
            else if (i > 1)
                fprintf(stderr,
                        "vellum: import: %s was not imported; the %d files before it"
                        " stay imported\n",
                        files[i], i);
            goto done;
        }
        total.objects += st.objects;
        total.canvases += st.canvases;
        total.rows += st.rows;
        total.unchanged += st.unchanged;
    }
    printf("imported %zu object%s, %zu canvas%s from %d file%s into %s", total.objects,
           total.objects == 1 ? "" : "s", total.canvases, total.canvases == 1 ? "" : "es", nfiles,
           nfiles == 1 ? "" : "s", cfg.database);
    if (total.unchanged)
        printf(" (%zu unchanged)", total.unchanged);
    printf("\n");
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    db_close(db);
    free(flags);
    free(files);
    return rc;
}
