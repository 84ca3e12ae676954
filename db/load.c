/* load.c: what workers read per request: one object (with canvases, metadata and the range
 * tree) or one collection. Statements are prepared once per handle and every load reads one
 * snapshot (a read transaction), so an import committing meanwhile is seen whole or not at all. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

static const char *const load_sql[LS_COUNT] = {
    [LS_BEGIN] = "BEGIN",
    [LS_COMMIT] = "COMMIT",
    [LS_ROLLBACK] = "ROLLBACK",
    [LS_OBJECT] = "SELECT pk, label, summary, required_statement, rights, nav_date,"
                  " viewing_direction, behavior, extra_json, modified FROM objects WHERE id = ?1",
    [LS_OBJECT_MODIFIED] = "SELECT modified FROM objects WHERE id = ?1",
    [LS_METADATA] = "SELECT label, value FROM metadata WHERE object = ?1 ORDER BY position",
    [LS_CANVASES] = "SELECT position, label, image, width, height FROM canvases"
                    " WHERE object = ?1 ORDER BY position",
    [LS_RANGES] = "SELECT pk, parent, position, label, canvases FROM ranges"
                  " WHERE object = ?1 ORDER BY pk",
    [LS_COLLECTION] = "SELECT pk, label, modified FROM collections WHERE name = ?1",
    [LS_SUBCOLLECTIONS] = "SELECT name, label FROM collections WHERE parent = ?1 ORDER BY pk",
    [LS_MEMBERS] = "SELECT o.id, o.label, (SELECT c.image FROM canvases c"
                   "   WHERE c.object = o.pk AND c.position = 0)"
                   " FROM collection_objects m JOIN objects o ON o.pk = m.object"
                   " WHERE m.collection = ?1 ORDER BY o.pk",
    [LS_ORPHANS] = "SELECT o.id, o.label, (SELECT c.image FROM canvases c"
                   "   WHERE c.object = o.pk AND c.position = 0)"
                   " FROM objects o WHERE NOT EXISTS"
                   " (SELECT 1 FROM collection_objects m WHERE m.object = o.pk) ORDER BY o.pk",
};

int db_stmt(struct db *db, enum db_load_stmt which, sqlite3_stmt **out, struct verr *err)
{
    *out = NULL;
    if (!db->load[which] &&
        sqlite3_prepare_v3(db->sq, load_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &db->load[which],
                           NULL) != SQLITE_OK)
        return db_sqlite_fail(db, err, "preparing a query");
    sqlite3_reset(db->load[which]);
    sqlite3_clear_bindings(db->load[which]);
    *out = db->load[which];
    return 0;
}

/* ------------------------------------------------------------------ language maps */

void db_lang_map_clear(struct db_lang_map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].lang);
        free(m->items[i].value);
    }
    free(m->items);
    m->items = NULL;
    m->n = 0;
}

void db_pair_clear(struct db_pair *p)
{
    db_lang_map_clear(&p->label);
    db_lang_map_clear(&p->value);
}

static int lang_map_from_cjson(const cJSON *j, struct db_lang_map *m)
{
    size_t n = 0;
    const cJSON *lang, *v;
    if (!cJSON_IsObject(j))
        return -1;
    cJSON_ArrayForEach(lang, j)
    {
        if (!cJSON_IsArray(lang) || !lang->string)
            return -1;
        n += (size_t)cJSON_GetArraySize(lang);
    }
    if (n == 0)
        return 0;
    m->items = calloc(n, sizeof *m->items);
    if (!m->items)
        return -1;
    cJSON_ArrayForEach(lang, j)
    {
        cJSON_ArrayForEach(v, lang)
        {
            if (!cJSON_IsString(v))
                goto fail;
            struct db_text *t = &m->items[m->n++];
            t->lang = strdup(lang->string);
            t->value = strdup(v->valuestring);
            if (!t->lang || !t->value)
                goto fail;
        }
    }
    return 0;
fail:
    db_lang_map_clear(m);
    return -1;
}

