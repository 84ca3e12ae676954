/* import.c: db_import_file(): one catalogue file, one transaction. The format parsers
 * (import_csv.c, import_jsonl.c) build one object at a time and hand it here; this file probes
 * images (once per identifier), replaces the object's rows, keeps collections and `modified`
 * stamps right, and rolls everything back on the first error. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "codec.h"
#include "db_internal.h"
#include "source_cache.h"

#define PROGRESS_EVERY_ROWS 10000

/* ------------------------------------------------------------------ text buffer */

/* JSON string with the escapes RFC 8259 requires; UTF-8 passes through (it was validated). */
void db_json_string(struct strbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_putc(b, '"');
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        strbuf_put(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"':
            strbuf_puts(b, "\\\"");
            break;
        case '\\':
            strbuf_puts(b, "\\\\");
            break;
        case '\n':
            strbuf_puts(b, "\\n");
            break;
        case '\r':
            strbuf_puts(b, "\\r");
            break;
        case '\t':
            strbuf_puts(b, "\\t");
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            strbuf_put(b, u, 6);
        }
        }
    }
    strbuf_put(b, run, (size_t)(s - run));
    strbuf_putc(b, '"');
}

/* ------------------------------------------------------------------ language maps */

int db_lang_map_add(struct db_lang_map *m, const char *lang, const char *value, size_t value_len)
{
    struct db_text *items = realloc(m->items, (m->n + 1) * sizeof *items);
    if (!items)
        return -1;
    m->items = items;
    char *l = strdup(lang), *v = strndup(value, value_len);
    if (!l || !v) {
        free(l);
        free(v);
        return -1;
    }
    m->items[m->n].lang = l;
    m->items[m->n].value = v;
    m->n++;
    return 0;
}

/* Group by language, languages in first-seen order: {"en":["a","b"],"fr":["c"]}. */
void db_lang_map_to_json(const struct db_lang_map *m, struct strbuf *out)
{
    strbuf_putc(out, '{');
    for (size_t i = 0; i < m->n; i++) {
        bool is_seen = false;
        for (size_t j = 0; j < i && !is_seen; j++)
            is_seen = !strcmp(m->items[j].lang, m->items[i].lang);
        if (is_seen)
            continue;
        if (out->len > 1 && out->p[out->len - 1] != '{')
            strbuf_putc(out, ',');
        db_json_string(out, m->items[i].lang);
        strbuf_puts(out, ":[");
        bool is_first = true;
        for (size_t j = i; j < m->n; j++) {
            if (strcmp(m->items[j].lang, m->items[i].lang))
                continue;
            if (!is_first)
                strbuf_putc(out, ',');
            db_json_string(out, m->items[j].value);
            is_first = false;
        }
        strbuf_putc(out, ']');
    }
    strbuf_putc(out, '}');
}

/* ------------------------------------------------------------------ validators */

size_t db_utf8_invalid_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > n)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* BCP 47 in shape (not against the registry): a 2-8 letter primary subtag, then subtags of
 * 1-8 letters or digits separated by '-' (en, fr-CA, zh-Hant-TW, ar-Latn). "none" is IIIF's. */
bool db_lang_tag_ok(const char *tag, size_t len)
{
    size_t i = 0, sub = 0;
    while (i < len && ((tag[i] >= 'a' && tag[i] <= 'z') || (tag[i] >= 'A' && tag[i] <= 'Z')))
        i++;
    if (i < 2 || i > 8)
        return false;
    while (i < len) {
        if (tag[i++] != '-')
            return false;
        sub = 0;
        while (i < len && is_alnum(tag[i])) {
            i++;
            sub++;
        }
        if (sub < 1 || sub > 8)
            return false;
    }
    return true;
}

