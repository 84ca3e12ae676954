/* import_csv.c: the CSV catalogue format (docs/import.md): RFC 4180 records, read as a stream
 * (a record at a time, whatever the file size), a header row that names the columns, one row
 * per canvas, the rows of an object consecutive. Every error names the physical line where
 * the row (or the offending field) starts and the column. */
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* ------------------------------------------------------------------ RFC 4180 records */

struct csv_reader {
    FILE *f;
    unsigned char buf[1 << 16];
    size_t pos, len;
    int pushed;    /* a character read ahead and given back, or -1 */
    long line;     /* physical line of the next character, from 1 */
    bool is_start; /* nothing read yet: a BOM may come */
    /* The current record: fields NUL-terminated in data, their offsets and start lines. */
    char *data;
    size_t dlen, dcap;
    size_t *offs;
    long *lines;
    size_t nfields, fcap;
    long record_line;
};

static int csv_getc(struct csv_reader *r)
{
    if (r->pushed >= 0) {
        int c = r->pushed;
        r->pushed = -1;
        return c;
    }
    if (r->pos == r->len) {
        r->len = fread(r->buf, 1, sizeof r->buf, r->f);
        r->pos = 0;
        if (r->len == 0)
            return EOF;
        if (r->is_start) {
            r->is_start = false;
            if (r->len >= 3 && !memcmp(r->buf, "\xef\xbb\xbf", 3))
                r->pos = 3;
            if (r->pos == r->len)
                return csv_getc(r);
        }
    }
    return r->buf[r->pos++];
}

/* A record longer than this is refused rather than buffered: it is almost always a quote
 * that never closes, and the rest of a large file would otherwise end up in memory. */
#define CSV_MAX_RECORD_BYTES (16u << 20)

static bool csv_putc(struct csv_reader *r, char c)
{
    if (r->dlen == r->dcap) {
        if (r->dcap >= CSV_MAX_RECORD_BYTES)
            return false;
        size_t ncap = r->dcap ? r->dcap * 2 : 1024;
        char *d = realloc(r->data, ncap);
        if (!d)
            return false;
        r->data = d;
        r->dcap = ncap;
    }
    r->data[r->dlen++] = c;
    return true;
}

static bool csv_field_start(struct csv_reader *r)
{
    if (r->nfields == r->fcap) {
        size_t ncap = r->fcap ? r->fcap * 2 : 32;
        size_t *o = realloc(r->offs, ncap * sizeof *o);
        if (!o)
            return false;
        r->offs = o;
        long *l = realloc(r->lines, ncap * sizeof *l);
        if (!l)
            return false;
        r->lines = l;
        r->fcap = ncap;
    }
    r->offs[r->nfields] = r->dlen;
    r->lines[r->nfields] = r->line;
    r->nfields++;
    return true;
}

static const char *csv_field(const struct csv_reader *r, size_t i)
{
    return r->data + r->offs[i];
}

static int record_too_long(struct importer *im, const struct csv_reader *r, struct verr *err)
{
    if (r->dcap < CSV_MAX_RECORD_BYTES)
        return verr_set(err, 500, "out of memory");
    return importer_fail(im, err, 400, r->record_line, NULL,
                         "row longer than %u MB (a quote that never closes?)",
                         CSV_MAX_RECORD_BYTES >> 20);
}

/* Read one record. Returns 1 with a record, 0 at the end of the file, -1 on error. Blank
 * lines are skipped. Inside quotes, CRLF becomes LF. */
