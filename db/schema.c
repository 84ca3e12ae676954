/* schema.c: opening the catalogue and keeping its schema current. Writable opens (the importer)
 * create the file, switch it to WAL and run the migrations up to DB_SCHEMA_VERSION; read-only
 * opens (workers) never write and refuse a file whose schema they do not know. */
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* Migration N brings a database from user_version N to N + 1. Append, never edit: a database
 * in the field has run the old text. Language maps are JSON text (db_internal.h); `hash` lets a
 * re-import of an unchanged object leave it (and its `modified`) alone. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE objects ("
    "  pk INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  label TEXT,"
    "  summary TEXT,"
    "  required_statement TEXT," /* {"label": map, "value": map} or NULL */
    "  rights TEXT,"
    "  nav_date TEXT,"
    "  viewing_direction TEXT,"
    "  behavior TEXT," /* JSON array of strings or NULL */
    "  extra_json TEXT,"
    "  hash INTEGER NOT NULL,"
    "  modified INTEGER NOT NULL"
    ");"
    "CREATE TABLE metadata ("
    "  object INTEGER NOT NULL REFERENCES objects(pk) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  label TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (object, position)"
    ") WITHOUT ROWID;"
    "CREATE TABLE canvases ("
    "  object INTEGER NOT NULL REFERENCES objects(pk) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  label TEXT,"
    "  image TEXT NOT NULL,"
    "  width INTEGER NOT NULL,"
    "  height INTEGER NOT NULL,"
    "  PRIMARY KEY (object, position)"
    ") WITHOUT ROWID;"
    "CREATE INDEX canvases_image ON canvases(image);"
    /* Ranges in first-seen (pre-)order: a parent always has a smaller pk than its children. */
    "CREATE TABLE ranges ("
    "  pk INTEGER PRIMARY KEY,"
    "  object INTEGER NOT NULL REFERENCES objects(pk) ON DELETE CASCADE,"
    "  parent INTEGER REFERENCES ranges(pk) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  label TEXT,"
    "  canvases TEXT NOT NULL" /* JSON array of 0-based canvas positions */
    ");"
    "CREATE INDEX ranges_object ON ranges(object);"
    "CREATE INDEX ranges_parent ON ranges(parent);"
    /* The top-level collection is the row named '' (parent NULL); every other collection has
     * a parent, the top-level one for collections at the root. */
    "CREATE TABLE collections ("
    "  pk INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  label TEXT,"
    "  parent INTEGER REFERENCES collections(pk) ON DELETE CASCADE,"
    "  modified INTEGER NOT NULL"
    ");"
    "CREATE INDEX collections_parent ON collections(parent);"
    "CREATE TABLE collection_objects ("
    "  collection INTEGER NOT NULL REFERENCES collections(pk) ON DELETE CASCADE,"
    "  object INTEGER NOT NULL REFERENCES objects(pk) ON DELETE CASCADE,"
    "  PRIMARY KEY (collection, object)"
    ") WITHOUT ROWID;"
    "CREATE INDEX collection_objects_object ON collection_objects(object, collection);"
    "INSERT INTO collections(name, label, parent, modified)"
    "  VALUES ('', '{\"en\":[\"All objects\"]}', NULL, 0);",
};

#define NMIGRATIONS (int)(sizeof migrations / sizeof migrations[0])
_Static_assert(NMIGRATIONS == DB_SCHEMA_VERSION, "one migration per schema version");