bool db_rights_ok(const char *s)
{
    size_t skip = !strncmp(s, "https://", 8) ? 8 : !strncmp(s, "http://", 7) ? 7 : 0;
    if (!skip || !s[skip])
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

bool db_viewing_direction_ok(const char *s)
{
    return !strcmp(s, "left-to-right") || !strcmp(s, "right-to-left") ||
           !strcmp(s, "top-to-bottom") || !strcmp(s, "bottom-to-top");
}

/* Presentation API 3.0 §3 behavior values; anything else is most likely a typo. */
bool db_behavior_ok(const char *s)
{
    static const char *const values[] = {
        "auto-advance", "no-auto-advance", "repeat",       "no-repeat", "unordered",  "individuals",
        "continuous",   "paged",           "facing-pages", "non-paged", "multi-part", "together",
        "sequence",     "thumbnail-nav",   "no-nav",       "hidden"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (!strcmp(s, values[i]))
            return true;
    }
    return false;
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool db_nav_date_normalize(const char *s, char out[21])
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t len = strlen(s);
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (len != 10 && len != 20)
        return false;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return false;
    if (len == 20 &&
        (s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
         s[16] != ':' || !digits(s + 17, 2, &sec) || s[19] != 'Z'))
        return false;
    bool is_leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !is_leap) ||
        h > 23 || mi > 59 || sec > 59)
        return false;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, sec);
    memcpy(out, tmp, 21);
    return true;
}

bool db_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

bool db_collection_path_ok(const char *s)
{
    if (!db_name_ok(s))
        return false;
    for (;;) {
        const char *sep = strstr(s, " > ");
        size_t n = sep ? (size_t)(sep - s) : strlen(s);
        if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
            return false;
        if (!sep)
            return true;
        s = sep + 3;
    }
}

/* ------------------------------------------------------------------ the object being built */

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * size);
    if (!np)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

void imp_object_clear(struct imp_object *io)
{
    db_object_clear(&io->o);
    for (size_t i = 0; i < io->nranges; i++) {
        free(io->ranges[i].key);
        db_lang_map_clear(&io->ranges[i].label);
        free(io->ranges[i].canvases);
    }
    free(io->ranges);
    for (size_t i = 0; i < io->ncollections; i++)
        free(io->collections[i]);
    free(io->collections);
    memset(io, 0, sizeof *io);
}

struct db_canvas *imp_object_add_canvas(struct imp_object *io)
{
    if (!grow((void **)&io->o.canvases, &io->cap_canvases, io->o.ncanvases + 1,
              sizeof *io->o.canvases))
        return NULL;
    struct db_canvas *c = &io->o.canvases[io->o.ncanvases++];
    memset(c, 0, sizeof *c);
    return c;
}

struct db_pair *imp_object_add_metadata(struct imp_object *io)
{
    if (!grow((void **)&io->o.metadata, &io->cap_metadata, io->o.nmetadata + 1,
              sizeof *io->o.metadata))
        return NULL;
    struct db_pair *p = &io->o.metadata[io->o.nmetadata++];
    memset(p, 0, sizeof *p);
    return p;
}

struct imp_range *imp_object_add_range(struct imp_object *io, size_t parent)
{
    if (!grow((void **)&io->ranges, &io->cap_ranges, io->nranges + 1, sizeof *io->ranges))
        return NULL;
    struct imp_range *r = &io->ranges[io->nranges++];
    memset(r, 0, sizeof *r);
    r->parent = parent;
    if (parent != IMP_NO_PARENT)
        io->ranges[parent].nchildren++;
    return r;
}

int imp_range_add_canvas(struct imp_range *r, size_t canvas)
{
    if (!grow((void **)&r->canvases, &r->cap_canvases, r->ncanvases + 1, sizeof *r->canvases))
        return -1;
    r->canvases[r->ncanvases++] = canvas;
    return 0;
}

int imp_object_add_collection(struct imp_object *io, const char *name)
{
    for (size_t i = 0; i < io->ncollections; i++) {
        if (!strcmp(io->collections[i], name))
            return 0;
    }
    char **c = realloc(io->collections, (io->ncollections + 1) * sizeof *c);
    if (!c)
        return -1;
    io->collections = c;
    if (!(c[io->ncollections] = strdup(name)))
        return -1;
    io->ncollections++;
    return 0;
}

/* ------------------------------------------------------------------ string map */

/* Open addressing, for the identifiers of one file: image sizes, ids seen, collection pks. */
struct strmap_entry {
    char *key;
    int64_t a, b;
};

struct strmap {
    struct strmap_entry *slots;
    size_t cap, n;
};

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