static int csv_next(struct importer *im, struct csv_reader *r, struct verr *err)
{
    int c;
    bool is_quoted_any;
    do {
        r->dlen = 0;
        r->nfields = 0;
        r->record_line = r->line;
        is_quoted_any = false;
        c = csv_getc(r);
        if (c == EOF)
            return ferror(r->f) ? verr_set(err, 500, "%.60s: read error", importer_file(im)) : 0;
        for (;;) {
            /* c is the first character of a field. */
            if (!csv_field_start(r))
                return verr_set(err, 500, "out of memory");
            if (c == '"') {
                long quote_line = r->line;
                is_quoted_any = true;
                for (;;) {
                    c = csv_getc(r);
                    if (c == EOF)
                        return importer_fail(im, err, 400, quote_line, NULL,
                                             "unterminated quote (a quoted field opens here and"
                                             " never closes)");
                    if (c == '\0')
                        return importer_fail(im, err, 400, r->line, NULL, "NUL byte in the file");
                    if (c == '"') {
                        c = csv_getc(r);
                        if (c != '"')
                            break;
                    } else if (c == '\r') {
                        int n = csv_getc(r);
                        if (n == '\n')
                            c = '\n';
                        else
                            r->pushed = n;
                    }
                    if (c == '\n')
                        r->line++;
                    if (!csv_putc(r, (char)c))
                        return record_too_long(im, r, err);
                }
                if (c == '\r') {
                    int n = csv_getc(r);
                    if (n == '\n')
                        c = '\n';
                    else
                        r->pushed = n;
                }
                if (c != ',' && c != '\n' && c != EOF)
                    return importer_fail(im, err, 400, r->line, NULL,
                                         "unexpected text after a closing quote (a quote inside a"
                                         " quoted field is written \"\")");
            } else {
                for (;;) {
                    if (c == ',' || c == '\n' || c == EOF)
                        break;
                    if (c == '\0')
                        return importer_fail(im, err, 400, r->line, NULL, "NUL byte in the file");
                    if (c == '\r') {
                        int n = csv_getc(r);
                        if (n == '\n') {
                            c = '\n';
                            break;
                        }
                        r->pushed = n;
                    }
                    if (!csv_putc(r, (char)c))
                        return record_too_long(im, r, err);
                    c = csv_getc(r);
                }
            }
            if (!csv_putc(r, '\0'))
                return record_too_long(im, r, err);
            if (c == '\n')
                r->line++;
            if (c != ',')
                break;
            c = csv_getc(r);
        }
        if (ferror(r->f))
            return verr_set(err, 500, "%.60s: read error", importer_file(im));
    } while (r->nfields == 1 && r->dlen == 1 && !is_quoted_any);
    return 1;
}

/* ------------------------------------------------------------------ columns */

enum col_kind {
    COL_MANIFEST,
    COL_LABEL,
    COL_SUMMARY,
    COL_RIGHTS,
    COL_REQUIRED_STATEMENT,
    COL_NAV_DATE,
    COL_VIEWING_DIRECTION,
    COL_BEHAVIOR,
    COL_COLLECTION,
    COL_METADATA,
    COL_CANVAS_LABEL,
    COL_IMAGE,
    COL_RANGE,
};

static const struct {
    const char *name;
    enum col_kind kind;
    bool has_lang; /* may carry @lang */
} known_columns[] = {
    {"manifest", COL_MANIFEST, false},
    {"label", COL_LABEL, true},
    {"summary", COL_SUMMARY, true},
    {"rights", COL_RIGHTS, false},
    {"required_statement", COL_REQUIRED_STATEMENT, true},
    {"nav_date", COL_NAV_DATE, false},
    {"viewing_direction", COL_VIEWING_DIRECTION, false},
    {"behavior", COL_BEHAVIOR, false},
    {"collection", COL_COLLECTION, false},
    {"canvas_label", COL_CANVAS_LABEL, true},
    {"image", COL_IMAGE, false},
    {"range", COL_RANGE, true},
};

struct column {
    enum col_kind kind;
    char *where; /* `column "label@fr"`, for messages */
    char *lang;  /* "none" when untagged */
    size_t meta; /* COL_METADATA: index in csv.meta_names */
};

struct csv {
    struct csv_reader r;
    struct column *cols;
    size_t ncols;
    char **meta_names; /* metadata.NAME, in first-seen order */
    size_t nmeta;
    size_t col_of[COL_RANGE + 1]; /* the first column of each single-valued kind, or SIZE_MAX */
    size_t *range_cols;           /* the range columns, in header order */
    size_t nrange_cols;
    char **segs; /* one row's range path, per range column and level (scratch) */
    size_t *nsegs;
    struct imp_object cur;
    struct strbuf key;
};