int db_lang_map_from_json(const char *json, struct db_lang_map *m)
{
    m->items = NULL;
    m->n = 0;
    if (!json)
        return 0;
    cJSON *j = cJSON_Parse(json);
    if (!j)
        return -1;
    int rc = lang_map_from_cjson(j, m);
    cJSON_Delete(j);
    return rc;
}

/* ------------------------------------------------------------------ objects */

static void range_clear(struct db_range *r)
{
    db_lang_map_clear(&r->label);
    free(r->canvases);
    for (size_t i = 0; i < r->nranges; i++)
        range_clear(&r->ranges[i]);
    free(r->ranges);
    memset(r, 0, sizeof *r);
}

void db_object_clear(struct db_object *o)
{
    free(o->id);
    db_lang_map_clear(&o->label);
    db_lang_map_clear(&o->summary);
    for (size_t i = 0; i < o->nmetadata; i++)
        db_pair_clear(&o->metadata[i]);
    free(o->metadata);
    db_pair_clear(&o->required_statement);
    free(o->rights);
    free(o->nav_date);
    free(o->viewing_direction);
    for (size_t i = 0; i < o->nbehavior; i++)
        free(o->behavior[i]);
    free(o->behavior);
    free(o->extra_json);
    for (size_t i = 0; i < o->ncanvases; i++) {
        db_lang_map_clear(&o->canvases[i].label);
        free(o->canvases[i].image);
    }
    free(o->canvases);
    for (size_t i = 0; i < o->nranges; i++)
        range_clear(&o->ranges[i]);
    free(o->ranges);
    memset(o, 0, sizeof *o);
}

void db_object_free(struct db_object *obj)
{
    if (!obj)
        return;
    db_object_clear(obj);
    free(obj);
}

/* A text column as a fresh string (NULL stays NULL); *failed set when strdup fails. */
static char *column_strdup(sqlite3_stmt *st, int col, bool *failed)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = true;
    return d;
}

static int column_lang_map(sqlite3_stmt *st, int col, struct db_lang_map *m)
{
    return db_lang_map_from_json((const char *)sqlite3_column_text(st, col), m);
}

static int load_required_statement(const char *json, struct db_object *o)
{
    if (!json)
        return 0;
    cJSON *j = cJSON_Parse(json);
    int rc = -1;
    if (j &&
        lang_map_from_cjson(cJSON_GetObjectItemCaseSensitive(j, "label"),
                            &o->required_statement.label) == 0 &&
        lang_map_from_cjson(cJSON_GetObjectItemCaseSensitive(j, "value"),
                            &o->required_statement.value) == 0) {
        o->has_required_statement = true;
        rc = 0;
    }
    cJSON_Delete(j);
    return rc;
}

static int load_behavior(const char *json, struct db_object *o)
{
    if (!json)
        return 0;
    cJSON *j = cJSON_Parse(json), *v;
    int rc = -1;
    if (!cJSON_IsArray(j))
        goto done;
    int n = cJSON_GetArraySize(j);
    if (n > 0 && !(o->behavior = calloc((size_t)n, sizeof *o->behavior)))
        goto done;
    cJSON_ArrayForEach(v, j)
    {
        if (!cJSON_IsString(v) || !(o->behavior[o->nbehavior] = strdup(v->valuestring)))
            goto done;
        o->nbehavior++;
    }
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

static int load_metadata(struct db *db, sqlite3_int64 pk, struct db_object *o, struct verr *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;
    if (db_stmt(db, LS_METADATA, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, pk);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o->nmetadata == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct db_pair *p = realloc(o->metadata, ncap * sizeof *p);
            if (!p)
                return verr_set(err, 500, "out of memory");
            o->metadata = p;
            cap = ncap;
        }
        struct db_pair *p = &o->metadata[o->nmetadata++];
        memset(p, 0, sizeof *p);
        if (column_lang_map(st, 0, &p->label) < 0 || column_lang_map(st, 1, &p->value) < 0)
            return verr_set(err, 500, "database: object %.80s: unreadable metadata", o->id);
    }
    return rc == SQLITE_DONE ? 0 : db_sqlite_fail(db, err, "reading metadata");
}