static struct strmap_entry *strmap_find(struct strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t i = (size_t)hash_bytes(FNV_OFFSET, key, strlen(key)) & (m->cap - 1);
    while (m->slots[i].key) {
        if (!strcmp(m->slots[i].key, key))
            return &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static struct strmap_entry *strmap_add(struct strmap *m, const char *key, int64_t a, int64_t b)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct strmap_entry *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].key)
                continue;
            size_t j = (size_t)hash_bytes(FNV_OFFSET, m->slots[i].key, strlen(m->slots[i].key)) &
                       (ncap - 1);
            while (ns[j].key)
                j = (j + 1) & (ncap - 1);
            ns[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    char *k = strdup(key);
    if (!k)
        return NULL;
    size_t i = (size_t)hash_bytes(FNV_OFFSET, key, strlen(key)) & (m->cap - 1);
    while (m->slots[i].key)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct strmap_entry){k, a, b};
    m->n++;
    return &m->slots[i];
}

static void strmap_free(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ the importer */

enum imp_stmt {
    IS_FIND,
    IS_INSERT,
    IS_UPDATE,
    IS_DEL_METADATA,
    IS_DEL_CANVASES,
    IS_DEL_RANGES,
    IS_DEL_MEMBERS,
    IS_TOUCH_OLD_COLLECTIONS,
    IS_METADATA,
    IS_CANVAS,
    IS_RANGE,
    IS_MEMBER,
    IS_FIND_COLLECTION,
    IS_INSERT_COLLECTION,
    IS_TOUCH_COLLECTION,
    IS_COUNT
};

static const char *const imp_sql[IS_COUNT] = {
    [IS_FIND] = "SELECT pk, hash FROM objects WHERE id = ?1",
    [IS_INSERT] = "INSERT INTO objects (label, summary, required_statement, rights, nav_date,"
                  " viewing_direction, behavior, extra_json, hash, modified, id)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [IS_UPDATE] = "UPDATE objects SET label = ?1, summary = ?2, required_statement = ?3,"
                  " rights = ?4, nav_date = ?5, viewing_direction = ?6, behavior = ?7,"
                  " extra_json = ?8, hash = ?9, modified = ?10 WHERE pk = ?12",
    [IS_DEL_METADATA] = "DELETE FROM metadata WHERE object = ?1",
    [IS_DEL_CANVASES] = "DELETE FROM canvases WHERE object = ?1",
    [IS_DEL_RANGES] = "DELETE FROM ranges WHERE object = ?1",
    [IS_DEL_MEMBERS] = "DELETE FROM collection_objects WHERE object = ?1",
    [IS_TOUCH_OLD_COLLECTIONS] = "UPDATE collections SET modified = ?2 WHERE pk IN"
                                 " (SELECT collection FROM collection_objects WHERE object = ?1)",
    [IS_METADATA] = "INSERT INTO metadata (object, position, label, value) VALUES (?1, ?2, ?3, ?4)",
    [IS_CANVAS] = "INSERT INTO canvases (object, position, label, image, width, height)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [IS_RANGE] = "INSERT INTO ranges (object, parent, position, label, canvases)"
                 " VALUES (?1, ?2, ?3, ?4, ?5)",
    [IS_MEMBER] = "INSERT OR IGNORE INTO collection_objects (collection, object) VALUES (?1, ?2)",
    [IS_FIND_COLLECTION] = "SELECT pk FROM collections WHERE name = ?1",
    [IS_INSERT_COLLECTION] = "INSERT INTO collections (name, label, parent, modified)"
                             " VALUES (?1, ?2, ?3, ?4)",
    [IS_TOUCH_COLLECTION] = "UPDATE collections SET modified = ?2 WHERE pk = ?1",
};

struct importer {
    struct db *db;
    const char *file; /* base name, for messages */
    const char *image_root;
    db_progress_fn progress;
    void *progress_ctx;
    struct db_import_stats *stats;
    sqlite3_stmt *st[IS_COUNT];
    struct strmap images;      /* identifier -> width, height */
    struct strmap seen;        /* object id -> line */
    struct strmap collections; /* name -> pk, stamped in this file */
    sqlite3_int64 top_pk;      /* the top-level collection */
    int64_t stamp;             /* `modified` of everything this file changes; 0 until needed */
    bool has_changes;
    struct strbuf buf[4]; /* scratch JSON */
};

const char *importer_file(const struct importer *im)
{
    return im->file;
}

int importer_fail(struct importer *im, struct verr *err, int status, long line, const char *where,
                  const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (where)
        return verr_set(err, status, "%.60s line %ld, %s: %s", im->file, line, where, what);
    return verr_set(err, status, "%.60s line %ld: %s", im->file, line, what);
}

static int fail_sql(struct importer *im, struct verr *err, const char *what)
{
    return db_sqlite_fail(im->db, err, what);
}

/* Run a statement whose parameters are bound; resets it (and its bindings) for reuse. */
static int step_done(struct importer *im, enum imp_stmt s, struct verr *err)
{
    int rc = sqlite3_step(im->st[s]);
    sqlite3_reset(im->st[s]);
    sqlite3_clear_bindings(im->st[s]);
    if (rc != SQLITE_DONE)
        return fail_sql(im, err, "writing the catalogue");
    return 0;
}

int importer_image_size(struct importer *im, const char *image, long line, const char *where,
                        uint32_t *w, uint32_t *h, struct verr *err)
{
    struct strmap_entry *e = strmap_find(&im->images, image);
    if (e) {
        *w = (uint32_t)e->a;
        *h = (uint32_t)e->b;
        return 0;
    }
    char path[4096];
    struct verr cerr = {0, ""};
    if (codec_resolve(im->image_root, image, path, sizeof path, &cerr) < 0) {
        if (cerr.status == 404)
            return importer_fail(im, err, 400, line, where,
                                 "image \"%.80s\" not found under the image root %.60s", image,
                                 im->image_root);
        return importer_fail(im, err, 400, line, where, "image \"%.80s\": %.100s", image, cerr.msg);
    }
    struct codec_info info;
    memset(&info, 0, sizeof info);
    if (codec_probe(path, 0, &info, &cerr) < 0)
        return importer_fail(im, err, 400, line, where, "cannot read image \"%.80s\": %.100s",
                             image, cerr.msg);
    *w = info.width;
    *h = info.height;
    codec_info_clear(&info);
    if (!strmap_add(&im->images, image, *w, *h))
        return verr_set(err, 500, "out of memory");
    return 0;
}

int importer_check_new_object(struct importer *im, const char *id, long line, const char *where,
                              struct verr *err)
{
    struct strmap_entry *e = strmap_find(&im->seen, id);
    if (e)
        return importer_fail(im, err, 400, line, where,
                             "object \"%.80s\" appears again (first at line %lld); the rows of"
                             " one object must be consecutive and an object appear once per file",
                             id, (long long)e->a);
    if (!strmap_add(&im->seen, id, line, 0))
        return verr_set(err, 500, "out of memory");
    return 0;
}

void importer_row_done(struct importer *im)
{
    im->stats->rows++;
    if (im->progress && im->stats->rows % PROGRESS_EVERY_ROWS == 0)
        im->progress(im->progress_ctx, im->file, im->stats->rows);
}

/* Every row this file changes gets one stamp, later than any stamp in the database, so a
 * change is always visible in `modified` (ETag / Last-Modified), even two imports a second. */
static int ensure_stamp(struct importer *im, struct verr *err)
{
    if (im->stamp)
        return 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(im->db->sq,
                           "SELECT MAX(m) FROM (SELECT MAX(modified) AS m FROM objects"
                           " UNION ALL SELECT MAX(modified) FROM collections)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail_sql(im, err, "reading modification times");
    int rc = sqlite3_step(st);
    int64_t latest = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return fail_sql(im, err, "reading modification times");
    int64_t now = (int64_t)time(NULL);
    im->stamp = now > latest ? now : latest + 1;
    return 0;
}

static int touch_collection(struct importer *im, sqlite3_int64 pk, struct verr *err)
{
    sqlite3_bind_int64(im->st[IS_TOUCH_COLLECTION], 1, pk);
    sqlite3_bind_int64(im->st[IS_TOUCH_COLLECTION], 2, im->stamp);
    return step_done(im, IS_TOUCH_COLLECTION, err);
}

/* The pk of the collection at path `name` ("A > B"), created (with its parents) if missing. */
static int collection_pk(struct importer *im, const char *name, sqlite3_int64 *pk, struct verr *err)
{
    struct strmap_entry *e = strmap_find(&im->collections, name);
    if (e) {
        *pk = e->a;
        return 0;
    }
    sqlite3_stmt *st = im->st[IS_FIND_COLLECTION];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *pk = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_sql(im, err, "reading collections");
    if (rc == SQLITE_DONE) {
        const char *leaf = name, *sep;
        while ((sep = strstr(leaf, " > ")))
            leaf = sep + 3;
        sqlite3_int64 parent = im->top_pk;
        if (leaf != name) {
            char *pname = strndup(name, (size_t)(leaf - 3 - name));
            if (!pname)
                return verr_set(err, 500, "out of memory");
            int prc = collection_pk(im, pname, &parent, err);
            free(pname);
            if (prc < 0)
                return -1;
        }
        struct strbuf *label = &im->buf[0];
        strbuf_reset(label);
        strbuf_puts(label, "{\"none\":[");
        db_json_string(label, leaf);
        strbuf_puts(label, "]}");
        if (!strbuf_ok(label))
            return verr_set(err, 500, "out of memory");
        st = im->st[IS_INSERT_COLLECTION];
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, label->p, (int)label->len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, parent);
        sqlite3_bind_int64(st, 4, im->stamp);
        if (step_done(im, IS_INSERT_COLLECTION, err) < 0)
            return -1;
        *pk = sqlite3_last_insert_rowid(im->db->sq);
        /* The parent lists its sub-collections: it changed too. */
        if (touch_collection(im, parent, err) < 0)
            return -1;
    } else if (touch_collection(im, *pk, err) < 0) {
        return -1;
    }
    if (!strmap_add(&im->collections, name, *pk, 0))
        return verr_set(err, 500, "out of memory");
    return 0;
}

/* The JSON texts of an object's own columns, in buf[0..3]: label, summary, required
 * statement, behavior (empty text = NULL). */
static int object_json(struct importer *im, const struct db_object *o, struct verr *err)
{
    for (int i = 0; i < 4; i++)
        strbuf_reset(&im->buf[i]);
    if (o->label.n)
        db_lang_map_to_json(&o->label, &im->buf[0]);
    if (o->summary.n)
        db_lang_map_to_json(&o->summary, &im->buf[1]);
    if (o->has_required_statement) {
        strbuf_puts(&im->buf[2], "{\"label\":");
        db_lang_map_to_json(&o->required_statement.label, &im->buf[2]);
        strbuf_puts(&im->buf[2], ",\"value\":");
        db_lang_map_to_json(&o->required_statement.value, &im->buf[2]);
        strbuf_putc(&im->buf[2], '}');
    }
    if (o->nbehavior) {
        strbuf_putc(&im->buf[3], '[');
        for (size_t i = 0; i < o->nbehavior; i++) {
            if (i)
                strbuf_putc(&im->buf[3], ',');
            db_json_string(&im->buf[3], o->behavior[i]);
        }
        strbuf_putc(&im->buf[3], ']');
    }
    for (int i = 0; i < 4; i++) {
        strbuf_putc(&im->buf[i], '\0'); /* make sure p exists, then drop the NUL again */
        im->buf[i].len--;
        if (!strbuf_ok(&im->buf[i]))
            return verr_set(err, 500, "out of memory");
    }
    return 0;
}

/* FNV-1a over every value the object's rows will hold, each length-prefixed, so that a
 * re-import can tell "identical" without reading the old rows back. */
static uint64_t hash_field(uint64_t h, const char *s, size_t n)
{
    uint64_t len = s ? (uint64_t)n : UINT64_MAX;
    h = hash_bytes(h, &len, sizeof len);
    return s ? hash_bytes(h, s, n) : h;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return hash_field(h, s, s ? strlen(s) : 0);
}

static uint64_t hash_u64(uint64_t h, uint64_t v)
{
    return hash_bytes(h, &v, sizeof v);
}

static uint64_t hash_map(uint64_t h, const struct db_lang_map *m, struct strbuf *scratch)
{
    strbuf_reset(scratch);
    db_lang_map_to_json(m, scratch);
    return hash_field(h, scratch->p, scratch->len);
}

static int object_hash(struct importer *im, const struct imp_object *io, uint64_t *out,
                       struct verr *err)
{
    const struct db_object *o = &io->o;
    struct strbuf scratch = {0};
    uint64_t h = hash_u64(FNV_OFFSET, DB_SCHEMA_VERSION);
    for (int i = 0; i < 4; i++)
        h = hash_field(h, im->buf[i].p, im->buf[i].len);
    h = hash_str(h, o->rights);
    h = hash_str(h, o->nav_date);
    h = hash_str(h, o->viewing_direction);
    h = hash_str(h, o->extra_json);
    h = hash_u64(h, o->nmetadata);
    for (size_t i = 0; i < o->nmetadata; i++) {
        h = hash_map(h, &o->metadata[i].label, &scratch);
        h = hash_map(h, &o->metadata[i].value, &scratch);
    }
    h = hash_u64(h, o->ncanvases);
    for (size_t i = 0; i < o->ncanvases; i++) {
        h = hash_map(h, &o->canvases[i].label, &scratch);
        h = hash_str(h, o->canvases[i].image);
        h = hash_u64(h, ((uint64_t)o->canvases[i].width << 32) | o->canvases[i].height);
    }
    h = hash_u64(h, io->nranges);
    for (size_t i = 0; i < io->nranges; i++) {
        const struct imp_range *r = &io->ranges[i];
        h = hash_u64(h, r->parent);
        h = hash_map(h, &r->label, &scratch);
        h = hash_u64(h, r->ncanvases);
        for (size_t k = 0; k < r->ncanvases; k++)
            h = hash_u64(h, r->canvases[k]);
    }
    h = hash_u64(h, io->ncollections);
    for (size_t i = 0; i < io->ncollections; i++)
        h = hash_str(h, io->collections[i]);
    bool is_ok = !scratch.oom;
    strbuf_free(&scratch);
    if (!is_ok)
        return verr_set(err, 500, "out of memory");
    *out = h;
    return 0;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s, size_t n)
{
    if (s && n)
        sqlite3_bind_text(st, i, s, (int)n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
    bind_text_or_null(st, i, s, s ? strlen(s) : 0);
}

static int bind_map(sqlite3_stmt *st, int i, const struct db_lang_map *m, struct strbuf *b,
                    struct verr *err)
{
    strbuf_reset(b);
    if (m->n)
        db_lang_map_to_json(m, b);
    if (b->oom)
        return verr_set(err, 500, "out of memory");
    bind_text_or_null(st, i, b->p, b->len);
    return 0;
}

static int write_children(struct importer *im, sqlite3_int64 pk, const struct imp_object *io,
                          struct verr *err)
{
    const struct db_object *o = &io->o;
    struct strbuf *b = &im->buf[0], *b2 = &im->buf[1];
    sqlite3_stmt *st = im->st[IS_METADATA];
    for (size_t i = 0; i < o->nmetadata; i++) {
        sqlite3_bind_int64(st, 1, pk);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        if (bind_map(st, 3, &o->metadata[i].label, b, err) < 0 ||
            bind_map(st, 4, &o->metadata[i].value, b2, err) < 0 ||
            step_done(im, IS_METADATA, err) < 0)
            return -1;
    }
    st = im->st[IS_CANVAS];
    for (size_t i = 0; i < o->ncanvases; i++) {
        sqlite3_bind_int64(st, 1, pk);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        if (bind_map(st, 3, &o->canvases[i].label, b, err) < 0)
            return -1;
        bind_str(st, 4, o->canvases[i].image);
        sqlite3_bind_int64(st, 5, o->canvases[i].width);
        sqlite3_bind_int64(st, 6, o->canvases[i].height);
        if (step_done(im, IS_CANVAS, err) < 0)
            return -1;
    }
    if (io->nranges) {
        /* pks[i]: the range's row; next[i]: its next child's position (next[n]: top level). */
        sqlite3_int64 *pks = calloc(io->nranges, sizeof *pks);
        size_t *next = calloc(io->nranges + 1, sizeof *next);
        int rc = -1;
        if (!pks || !next) {
            verr_set(err, 500, "out of memory");
            goto ranges_done;
        }
        st = im->st[IS_RANGE];
        for (size_t i = 0; i < io->nranges; i++) {
            const struct imp_range *r = &io->ranges[i];
            size_t *counter = r->parent == IMP_NO_PARENT ? &next[io->nranges] : &next[r->parent];
            sqlite3_bind_int64(st, 1, pk);
            if (r->parent == IMP_NO_PARENT)
                sqlite3_bind_null(st, 2);
            else
                sqlite3_bind_int64(st, 2, pks[r->parent]);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)(*counter)++);
            if (bind_map(st, 4, &r->label, b, err) < 0)
                goto ranges_done;
            strbuf_reset(b2);
            strbuf_putc(b2, '[');
            for (size_t k = 0; k < r->ncanvases; k++) {
                char num[24];
                int len = snprintf(num, sizeof num, k ? ",%zu" : "%zu", r->canvases[k]);
                strbuf_put(b2, num, (size_t)len);
            }
            strbuf_putc(b2, ']');
            if (!strbuf_ok(b2)) {
                verr_set(err, 500, "out of memory");
                goto ranges_done;
            }
            sqlite3_bind_text(st, 5, b2->p, (int)b2->len, SQLITE_STATIC);
            if (step_done(im, IS_RANGE, err) < 0)
                goto ranges_done;
            pks[i] = sqlite3_last_insert_rowid(im->db->sq);
        }
        rc = 0;
    ranges_done:
        free(pks);
        free(next);
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; i < io->ncollections; i++) {
        sqlite3_int64 cpk;
        if (collection_pk(im, io->collections[i], &cpk, err) < 0)
            return -1;
        sqlite3_bind_int64(im->st[IS_MEMBER], 1, cpk);
        sqlite3_bind_int64(im->st[IS_MEMBER], 2, pk);
        if (step_done(im, IS_MEMBER, err) < 0)
            return -1;
    }
    return 0;
}