static void csv_free(struct csv *c)
{
    free(c->r.data);
    free(c->r.offs);
    free(c->r.lines);
    for (size_t i = 0; i < c->ncols; i++) {
        free(c->cols[i].where);
        free(c->cols[i].lang);
    }
    free(c->cols);
    for (size_t i = 0; i < c->nmeta; i++)
        free(c->meta_names[i]);
    free(c->meta_names);
    free(c->range_cols);
    free(c->segs);
    free(c->nsegs);
    imp_object_clear(&c->cur);
    strbuf_free(&c->key);
}

/* Check that a field is UTF-8; the message names the physical line of the bad byte. */
static int check_utf8(struct importer *im, struct csv *c, size_t field, const char *where,
                      struct verr *err)
{
    const char *s = csv_field(&c->r, field);
    size_t n = strlen(s), bad = db_utf8_invalid_at(s, n);
    if (bad == n)
        return 0;
    long line = c->r.lines[field];
    for (size_t i = 0; i < bad; i++)
        line += s[i] == '\n';
    return importer_fail(im, err, 400, line, where,
                         "invalid UTF-8 (byte 0x%02x); save the file"
                         " as UTF-8",
                         (unsigned char)s[bad]);
}

/* `column "NAME"`, for messages. */
static char *column_where(const char *name)
{
    size_t n = strlen(name) + 10;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "column \"%s\"", name);
    return d;
}

static int parse_header(struct importer *im, struct csv *c, struct verr *err)
{
    struct csv_reader *r = &c->r;
    long line = r->record_line;
    if (!(c->cols = calloc(r->nfields, sizeof *c->cols)) ||
        !(c->range_cols = calloc(r->nfields, sizeof *c->range_cols)) ||
        !(c->meta_names = calloc(r->nfields, sizeof *c->meta_names)))
        return verr_set(err, 500, "out of memory");
    for (size_t k = 0; k <= COL_RANGE; k++)
        c->col_of[k] = SIZE_MAX;
    for (size_t i = 0; i < r->nfields; i++) {
        if (check_utf8(im, c, i, "header", err) < 0)
            return -1;
        const char *h = csv_field(r, i);
        while (*h == ' ')
            h++;
        size_t hlen = strlen(h);
        while (hlen && h[hlen - 1] == ' ')
            hlen--;
        char name[256];
        if (hlen == 0)
            return importer_fail(im, err, 400, line, NULL, "column %zu has no name", i + 1);
        if (hlen >= sizeof name)
            return importer_fail(im, err, 400, line, NULL, "column %zu: name too long", i + 1);
        memcpy(name, h, hlen);
        name[hlen] = '\0';
        struct column *col = &c->cols[c->ncols++];
        if (!(col->where = column_where(name)))
            return verr_set(err, 500, "out of memory");
        char *at = strrchr(name, '@');
        const char *lang = "none";
        if (at) {
            *at = '\0';
            lang = at + 1;
            if (!db_lang_tag_ok(lang, strlen(lang)))
                return importer_fail(im, err, 400, line, col->where,
                                     "\"%.40s\" is not a language tag (en, fr, zh-Hant, none...)",
                                     lang);
        }
        if (!(col->lang = strdup(lang)))
            return verr_set(err, 500, "out of memory");
        bool is_known = false, has_lang = true;
        if (!strncmp(name, "metadata.", 9) && name[9]) {
            is_known = true;
            col->kind = COL_METADATA;
            size_t m = 0;
            while (m < c->nmeta && strcmp(c->meta_names[m], name + 9))
                m++;
            if (m == c->nmeta && !(c->meta_names[c->nmeta++] = strdup(name + 9)))
                return verr_set(err, 500, "out of memory");
            col->meta = m;
        }
        for (size_t k = 0; !is_known && k < sizeof known_columns / sizeof known_columns[0]; k++) {
            if (!strcmp(name, known_columns[k].name)) {
                is_known = true;
                col->kind = known_columns[k].kind;
                has_lang = known_columns[k].has_lang;
            }
        }
        if (!is_known)
            return importer_fail(im, err, 400, line, col->where,
                                 "unknown column; the columns are manifest, label, summary,"
                                 " rights, required_statement, nav_date, viewing_direction,"
                                 " behavior, collection, metadata.NAME, canvas_label, image,"
                                 " range");
        if (at && !has_lang)
            return importer_fail(im, err, 400, line, col->where,
                                 "this column takes no language tag");
        for (size_t j = 0; j + 1 < c->ncols; j++) {
            const struct column *o = &c->cols[j];
            if (o->kind == col->kind && !strcmp(o->lang, col->lang) &&
                (col->kind != COL_METADATA || o->meta == col->meta))
                return importer_fail(im, err, 400, line, col->where,
                                     "duplicate column (also column %zu)", j + 1);
        }
        if (c->col_of[col->kind] == SIZE_MAX)
            c->col_of[col->kind] = i;
        if (col->kind == COL_RANGE)
            c->range_cols[c->nrange_cols++] = i;
    }
    if (c->col_of[COL_MANIFEST] == SIZE_MAX)
        return importer_fail(im, err, 400, line, NULL, "no \"manifest\" column (the object id)");
    if (c->col_of[COL_IMAGE] == SIZE_MAX)
        return importer_fail(im, err, 400, line, NULL,
                             "no \"image\" column (the image identifier of each canvas)");
    if (c->nrange_cols && (!(c->segs = calloc(c->nrange_cols * 64, sizeof *c->segs)) ||
                           !(c->nsegs = calloc(c->nrange_cols, sizeof *c->nsegs))))
        return verr_set(err, 500, "out of memory");
    return 0;
}