int db_sqlite_fail(struct db *db, struct verr *err, const char *what)
{
    int code = db && db->sq ? sqlite3_extended_errcode(db->sq) : SQLITE_ERROR;
    int busy = (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED;
    return verr_set(err, busy ? 503 : 500, "database: %s: %s", what,
                    db && db->sq ? sqlite3_errmsg(db->sq) : "out of memory");
}

static int exec(struct db *db, const char *sql, struct verr *err)
{
    if (sqlite3_exec(db->sq, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_sqlite_fail(db, err, strlen(sql) > 60 ? "migrating the schema" : sql);
    return 0;
}

static int pragma_int(struct db *db, const char *sql, int *out, struct verr *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->sq, sql, -1, &st, NULL) != SQLITE_OK)
        return db_sqlite_fail(db, err, sql);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        db_sqlite_fail(db, err, sql);
        sqlite3_finalize(st);
        return -1;
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* Bring a writable database to DB_SCHEMA_VERSION under a write lock, so two importers
 * starting at once cannot both run a migration. */
static int migrate(struct db *db, const char *path, struct verr *err)
{
    int version = 0, app_id = 0;
    if (exec(db, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    if (pragma_int(db, "PRAGMA user_version", &version, err) < 0 ||
        pragma_int(db, "PRAGMA application_id", &app_id, err) < 0)
        goto fail;
    if (version > DB_SCHEMA_VERSION) {
        verr_set(err, 500,
                 "%.120s: database schema %d is newer than this vellum (%d); upgrade vellum", path,
                 version, DB_SCHEMA_VERSION);
        goto fail;
    }
    if (version > 0 && app_id != DB_APPLICATION_ID) {
        verr_set(err, 500, "%.120s is not a Vellum database", path);
        goto fail;
    }
    for (int v = version; v < NMIGRATIONS; v++) {
        if (exec(db, migrations[v], err) < 0)
            goto fail;
    }
    if (version < DB_SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d",
                 DB_SCHEMA_VERSION, DB_APPLICATION_ID);
        if (exec(db, sql, err) < 0)
            goto fail;
    }
    return exec(db, "COMMIT", err);
fail:
    sqlite3_exec(db->sq, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

struct db *db_open(const char *path, bool writable, struct verr *err)
{
    struct db *db = calloc(1, sizeof *db);
    if (!db) {
        verr_set(err, 500, "out of memory");
        return NULL;
    }
    db->is_writable = writable;
    int flags = writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(path, &db->sq, flags, NULL) != SQLITE_OK) {
        verr_set(err, 500, "cannot open database %.160s: %s", path,
                 db->sq ? sqlite3_errmsg(db->sq) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(db->sq, 1);
    /* Workers may meet an importer's checkpoint; wait rather than fail a request. */
    if (sqlite3_busy_timeout(db->sq, 5000) != SQLITE_OK ||
        exec(db, "PRAGMA foreign_keys = ON", err) < 0)
        goto fail;
    if (writable) {
        /* WAL: readers keep reading while an import runs. synchronous=NORMAL is durable
         * enough in WAL (a power cut loses at most the last commit, never consistency). */
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db->sq, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK) {
            db_sqlite_fail(db, err, "PRAGMA journal_mode");
            goto fail;
        }
        int rc = sqlite3_step(st);
        const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        bool is_wal = mode && !strcmp(mode, "wal");
        if (rc != SQLITE_ROW)
            db_sqlite_fail(db, err, "PRAGMA journal_mode");
        else if (!is_wal)
            verr_set(err, 500, "%.160s: cannot switch the database to WAL mode", path);
        sqlite3_finalize(st);
        if (!is_wal)
            goto fail;
        if (exec(db, "PRAGMA synchronous = NORMAL", err) < 0 || migrate(db, path, err) < 0)
            goto fail;
    } else {
        int version = 0, app_id = 0;
        if (exec(db, "PRAGMA query_only = ON", err) < 0 ||
            pragma_int(db, "PRAGMA user_version", &version, err) < 0 ||
            pragma_int(db, "PRAGMA application_id", &app_id, err) < 0)
            goto fail;
        if (version == 0) {
            verr_set(err, 503, "%.160s holds no catalogue yet; run `vellum import`", path);
            goto fail;
        }
        if (app_id != DB_APPLICATION_ID) {
            verr_set(err, 500, "%.160s is not a Vellum database", path);
            goto fail;
        }
        if (version != DB_SCHEMA_VERSION) {
            verr_set(err, 500, "%.120s: database schema %d, this vellum reads %d; %s", path,
                     version, DB_SCHEMA_VERSION,
                     version < DB_SCHEMA_VERSION
                         ? "importing a file with `vellum import` upgrades it"
                         : "upgrade vellum");
            goto fail;
        }
    }
    return db;
fail:
    db_close(db);
    return NULL;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    for (int i = 0; i < LS_COUNT; i++)
        sqlite3_finalize(db->load[i]);
    sqlite3_close(db->sq);
    free(db);
}