int importer_write_object(struct importer *im, struct imp_object *io, struct verr *err)
{
    const struct db_object *o = &io->o;
    uint64_t h = 0;
    im->stats->objects++;
    im->stats->canvases += o->ncanvases;
    if (object_json(im, o, err) < 0 || object_hash(im, io, &h, err) < 0)
        return -1;

    sqlite3_stmt *st = im->st[IS_FIND];
    sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_int64 pk = 0;
    bool is_same = false;
    if (rc == SQLITE_ROW) {
        pk = sqlite3_column_int64(st, 0);
        is_same = (uint64_t)sqlite3_column_int64(st, 1) == h;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_sql(im, err, "reading objects");
    if (is_same) {
        im->stats->unchanged++;
        return 0;
    }
    if (ensure_stamp(im, err) < 0)
        return -1;
    im->has_changes = true;

    if (pk) {
        /* Replace: the collections it leaves change too; then drop every child row. */
        sqlite3_bind_int64(im->st[IS_TOUCH_OLD_COLLECTIONS], 1, pk);
        sqlite3_bind_int64(im->st[IS_TOUCH_OLD_COLLECTIONS], 2, im->stamp);
        if (step_done(im, IS_TOUCH_OLD_COLLECTIONS, err) < 0)
            return -1;
        for (enum imp_stmt s = IS_DEL_METADATA; s <= IS_DEL_MEMBERS; s++) {
            sqlite3_bind_int64(im->st[s], 1, pk);
            if (step_done(im, s, err) < 0)
                return -1;
        }
    }
    st = im->st[pk ? IS_UPDATE : IS_INSERT];
    for (int i = 0; i < 4; i++)
        bind_text_or_null(st, i + 1, im->buf[i].p, im->buf[i].len);
    bind_str(st, 4, o->rights);
    bind_str(st, 5, o->nav_date);
    bind_str(st, 6, o->viewing_direction);
    bind_str(st, 7, im->buf[3].len ? im->buf[3].p : NULL);
    bind_str(st, 8, o->extra_json);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)h);
    sqlite3_bind_int64(st, 10, im->stamp);
    if (pk)
        sqlite3_bind_int64(st, 12, pk);
    else
        sqlite3_bind_text(st, 11, o->id, -1, SQLITE_STATIC);
    if (step_done(im, pk ? IS_UPDATE : IS_INSERT, err) < 0)
        return -1;
    if (!pk)
        pk = sqlite3_last_insert_rowid(im->db->sq);
    return write_children(im, pk, io, err);
}