static int load_canvases(struct db *db, sqlite3_int64 pk, struct db_object *o, struct verr *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;
    bool failed = false;
    if (db_stmt(db, LS_CANVASES, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, pk);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o->ncanvases == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct db_canvas *c = realloc(o->canvases, ncap * sizeof *c);
            if (!c)
                return verr_set(err, 500, "out of memory");
            o->canvases = c;
            cap = ncap;
        }
        struct db_canvas *c = &o->canvases[o->ncanvases++];
        memset(c, 0, sizeof *c);
        /* Ranges point at canvases by position: positions must be exactly 0..n-1. */
        if (sqlite3_column_int64(st, 0) != (sqlite3_int64)(o->ncanvases - 1) ||
            column_lang_map(st, 1, &c->label) < 0)
            return verr_set(err, 500, "database: object %.80s: unreadable canvas %zu", o->id,
                            o->ncanvases - 1);
        c->image = column_strdup(st, 2, &failed);
        c->width = (uint32_t)sqlite3_column_int64(st, 3);
        c->height = (uint32_t)sqlite3_column_int64(st, 4);
        if (failed || !c->image)
            return verr_set(err, 500, "out of memory");
    }
    return rc == SQLITE_DONE ? 0 : db_sqlite_fail(db, err, "reading canvases");
}

/* "[0,1,5]" -> canvas positions, each below ncanvases. */
static int parse_positions(const char *s, size_t ncanvases, struct db_range *r)
{
    if (!s || *s++ != '[')
        return -1;
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    n += 1;
    r->canvases = malloc(n * sizeof *r->canvases);
    if (!r->canvases)
        return -1;
    while (*s != ']') {
        char *end;
        if (*s < '0' || *s > '9')
            return -1;
        unsigned long long v = strtoull(s, &end, 10);
        if (v >= ncanvases || r->ncanvases == n)
            return -1;
        r->canvases[r->ncanvases++] = (size_t)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s != ']')
            return -1;
    }
    return s[1] == '\0' ? 0 : -1;
}

struct range_row {
    sqlite3_int64 pk;
    size_t parent; /* index in the rows, or IMP_NO_PARENT */
    size_t position;
    struct db_range r;
};

/* The ranges table holds the tree flat, in pre-order (a parent's pk is below its children's)
 * with each node's position among its siblings. Rebuild it: count children, allocate each
 * node's array, then place nodes from the last to the first so that a node is complete
 * (its own children placed) before it is copied into its parent's array. */