/* ------------------------------------------------------------------ rows */

static bool is_blank(const char *s)
{
    for (; *s; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return false;
    }
    return true;
}

/* The cell of column i in this row ("" past the row's last field). */
static const char *cell(const struct csv *c, size_t i)
{
    return i < c->r.nfields ? csv_field(&c->r, i) : "";
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r' ||
                  (*s)[*n - 1] == '\n'))
        (*n)--;
}

/* Add the values of a cell, separated by " | ", to a language map. */
static int add_values(struct db_lang_map *m, const char *lang, const char *s, struct verr *err)
{
    for (;;) {
        const char *sep = strstr(s, " | ");
        size_t n = sep ? (size_t)(sep - s) : strlen(s);
        const char *v = s;
        trim(&v, &n);
        if (n && db_lang_map_add(m, lang, v, n) < 0)
            return verr_set(err, 500, "out of memory");
        if (!sep)
            return 0;
        s = sep + 3;
    }
}

/* Split a " | " list into the callback, one trimmed non-empty value at a time. */
static int each_value(const char *s, int (*fn)(void *, const char *), void *ctx, struct verr *err)
{
    for (;;) {
        const char *sep = strstr(s, " | ");
        size_t n = sep ? (size_t)(sep - s) : strlen(s);
        const char *v = s;
        trim(&v, &n);
        if (n) {
            char *value = strndup(v, n);
            if (!value)
                return verr_set(err, 500, "out of memory");
            int rc = fn(ctx, value);
            free(value);
            if (rc)
                return rc;
        }
        if (!sep)
            return 0;
        s = sep + 3;
    }
}

struct value_ctx {
    struct importer *im;
    struct csv *c;
    size_t col;
    struct verr *err;
};

static int add_behavior(void *p, const char *v)
{
    struct value_ctx *x = p;
    struct db_object *o = &x->c->cur.o;
    if (!db_behavior_ok(v))
        return importer_fail(x->im, x->err, 400, x->c->r.record_line, x->c->cols[x->col].where,
                             "\"%.40s\" is not a IIIF behavior (paged, individuals, continuous,"
                             " auto-advance, ...)",
                             v);
    char **b = realloc(o->behavior, (o->nbehavior + 1) * sizeof *b);
    if (!b)
        return verr_set(x->err, 500, "out of memory");
    o->behavior = b;
    if (!(b[o->nbehavior] = strdup(v)))
        return verr_set(x->err, 500, "out of memory");
    o->nbehavior++;
    return 0;
}