/* After the last object: drop collections that re-imports left empty (they would list
 * nothing), innermost first, and stamp the top-level collection, which lists everything. */
static int finish(struct importer *im, struct verr *err)
{
    static const char *const prunable =
        "name <> '' AND NOT EXISTS (SELECT 1 FROM collection_objects m WHERE m.collection = c.pk)"
        " AND NOT EXISTS (SELECT 1 FROM collections k WHERE k.parent = c.pk)";
    char sql[512];
    if (!im->has_changes)
        return 0;
    for (;;) {
        snprintf(sql, sizeof sql,
                 "UPDATE collections SET modified = %lld WHERE pk IN"
                 " (SELECT c.parent FROM collections c WHERE %s)",
                 (long long)im->stamp, prunable);
        if (sqlite3_exec(im->db->sq, sql, NULL, NULL, NULL) != SQLITE_OK)
            return fail_sql(im, err, "pruning empty collections");
        snprintf(sql, sizeof sql, "DELETE FROM collections AS c WHERE %s", prunable);
        if (sqlite3_exec(im->db->sq, sql, NULL, NULL, NULL) != SQLITE_OK)
            return fail_sql(im, err, "pruning empty collections");
        if (sqlite3_changes(im->db->sq) == 0)
            break;
    }
    return touch_collection(im, im->top_pk, err);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

int db_import_file(struct db *db, const char *path, const char *image_root, db_progress_fn progress,
                   void *progress_ctx, struct db_import_stats *stats, struct verr *err)
{
    struct db_import_stats local;
    struct importer im;
    struct stat sb;
    FILE *f = NULL;
    int rc = -1;
    bool is_open = false;
    bool is_csv = has_suffix(path, ".csv");

    memset(&im, 0, sizeof im);
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    im.db = db;
    im.file = base_name(path);
    im.image_root = image_root;
    im.progress = progress;
    im.progress_ctx = progress_ctx;
    im.stats = stats;

    if (!is_csv && !has_suffix(path, ".jsonl") && !has_suffix(path, ".ndjson"))
        return verr_set(err, 400, "%.100s: unknown format; name the file .csv, .jsonl or .ndjson",
                        im.file);
    if (!db->is_writable)
        return verr_set(err, 500, "the database is open read-only");
    if (stat(image_root, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return verr_set(err, 400, "image root %.160s is not a folder", image_root);
    if (!(f = fopen(path, "rb")))
        return verr_set(err, 400, "cannot open %.160s: %s", path, strerror(errno));
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        verr_set(err, 400, "%.160s is a folder, not a file", path);
        goto done;
    }

    if (sqlite3_exec(db->sq, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        db_sqlite_fail(db, err, "BEGIN");
        goto done;
    }
    is_open = true;
    for (int i = 0; i < IS_COUNT; i++) {
        if (sqlite3_prepare_v3(db->sq, imp_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &im.st[i],
                               NULL) != SQLITE_OK) {
            db_sqlite_fail(db, err, "preparing the import");
            goto done;
        }
    }
    sqlite3_bind_text(im.st[IS_FIND_COLLECTION], 1, "", 0, SQLITE_STATIC);
    if (sqlite3_step(im.st[IS_FIND_COLLECTION]) != SQLITE_ROW) {
        verr_set(err, 500, "database: the top-level collection is missing");
        goto done;
    }
    im.top_pk = sqlite3_column_int64(im.st[IS_FIND_COLLECTION], 0);
    sqlite3_reset(im.st[IS_FIND_COLLECTION]);
    sqlite3_clear_bindings(im.st[IS_FIND_COLLECTION]);

    if ((is_csv ? import_csv(&im, f, err) : import_jsonl(&im, f, err)) < 0 || finish(&im, err) < 0)
        goto done;
    for (int i = 0; i < IS_COUNT; i++) {
        sqlite3_finalize(im.st[i]);
        im.st[i] = NULL;
    }
    if (sqlite3_exec(db->sq, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        db_sqlite_fail(db, err, "COMMIT");
        goto done;
    }
    is_open = false;
    rc = 0;
done:
    for (int i = 0; i < IS_COUNT; i++)
        sqlite3_finalize(im.st[i]);
    if (is_open)
        sqlite3_exec(db->sq, "ROLLBACK", NULL, NULL, NULL);
    strmap_free(&im.images);
    strmap_free(&im.seen);
    strmap_free(&im.collections);
    for (int i = 0; i < 4; i++)
        strbuf_free(&im.buf[i]);
    if (f)
        fclose(f);
    return rc;
}