static int load_ranges(struct db *db, sqlite3_int64 pk, struct db_object *o, struct verr *err)
{
    sqlite3_stmt *st;
    struct range_row *rows = NULL;
    size_t n = 0, cap = 0, ntop = 0;
    size_t *next = NULL;
    int rc;
    if (db_stmt(db, LS_RANGES, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, pk);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct range_row *nr = realloc(rows, ncap * sizeof *nr);
            if (!nr) {
                verr_set(err, 500, "out of memory");
                goto fail;
            }
            rows = nr;
            cap = ncap;
        }
        struct range_row *row = &rows[n++];
        memset(row, 0, sizeof *row);
        row->pk = sqlite3_column_int64(st, 0);
        row->parent = IMP_NO_PARENT;
        sqlite3_int64 position = sqlite3_column_int64(st, 2);
        row->position = position < 0 ? (size_t)-1 : (size_t)position;
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            sqlite3_int64 parent = sqlite3_column_int64(st, 1);
            size_t lo = 0, hi = n - 1; /* rows are in pk order: binary search the earlier ones */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (rows[mid].pk < parent)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == n - 1 || rows[lo].pk != parent)
                goto corrupt;
            row->parent = lo;
        }
        if (column_lang_map(st, 3, &row->r.label) < 0 ||
            parse_positions((const char *)sqlite3_column_text(st, 4), o->ncanvases, &row->r) < 0)
            goto corrupt;
    }
    if (rc != SQLITE_DONE) {
        db_sqlite_fail(db, err, "reading ranges");
        goto fail;
    }
    if (n == 0)
        return 0;
    /* Positions among siblings must run 0, 1, 2... in pk order. */
    next = calloc(n + 1, sizeof *next);
    if (!next) {
        verr_set(err, 500, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        size_t *counter = rows[i].parent == IMP_NO_PARENT ? &next[n] : &next[rows[i].parent];
        if (rows[i].position != (*counter)++)
            goto corrupt;
    }
    ntop = next[n];
    for (size_t i = 0; i < n; i++) {
        if (next[i] && !(rows[i].r.ranges = calloc(next[i], sizeof *rows[i].r.ranges))) {
            verr_set(err, 500, "out of memory");
            goto fail;
        }
        rows[i].r.nranges = next[i];
    }
    if (!(o->ranges = calloc(ntop, sizeof *o->ranges))) {
        verr_set(err, 500, "out of memory");
        goto fail;
    }
    o->nranges = ntop;
    for (size_t i = n; i-- > 0;) {
        struct db_range *dest =
            rows[i].parent == IMP_NO_PARENT ? o->ranges : rows[rows[i].parent].r.ranges;
        dest[rows[i].position] = rows[i].r;
    }
    free(rows);
    free(next);
    return 0;
corrupt:
    verr_set(err, 500, "database: object %.80s: unreadable ranges", o->id);
fail:
    for (size_t i = 0; i < n; i++)
        range_clear(&rows[i].r);
    free(rows);
    free(next);
    return -1;
}

static int begin_read(struct db *db, struct verr *err)
{
    sqlite3_stmt *st;
    if (db_stmt(db, LS_BEGIN, &st, err) < 0)
        return -1;
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_sqlite_fail(db, err, "BEGIN");
    return 0;
}

static int end_read(struct db *db, int rc, struct verr *err)
{
    sqlite3_stmt *st;
    /* A failed load may leave a statement mid-way; none may hold the snapshot open. */
    for (int i = 0; i < LS_COUNT; i++) {
        if (db->load[i])
            sqlite3_reset(db->load[i]);
    }
    struct verr ignored;
    if (db_stmt(db, rc == 0 ? LS_COMMIT : LS_ROLLBACK, &st, rc == 0 ? err : &ignored) < 0)
        return -1;
    if (sqlite3_step(st) != SQLITE_DONE && rc == 0)
        return db_sqlite_fail(db, err, "COMMIT");
    sqlite3_reset(st);
    return rc;
}