static int add_collection(void *p, const char *v)
{
    struct value_ctx *x = p;
    if (!db_collection_path_ok(v))
        return importer_fail(x->im, x->err, 400, x->c->r.record_line, x->c->cols[x->col].where,
                             "\"%.60s\" is not a collection name (no control characters, no"
                             " empty or space-padded names in a \"Parent > Child\" path)",
                             v);
    if (imp_object_add_collection(&x->c->cur, v) < 0)
        return verr_set(x->err, 500, "out of memory");
    return 0;
}

/* The object-level columns, from the object's first row. */
static int begin_object(struct importer *im, struct csv *c, const char *id, struct verr *err)
{
    struct db_object *o = &c->cur.o;
    long line = c->r.record_line;
    const char *where_id = c->cols[c->col_of[COL_MANIFEST]].where;
    if (!db_name_ok(id))
        return importer_fail(im, err, 400, line, where_id,
                             "\"%.80s\" is not an object id (no control characters, no leading"
                             " or trailing spaces)",
                             id);
    if (importer_check_new_object(im, id, line, where_id, err) < 0)
        return -1;
    c->cur.line = line;
    if (!(o->id = strdup(id)))
        return verr_set(err, 500, "out of memory");
    for (size_t i = 0; i < c->ncols; i++) {
        const struct column *col = &c->cols[i];
        const char *v = cell(c, i);
        if (is_blank(v))
            continue;
        struct value_ctx x = {im, c, i, err};
        switch (col->kind) {
        case COL_LABEL:
            if (add_values(&o->label, col->lang, v, err) < 0)
                return -1;
            break;
        case COL_SUMMARY:
            if (add_values(&o->summary, col->lang, v, err) < 0)
                return -1;
            break;
        case COL_REQUIRED_STATEMENT:
            if (!o->has_required_statement) {
                o->has_required_statement = true;
                if (db_lang_map_add(&o->required_statement.label, "en", "Attribution", 11) < 0)
                    return verr_set(err, 500, "out of memory");
            }
            if (add_values(&o->required_statement.value, col->lang, v, err) < 0)
                return -1;
            break;
        case COL_RIGHTS:
            if (!db_rights_ok(v))
                return importer_fail(im, err, 400, line, col->where,
                                     "\"%.80s\" is not an http(s) URI (e.g."
                                     " http://creativecommons.org/licenses/by/4.0/)",
                                     v);
            if (!(o->rights = strdup(v)))
                return verr_set(err, 500, "out of memory");
            break;
        case COL_NAV_DATE: {
            char date[21];
            if (!db_nav_date_normalize(v, date))
                return importer_fail(im, err, 400, line, col->where,
                                     "\"%.40s\" is not a date (YYYY-MM-DD or"
                                     " YYYY-MM-DDThh:mm:ssZ)",
                                     v);
            if (!(o->nav_date = strdup(date)))
                return verr_set(err, 500, "out of memory");
            break;
        }
        case COL_VIEWING_DIRECTION:
            if (!db_viewing_direction_ok(v))
                return importer_fail(im, err, 400, line, col->where,
                                     "\"%.40s\" is not left-to-right, right-to-left,"
                                     " top-to-bottom or bottom-to-top",
                                     v);
            if (!(o->viewing_direction = strdup(v)))
                return verr_set(err, 500, "out of memory");
            break;
        case COL_BEHAVIOR:
            if (each_value(v, add_behavior, &x, err))
                return -1;
            break;
        case COL_COLLECTION:
            if (each_value(v, add_collection, &x, err))
                return -1;
            break;
        default:
            break;
        }
    }
    /* Metadata: one pair per NAME, every language column of it merged, in header order. */
    for (size_t m = 0; m < c->nmeta; m++) {
        struct db_lang_map value = {0};
        for (size_t i = 0; i < c->ncols; i++) {
            if (c->cols[i].kind == COL_METADATA && c->cols[i].meta == m && !is_blank(cell(c, i)) &&
                add_values(&value, c->cols[i].lang, cell(c, i), err) < 0) {
                db_lang_map_clear(&value);
                return -1;
            }
        }
        if (!value.n)
            continue;
        struct db_pair *p = imp_object_add_metadata(&c->cur);
        if (!p ||
            db_lang_map_add(&p->label, "none", c->meta_names[m], strlen(c->meta_names[m])) < 0) {
            db_lang_map_clear(&value);
            return verr_set(err, 500, "out of memory");
        }
        p->value = value;
    }
    return 0;
}

