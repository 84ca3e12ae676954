/* db.h: the SQLite catalogue behind the Presentation API. `vellum import` fills it from
 * catalogue exports (CSV, JSON Lines); workers open it read-only and load one object (a
 * manifest) or one collection per request. Plain structs in, plain structs out: no JSON-LD
 * here (manifest/ builds the documents), no HTTP. */
#ifndef VELLUM_DB_H
#define VELLUM_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "verr.h"

/* A language map entry: one value in one language ("none" when untagged). A map may hold
 * several values for one language, in order. */
struct db_text {
    char *lang;
    char *value;
};

struct db_lang_map {
    struct db_text *items;
    size_t n;
};

struct db_pair {
    struct db_lang_map label;
    struct db_lang_map value;
};

struct db_canvas {
    struct db_lang_map label;
    char *image;              /* identifier under image_root */
    uint32_t width, height;   /* read from the image header at import */
};

struct db_range {
    struct db_lang_map label;
    size_t *canvases;         /* 0-based canvas indexes, in order */
    size_t ncanvases;
    struct db_range *ranges;  /* nested ranges, in order */
    size_t nranges;
};

struct db_object {
    char *id;                         /* the object's identifier, as in URLs */
    struct db_lang_map label;
    struct db_lang_map summary;
    struct db_pair *metadata;
    size_t nmetadata;
    bool has_required_statement;
    struct db_pair required_statement;
    char *rights;                     /* URI or NULL */
    char *nav_date;                   /* xsd:dateTime text or NULL */
    char *viewing_direction;          /* left-to-right, right-to-left, top-to-bottom, bottom-to-top, or NULL */
    char **behavior;                  /* e.g. "paged", "individuals" */
    size_t nbehavior;
    char *extra_json;                 /* JSON object text with provider, homepage, seeAlso,
                                         rendering, thumbnail as given in JSON Lines, or NULL */
    struct db_canvas *canvases;
    size_t ncanvases;
    struct db_range *ranges;          /* top-level ranges (the table of contents) */
    size_t nranges;
    int64_t modified;                 /* unix seconds of the last import that changed it */
};

struct db_collection_item {
    bool is_collection;               /* a sub-collection, else a manifest */
    char *id;                         /* object id or collection name */
    struct db_lang_map label;
    char *thumbnail_image;            /* first canvas image of a manifest, or NULL */
};

struct db_collection {
    char *name;                       /* "" for the top-level collection of everything */
    struct db_lang_map label;
    struct db_collection_item *items;
    size_t nitems;
    int64_t modified;
};

struct db;

/* Open (and create or migrate, when writable) the database. Read-only opens never write:
 * workers use them. */
struct db *db_open(const char *path, bool writable, struct verr *err);
void db_close(struct db *db);

/* Load one object with all its canvases and ranges; 404 when absent. Free with
 * db_object_free. */
int db_object_load(struct db *db, const char *id, struct db_object **out, struct verr *err);
void db_object_free(struct db_object *obj);

/* Only the modification time of an object (for ETag / 304 without loading it); 404 when absent. */
int db_object_modified(struct db *db, const char *id, int64_t *modified, struct verr *err);

/* Load a collection by name, or the top-level collection (name "") that lists every
 * collection and every object in no collection. 404 when absent. */
int db_collection_load(struct db *db, const char *name, struct db_collection **out,
                       struct verr *err);
void db_collection_free(struct db_collection *c);

/* Progress and summary of an import of one file (set, not added to); printed by the caller. */
struct db_import_stats {
    size_t objects;
    size_t canvases;
    size_t rows;
    size_t unchanged;         /* objects identical to what the database held: left as they were */
};

typedef void (*db_progress_fn)(void *ctx, const char *file, size_t rows_done);

/* Import one CSV or JSON Lines file (format from the extension: .csv, .jsonl/.ndjson) in
 * one transaction. Image sizes are read from the sources' headers under image_root. On any
 * error the transaction is rolled back (the database is exactly as before) and err names the
 * file, line and column or field. */
int db_import_file(struct db *db, const char *path, const char *image_root,
                   db_progress_fn progress, void *progress_ctx, struct db_import_stats *stats,
                   struct verr *err);

#endif
