/* db_internal.h: what the files of db/ share and nobody else needs: the open handle, a growable
 * text buffer, language maps as stored (JSON text), the importer's in-memory object and the
 * validators that CSV and JSON Lines apply alike. */
#ifndef VELLUM_DB_INTERNAL_H
#define VELLUM_DB_INTERNAL_H

#include <sqlite3.h>
#include <stdarg.h>

#include "db.h"
#include "strbuf.h"

/* The schema version that this code reads and writes (PRAGMA user_version), and the
 * application_id that marks a file as a Vellum catalogue ("VLLM"). */
#define DB_SCHEMA_VERSION 1
#define DB_APPLICATION_ID 0x564c4c4d

/* Statements that workers run on every request, prepared once per handle (load.c). */
enum db_load_stmt {
    LS_BEGIN,
    LS_COMMIT,
    LS_ROLLBACK,
    LS_OBJECT,
    LS_OBJECT_MODIFIED,
    LS_METADATA,
    LS_CANVASES,
    LS_RANGES,
    LS_COLLECTION,
    LS_SUBCOLLECTIONS,
    LS_MEMBERS,
    LS_ORPHANS,
    LS_COUNT
};

struct db {
    sqlite3 *sq;
    bool is_writable;
    sqlite3_stmt *load[LS_COUNT];
};

/* A 500 naming what failed and SQLite's own message. Returns -1. */
int db_sqlite_fail(struct db *db, struct verr *err, const char *what);

/* Prepare (once) a statement kept for the life of the handle. */
int db_stmt(struct db *db, enum db_load_stmt which, sqlite3_stmt **out, struct verr *err);

/* JSON string with the escapes RFC 8259 requires (db/import.c). */
void db_json_string(struct strbuf *b, const char *s);

/* Language maps are stored as IIIF language-map JSON: {"en":["a","b"],"none":["c"]}, the
 * languages in first-seen order, values in order. An empty map is stored as NULL. */
int db_lang_map_add(struct db_lang_map *m, const char *lang, const char *value, size_t value_len);
void db_lang_map_clear(struct db_lang_map *m);
void db_lang_map_to_json(const struct db_lang_map *m, struct strbuf *out);
int db_lang_map_from_json(const char *json, struct db_lang_map *m); /* -1: not a language map */
void db_object_clear(struct db_object *o);
void db_pair_clear(struct db_pair *p);

/* Offset of the first byte that is not well-formed UTF-8 (overlongs, surrogates and values
 * above U+10FFFF are not), or n when all of s[0..n) is. */
size_t db_utf8_invalid_at(const char *s, size_t n);

/* Validators shared by both formats. */
bool db_lang_tag_ok(const char *tag, size_t len); /* BCP 47 shape, or "none" */
bool db_rights_ok(const char *s);                 /* http(s)://, no spaces or controls */
bool db_viewing_direction_ok(const char *s);
bool db_behavior_ok(const char *s); /* a IIIF 3.0 behavior value */
/* YYYY-MM-DDThh:mm:ssZ, or YYYY-MM-DD expanded to T00:00:00Z; out gets the full form. */
bool db_nav_date_normalize(const char *s, char out[21]);
/* Object ids and collection names: non-empty, no control characters, no leading or trailing
 * space. */
bool db_name_ok(const char *s);
/* A collection name: " > "-separated names ("Maps > Europe"), each one db_name_ok. */
bool db_collection_path_ok(const char *s);

/* One object as an importer builds it: the public struct for everything but ranges, which are
 * kept flat (parent index, first-seen order) as the ranges table stores them. */
#define IMP_NO_PARENT ((size_t)-1)

struct imp_range {
    size_t parent; /* index in imp_object.ranges, or IMP_NO_PARENT */
    char *key;     /* CSV: the labels of this level, to find it again */
    struct db_lang_map label;
    size_t *canvases;
    size_t ncanvases, cap_canvases;
    size_t nchildren;
};

struct imp_object {
    struct db_object o; /* o.ranges / o.nranges stay empty */
    size_t cap_canvases, cap_metadata;
    struct imp_range *ranges;
    size_t nranges, cap_ranges;
    char **collections; /* names (paths "A > B"), possibly none */
    size_t ncollections;
    long line; /* where the object starts in its file */
};

void imp_object_clear(struct imp_object *io);
struct db_canvas *imp_object_add_canvas(struct imp_object *io);
struct db_pair *imp_object_add_metadata(struct imp_object *io);
struct imp_range *imp_object_add_range(struct imp_object *io, size_t parent);
int imp_range_add_canvas(struct imp_range *r, size_t canvas);
int imp_object_add_collection(struct imp_object *io, const char *name);

/* The importer of one file (import.c), as the format parsers see it. */
struct importer;

const char *importer_file(const struct importer *im); /* the file name for messages */

/* Fail with "FILE line N, WHERE: message" (WHERE e.g. `column "image"`; NULL for none). */
int importer_fail(struct importer *im, struct verr *err, int status, long line, const char *where,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Size of an image under the image root, probed once per file and identifier. */
int importer_image_size(struct importer *im, const char *image, long line, const char *where,
                        uint32_t *w, uint32_t *h, struct verr *err);

/* Check that an object id has not been seen earlier in this file (an object's rows must be
 * consecutive; an id may appear once per file). */
int importer_check_new_object(struct importer *im, const char *id, long line, const char *where,
                              struct verr *err);

/* Write (or replace) a complete object in the open transaction. */
int importer_write_object(struct importer *im, struct imp_object *io, struct verr *err);

/* One row (CSV) or one object line (JSON Lines) done: counts and reports progress. */
void importer_row_done(struct importer *im);

int import_csv(struct importer *im, FILE *f, struct verr *err);
int import_jsonl(struct importer *im, FILE *f, struct verr *err);

#endif