/* Split one range cell into c->segs[col * 64 + level]; segments point into the record. */
static int split_range_path(struct importer *im, struct csv *c, size_t k, struct verr *err)
{
    size_t ci = c->range_cols[k];
    char *s = (char *)cell(c, ci);
    size_t n = 0;
    for (;;) {
        char *sep = strstr(s, " > ");
        if (sep)
            *sep = '\0';
        const char *v = s;
        size_t len = strlen(s);
        trim(&v, &len);
        if (len == 0)
            return importer_fail(im, err, 400, c->r.record_line, c->cols[ci].where,
                                 "empty range label in the path (levels are separated by"
                                 " \" > \")");
        if (n == 64)
            return importer_fail(im, err, 400, c->r.record_line, c->cols[ci].where,
                                 "range path deeper than 64 levels");
        ((char *)v)[len] = '\0';
        c->segs[k * 64 + n++] = (char *)v;
        if (!sep)
            break;
        s = sep + 3;
    }
    c->nsegs[k] = n;
    return 0;
}

/* Put canvas `canvas` into the range that this row's path names, creating the ranges of the
 * path that do not exist yet (first-seen order). A level is identified by its parent and the
 * labels of that level in every range column. */
static int add_to_range(struct importer *im, struct csv *c, size_t canvas, struct verr *err)
{
    size_t filled = 0;
    for (size_t k = 0; k < c->nrange_cols; k++) {
        if (!is_blank(cell(c, c->range_cols[k])))
            filled++;
    }
    if (filled == 0)
        return 0;
    const char *where = c->cols[c->range_cols[0]].where;
    if (filled != c->nrange_cols)
        return importer_fail(im, err, 400, c->r.record_line, where,
                             "the range columns must be all filled or all empty in a row");
    for (size_t k = 0; k < c->nrange_cols; k++) {
        if (split_range_path(im, c, k, err) < 0)
            return -1;
        if (c->nsegs[k] != c->nsegs[0])
            return importer_fail(im, err, 400, c->r.record_line, c->cols[c->range_cols[k]].where,
                                 "%zu levels where the first range column has %zu", c->nsegs[k],
                                 c->nsegs[0]);
    }
    struct imp_object *io = &c->cur;
    size_t parent = IMP_NO_PARENT;
    for (size_t level = 0; level < c->nsegs[0]; level++) {
        strbuf_reset(&c->key);
        for (size_t k = 0; k < c->nrange_cols; k++) {
            strbuf_puts(&c->key, c->segs[k * 64 + level]);
            strbuf_putc(&c->key, '\x1f');
        }
        if (!strbuf_ok(&c->key))
            return verr_set(err, 500, "out of memory");
        size_t found = IMP_NO_PARENT;
        /* Latest first: consecutive rows usually stay in the same range. */
        for (size_t i = io->nranges; i-- > 0;) {
            if (io->ranges[i].parent == parent && !strcmp(io->ranges[i].key, c->key.p)) {
                found = i;
                break;
            }
        }
        if (found == IMP_NO_PARENT) {
            struct imp_range *r = imp_object_add_range(io, parent);
            if (!r || !(r->key = strdup(c->key.p)))
                return verr_set(err, 500, "out of memory");
            for (size_t k = 0; k < c->nrange_cols; k++) {
                const char *v = c->segs[k * 64 + level];
                if (db_lang_map_add(&r->label, c->cols[c->range_cols[k]].lang, v, strlen(v)) < 0)
                    return verr_set(err, 500, "out of memory");
            }
            found = io->nranges - 1;
        }
        parent = found;
    }
    if (imp_range_add_canvas(&io->ranges[parent], canvas) < 0)
        return verr_set(err, 500, "out of memory");
    return 0;
}