static int object_load(struct db *db, const char *id, struct db_object *o, struct verr *err)
{
    sqlite3_stmt *st;
    bool failed = false;
    if (db_stmt(db, LS_OBJECT, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return verr_set(err, 404, "no object \"%.80s\"", id);
    if (rc != SQLITE_ROW)
        return db_sqlite_fail(db, err, "reading an object");
    sqlite3_int64 pk = sqlite3_column_int64(st, 0);
    o->id = strdup(id);
    o->rights = column_strdup(st, 4, &failed);
    o->nav_date = column_strdup(st, 5, &failed);
    o->viewing_direction = column_strdup(st, 6, &failed);
    o->extra_json = column_strdup(st, 8, &failed);
    o->modified = sqlite3_column_int64(st, 9);
    if (!o->id || failed)
        return verr_set(err, 500, "out of memory");
    if (column_lang_map(st, 1, &o->label) < 0 || column_lang_map(st, 2, &o->summary) < 0 ||
        load_required_statement((const char *)sqlite3_column_text(st, 3), o) < 0 ||
        load_behavior((const char *)sqlite3_column_text(st, 7), o) < 0)
        return verr_set(err, 500, "database: object %.80s: unreadable fields", id);
    sqlite3_reset(st);
    if (load_metadata(db, pk, o, err) < 0 || load_canvases(db, pk, o, err) < 0 ||
        load_ranges(db, pk, o, err) < 0)
        return -1;
    return 0;
}

int db_object_load(struct db *db, const char *id, struct db_object **out, struct verr *err)
{
    *out = NULL;
    struct db_object *o = calloc(1, sizeof *o);
    if (!o)
        return verr_set(err, 500, "out of memory");
    if (begin_read(db, err) < 0) {
        free(o);
        return -1;
    }
    int rc = end_read(db, object_load(db, id, o, err), err);
    if (rc < 0) {
        db_object_free(o);
        return -1;
    }
    *out = o;
    return 0;
}

int db_object_modified(struct db *db, const char *id, int64_t *modified, struct verr *err)
{
    sqlite3_stmt *st;
    if (db_stmt(db, LS_OBJECT_MODIFIED, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *modified = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return verr_set(err, 404, "no object \"%.80s\"", id);
    if (rc != SQLITE_ROW)
        return db_sqlite_fail(db, err, "reading an object");
    return 0;
}

/* ------------------------------------------------------------------ collections */

void db_collection_free(struct db_collection *c)
{
    if (!c)
        return;
    free(c->name);
    db_lang_map_clear(&c->label);
    for (size_t i = 0; i < c->nitems; i++) {
        free(c->items[i].id);
        db_lang_map_clear(&c->items[i].label);
        free(c->items[i].thumbnail_image);
    }
    free(c->items);
    free(c);
}

/* Append the rows of st (id/name, label[, thumbnail image]) as items. */
static int collect_items(struct db *db, sqlite3_stmt *st, bool is_collection, size_t *cap,
                         struct db_collection *c, struct verr *err)
{
    int rc;
    bool failed = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (c->nitems == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            struct db_collection_item *it = realloc(c->items, ncap * sizeof *it);
            if (!it)
                return verr_set(err, 500, "out of memory");
            c->items = it;
            *cap = ncap;
        }
        struct db_collection_item *it = &c->items[c->nitems++];
        memset(it, 0, sizeof *it);
        it->is_collection = is_collection;
        it->id = column_strdup(st, 0, &failed);
        if (!is_collection)
            it->thumbnail_image = column_strdup(st, 2, &failed);
        if (failed || !it->id)
            return verr_set(err, 500, "out of memory");
        if (column_lang_map(st, 1, &it->label) < 0)
            return verr_set(err, 500, "database: collection %.80s: unreadable label of %.80s",
                            c->name, it->id);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_sqlite_fail(db, err, "reading a collection");
}

static int collection_load(struct db *db, const char *name, struct db_collection *c,
                           struct verr *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    if (db_stmt(db, LS_COLLECTION, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return verr_set(err, 404, "no collection \"%.80s\"", name);
    if (rc != SQLITE_ROW)
        return db_sqlite_fail(db, err, "reading a collection");
    sqlite3_int64 pk = sqlite3_column_int64(st, 0);
    c->modified = sqlite3_column_int64(st, 2);
    if (!(c->name = strdup(name)))
        return verr_set(err, 500, "out of memory");
    if (column_lang_map(st, 1, &c->label) < 0)
        return verr_set(err, 500, "database: collection %.80s: unreadable label", name);
    sqlite3_reset(st);

    if (db_stmt(db, LS_SUBCOLLECTIONS, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, pk);
    if (collect_items(db, st, true, &cap, c, err) < 0)
        return -1;
    /* The top-level collection lists the objects that belong to no collection. */
    if (db_stmt(db, name[0] ? LS_MEMBERS : LS_ORPHANS, &st, err) < 0)
        return -1;
    if (name[0])
        sqlite3_bind_int64(st, 1, pk);
    return collect_items(db, st, false, &cap, c, err);
}

int db_collection_load(struct db *db, const char *name, struct db_collection **out,
                       struct verr *err)
{
    *out = NULL;
    struct db_collection *c = calloc(1, sizeof *c);
    if (!c)
        return verr_set(err, 500, "out of memory");
    if (begin_read(db, err) < 0) {
        free(c);
        return -1;
    }
    if (end_read(db, collection_load(db, name, c, err), err) < 0) {
        db_collection_free(c);
        return -1;
    }
    *out = c;
    return 0;
}