static int add_canvas(struct importer *im, struct csv *c, struct verr *err)
{
    size_t ci = c->col_of[COL_IMAGE];
    const char *image = cell(c, ci);
    if (is_blank(image))
        return importer_fail(im, err, 400, c->r.record_line, c->cols[ci].where,
                             "missing image identifier");
    struct db_canvas *cv = imp_object_add_canvas(&c->cur);
    if (!cv || !(cv->image = strdup(image)))
        return verr_set(err, 500, "out of memory");
    if (importer_image_size(im, image, c->r.record_line, c->cols[ci].where, &cv->width, &cv->height,
                            err) < 0)
        return -1;
    for (size_t i = 0; i < c->ncols; i++) {
        if (c->cols[i].kind == COL_CANVAS_LABEL && !is_blank(cell(c, i)) &&
            add_values(&cv->label, c->cols[i].lang, cell(c, i), err) < 0)
            return -1;
    }
    return add_to_range(im, c, c->cur.o.ncanvases - 1, err);
}

static int flush_object(struct importer *im, struct csv *c, struct verr *err)
{
    if (!c->cur.o.id)
        return 0;
    int rc = importer_write_object(im, &c->cur, err);
    imp_object_clear(&c->cur);
    return rc;
}

int import_csv(struct importer *im, FILE *f, struct verr *err)
{
    struct csv *c = calloc(1, sizeof *c);
    int rc = -1, got;
    if (!c)
        return verr_set(err, 500, "out of memory");
    c->r.f = f;
    c->r.pushed = -1;
    c->r.line = 1;
    c->r.is_start = true;

    got = csv_next(im, &c->r, err);
    if (got < 0)
        goto done;
    if (got == 0) {
        importer_fail(im, err, 400, 1, NULL, "empty file; expected a header row of column names");
        goto done;
    }
    if (parse_header(im, c, err) < 0)
        goto done;
    size_t mcol = c->col_of[COL_MANIFEST];
    while ((got = csv_next(im, &c->r, err)) > 0) {
        if (c->r.nfields > c->ncols) {
            importer_fail(im, err, 400, c->r.record_line, NULL,
                          "%zu fields but the header has %zu columns (a comma inside a value"
                          " needs quotes)",
                          c->r.nfields, c->ncols);
            goto done;
        }
        for (size_t i = 0; i < c->r.nfields; i++) {
            if (check_utf8(im, c, i, c->cols[i].where, err) < 0)
                goto done;
        }
        /* Spreadsheets often end with rows of empty cells (",,,,"): nothing to import. */
        bool is_empty_row = true;
        for (size_t i = 0; i < c->r.nfields && is_empty_row; i++)
            is_empty_row = is_blank(cell(c, i));
        if (is_empty_row)
            continue;
        const char *id = cell(c, mcol);
        if (is_blank(id)) {
            importer_fail(im, err, 400, c->r.record_line, c->cols[mcol].where, "missing object id");
            goto done;
        }
        if (!c->cur.o.id || strcmp(id, c->cur.o.id)) {
            if (flush_object(im, c, err) < 0 || begin_object(im, c, id, err) < 0)
                goto done;
        }
        if (add_canvas(im, c, err) < 0)
            goto done;
        importer_row_done(im);
    }
    if (got < 0 || flush_object(im, c, err) < 0)
        goto done;
    rc = 0;
done:
    csv_free(c);
    free(c);
    return rc;
}
