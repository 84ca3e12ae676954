/* import_jsonl.c: the JSON Lines catalogue format (docs/import.md): one object per line, in
 * Presentation-API-like field names. Every value is type-checked and every error names the
 * line and the field path ("canvases[2].image"); unknown fields are errors, to catch typos. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

#define MAX_RANGE_DEPTH 32

struct jl {
    struct importer *im;
    long line;
    struct verr *err;
    struct imp_object cur;
};

static int fail(struct jl *j, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct jl *j, const char *field, const char *fmt, ...)
{
    char where[160], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(where, sizeof where, "field \"%s\"", field);
    return importer_fail(j->im, j->err, 400, j->line, where, "%s", msg);
}

static int oom(struct jl *j)
{
    return verr_set(j->err, 500, "out of memory");
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "true or false";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    return "an object";
}

/* A string value, checked for UTF-8 (cJSON decodes \u escapes without checking them). */
static int get_string(struct jl *j, const cJSON *v, const char *field, const char **out)
{
    *out = NULL;
    if (!cJSON_IsString(v))
        return fail(j, field, "expected a string, found %s", type_name(v));
    size_t n = strlen(v->valuestring);
    if (db_utf8_invalid_at(v->valuestring, n) != n)
        return fail(j, field, "%s", "invalid UTF-8 (a bad \\u escape?)");
    *out = v->valuestring;
    return 0;
}

/* A language map {"en": ["..."], "fr": "..."}, or a plain string meaning {"none": [string]}. */
static int get_lang_map(struct jl *j, const cJSON *v, const char *field, struct db_lang_map *m)
{
    const char *s;
    char sub[128];
    if (cJSON_IsString(v)) {
        if (get_string(j, v, field, &s) < 0)
            return -1;
        return db_lang_map_add(m, "none", s, strlen(s)) < 0 ? oom(j) : 0;
    }
    if (!cJSON_IsObject(v))
        return fail(j, field, "expected a language map ({\"en\": [\"...\"]}) or a string, found %s",
                    type_name(v));
    const cJSON *lang, *item;
    cJSON_ArrayForEach(lang, v)
    {
        snprintf(sub, sizeof sub, "%s.%s", field, lang->string);
        if (!db_lang_tag_ok(lang->string, strlen(lang->string)))
            return fail(j, sub, "\"%.40s\" is not a language tag (en, fr, zh-Hant, none...)",
                        lang->string);
        if (cJSON_IsString(lang)) {
            if (get_string(j, lang, sub, &s) < 0)
                return -1;
            if (db_lang_map_add(m, lang->string, s, strlen(s)) < 0)
                return oom(j);
            continue;
        }
        if (!cJSON_IsArray(lang))
            return fail(j, sub, "expected an array of strings, found %s", type_name(lang));
        cJSON_ArrayForEach(item, lang)
        {
            if (get_string(j, item, sub, &s) < 0)
                return -1;
            if (db_lang_map_add(m, lang->string, s, strlen(s)) < 0)
                return oom(j);
        }
    }
    return 0;
}

static int get_pair(struct jl *j, const cJSON *v, const char *field, struct db_pair *p)
{
    char sub[128];
    if (!cJSON_IsObject(v))
        return fail(j, field, "expected {\"label\": ..., \"value\": ...}, found %s", type_name(v));
    const cJSON *label = NULL, *value = NULL, *k;
    cJSON_ArrayForEach(k, v)
    {
        if (!strcmp(k->string, "label"))
            label = k;
        else if (!strcmp(k->string, "value"))
            value = k;
        else
            return fail(j, field, "unknown field \"%.40s\" (expected label and value)", k->string);
    }
    if (!label || !value)
        return fail(j, field, "%s", label ? "missing \"value\"" : "missing \"label\"");
    snprintf(sub, sizeof sub, "%s.label", field);
    if (get_lang_map(j, label, sub, &p->label) < 0)
        return -1;
    snprintf(sub, sizeof sub, "%s.value", field);
    return get_lang_map(j, value, sub, &p->value);
}

static int get_metadata(struct jl *j, const cJSON *v)
{
    char sub[64];
    if (!cJSON_IsArray(v))
        return fail(j, "metadata", "expected an array of {label, value}, found %s", type_name(v));
    const cJSON *item;
    size_t i = 0;
    cJSON_ArrayForEach(item, v)
    {
        snprintf(sub, sizeof sub, "metadata[%zu]", i++);
        struct db_pair *p = imp_object_add_metadata(&j->cur);
        if (!p)
            return oom(j);
        if (get_pair(j, item, sub, p) < 0)
            return -1;
    }
    return 0;
}

static int get_behavior(struct jl *j, const cJSON *v)
{
    struct db_object *o = &j->cur.o;
    if (!cJSON_IsArray(v))
        return fail(j, "behavior", "expected an array of strings, found %s", type_name(v));
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        const char *s;
        if (get_string(j, item, "behavior", &s) < 0)
            return -1;
        if (!db_behavior_ok(s))
            return fail(j, "behavior",
                        "\"%.40s\" is not a IIIF behavior (paged, individuals,"
                        " continuous, auto-advance, ...)",
                        s);
        char **b = realloc(o->behavior, (o->nbehavior + 1) * sizeof *b);
        if (!b)
            return oom(j);
        o->behavior = b;
        if (!(b[o->nbehavior] = strdup(s)))
            return oom(j);
        o->nbehavior++;
    }
    return 0;
}

static int get_canvases(struct jl *j, const cJSON *v)
{
    char sub[64], where[80];
    if (!cJSON_IsArray(v))
        return fail(j, "canvases", "expected an array of {label, image}, found %s", type_name(v));
    if (cJSON_GetArraySize(v) == 0)
        return fail(j, "canvases", "%s", "an object needs at least one canvas");
    const cJSON *item, *k;
    size_t i = 0;
    cJSON_ArrayForEach(item, v)
    {
        snprintf(sub, sizeof sub, "canvases[%zu]", i++);
        if (!cJSON_IsObject(item))
            return fail(j, sub, "expected {\"label\": ..., \"image\": \"...\"}, found %s",
                        type_name(item));
        struct db_canvas *c = imp_object_add_canvas(&j->cur);
        if (!c)
            return oom(j);
        const cJSON *image = NULL;
        cJSON_ArrayForEach(k, item)
        {
            if (!strcmp(k->string, "image")) {
                image = k;
            } else if (!strcmp(k->string, "label")) {
                char lsub[80];
                snprintf(lsub, sizeof lsub, "%s.label", sub);
                if (get_lang_map(j, k, lsub, &c->label) < 0)
                    return -1;
            } else {
                return fail(j, sub, "unknown field \"%.40s\" (expected label and image)",
                            k->string);
            }
        }
        snprintf(where, sizeof where, "%s.image", sub);
        const char *s;
        if (!image)
            return fail(j, where, "%s", "missing image identifier");
        if (get_string(j, image, where, &s) < 0)
            return -1;
        if (!*s)
            return fail(j, where, "%s", "missing image identifier");
        if (!(c->image = strdup(s)))
            return oom(j);
        char fwhere[100];
        snprintf(fwhere, sizeof fwhere, "field \"%s\"", where);
        if (importer_image_size(j->im, s, j->line, fwhere, &c->width, &c->height, j->err) < 0)
            return -1;
    }
    return 0;
}

/* Ranges arrive nested; they are stored flat in pre-order (a parent before its children). */
static int get_ranges(struct jl *j, const cJSON *v, const char *field, size_t parent, int depth)
{
    char sub[128], ksub[160];
    if (!cJSON_IsArray(v))
        return fail(j, field, "expected an array of ranges, found %s", type_name(v));
    if (depth > MAX_RANGE_DEPTH)
        return fail(j, field, "ranges nested deeper than %d levels", MAX_RANGE_DEPTH);
    const cJSON *item, *k, *idx;
    size_t i = 0;
    cJSON_ArrayForEach(item, v)
    {
        snprintf(sub, sizeof sub, "%s[%zu]", field, i++);
        if (!cJSON_IsObject(item))
            return fail(j, sub, "expected {\"label\", \"canvases\", \"ranges\"}, found %s",
                        type_name(item));
        struct imp_range *r = imp_object_add_range(&j->cur, parent);
        if (!r)
            return oom(j);
        size_t self = j->cur.nranges - 1;
        const cJSON *label = NULL, *canvases = NULL, *children = NULL;
        cJSON_ArrayForEach(k, item)
        {
            if (!strcmp(k->string, "label"))
                label = k;
            else if (!strcmp(k->string, "canvases"))
                canvases = k;
            else if (!strcmp(k->string, "ranges"))
                children = k;
            else
                return fail(j, sub, "unknown field \"%.40s\" (expected label, canvases, ranges)",
                            k->string);
        }
        snprintf(ksub, sizeof ksub, "%s.label", sub);
        if (!label)
            return fail(j, ksub, "%s", "a range needs a label");
        if (get_lang_map(j, label, ksub, &r->label) < 0)
            return -1;
        if (!canvases && !children)
            return fail(j, sub, "%s", "a range needs canvases or ranges");
        if (canvases) {
            snprintf(ksub, sizeof ksub, "%s.canvases", sub);
            if (!cJSON_IsArray(canvases))
                return fail(j, ksub, "expected an array of canvas indexes, found %s",
                            type_name(canvases));
            cJSON_ArrayForEach(idx, canvases)
            {
                double d = cJSON_IsNumber(idx) ? idx->valuedouble : -1;
                if (!(d >= 0 && d < (double)j->cur.o.ncanvases && d == (double)(size_t)d)) {
                    return fail(j, ksub,
                                "each entry must be a canvas index from 0 to the number"
                                " of canvases - 1 (%zu canvases)",
                                j->cur.o.ncanvases);
                }
                /* r may have moved: nested ranges grow the array. */
                if (imp_range_add_canvas(&j->cur.ranges[self], (size_t)d) < 0)
                    return oom(j);
            }
        }
        if (children) {
            snprintf(ksub, sizeof ksub, "%s.ranges", sub);
            if (get_ranges(j, children, ksub, self, depth + 1) < 0)
                return -1;
        }
    }
    return 0;
}

static int add_collection(struct jl *j, const cJSON *item)
{
    const char *s;
    if (get_string(j, item, "collection", &s) < 0)
        return -1;
    if (!db_collection_path_ok(s))
        return fail(j, "collection",
                    "\"%.60s\" is not a collection name (no control characters,"
                    " no empty or space-padded names in a \"Parent > Child\" path)",
                    s);
    return imp_object_add_collection(&j->cur, s) < 0 ? oom(j) : 0;
}

static int get_collections(struct jl *j, const cJSON *v)
{
    const cJSON *item;
    if (cJSON_IsString(v))
        return add_collection(j, v);
    if (!cJSON_IsArray(v))
        return fail(j, "collection", "expected a collection name or an array of names, found %s",
                    type_name(v));
    cJSON_ArrayForEach(item, v)
    {
        if (add_collection(j, item) < 0)
            return -1;
    }
    return 0;
}

static int get_extra(struct jl *j, cJSON *extra, const cJSON *v)
{
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
        return fail(j, v->string, "expected an array (or an object), found %s", type_name(v));
    cJSON *copy = cJSON_Duplicate(v, true);
    if (!copy || !cJSON_AddItemToObject(extra, v->string, copy)) {
        cJSON_Delete(copy);
        return oom(j);
    }
    return 0;
}

/* One line's object -> j->cur. */
static int parse_object(struct jl *j, const cJSON *root)
{
    struct db_object *o = &j->cur.o;
    const cJSON *v, *manifest = NULL;
    cJSON *extra = cJSON_CreateObject();
    const char *s;
    int rc = -1;
    if (!extra)
        return oom(j);
    cJSON_ArrayForEach(v, root)
    {
        for (const cJSON *w = root->child; w != v; w = w->next) {
            if (!strcmp(w->string, v->string)) {
                fail(j, v->string, "%s", "appears twice");
                goto done;
            }
        }
        if (!strcmp(v->string, "manifest"))
            manifest = v;
    }
    if (!manifest) {
        fail(j, "manifest", "%s", "missing object id");
        goto done;
    }
    if (get_string(j, manifest, "manifest", &s) < 0)
        goto done;
    if (!db_name_ok(s)) {
        fail(j, "manifest",
             "\"%.80s\" is not an object id (no control characters, no leading or"
             " trailing spaces)",
             s);
        goto done;
    }
    if (importer_check_new_object(j->im, s, j->line, "field \"manifest\"", j->err) < 0)
        goto done;
    if (!(o->id = strdup(s))) {
        oom(j);
        goto done;
    }
    cJSON_ArrayForEach(v, root)
    {
        const char *k = v->string;
        int r = 0;
        if (!strcmp(k, "manifest")) {
            continue;
        } else if (!strcmp(k, "label")) {
            r = get_lang_map(j, v, k, &o->label);
        } else if (!strcmp(k, "summary")) {
            r = get_lang_map(j, v, k, &o->summary);
        } else if (!strcmp(k, "metadata")) {
            r = get_metadata(j, v);
        } else if (!strcmp(k, "requiredStatement")) {
            o->has_required_statement = true;
            r = get_pair(j, v, k, &o->required_statement);
        } else if (!strcmp(k, "rights")) {
            if ((r = get_string(j, v, k, &s)) == 0 && !db_rights_ok(s))
                r = fail(j, k, "\"%.80s\" is not an http(s) URI", s);
            if (r == 0 && !(o->rights = strdup(s)))
                r = oom(j);
        } else if (!strcmp(k, "navDate")) {
            char date[21];
            if ((r = get_string(j, v, k, &s)) == 0 && !db_nav_date_normalize(s, date))
                r = fail(j, k, "\"%.40s\" is not a date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)", s);
            if (r == 0 && !(o->nav_date = strdup(date)))
                r = oom(j);
        } else if (!strcmp(k, "viewingDirection")) {
            if ((r = get_string(j, v, k, &s)) == 0 && !db_viewing_direction_ok(s))
                r = fail(j, k,
                         "\"%.40s\" is not left-to-right, right-to-left, top-to-bottom or"
                         " bottom-to-top",
                         s);
            if (r == 0 && !(o->viewing_direction = strdup(s)))
                r = oom(j);
        } else if (!strcmp(k, "behavior")) {
            r = get_behavior(j, v);
        } else if (!strcmp(k, "provider") || !strcmp(k, "homepage") || !strcmp(k, "seeAlso") ||
                   !strcmp(k, "rendering") || !strcmp(k, "thumbnail")) {
            r = get_extra(j, extra, v);
        } else if (!strcmp(k, "canvases")) {
            r = get_canvases(j, v);
        } else if (!strcmp(k, "collection")) {
            r = get_collections(j, v);
        } else if (!strcmp(k, "ranges")) {
            continue; /* after the canvases, which its indexes point at */
        } else {
            r = fail(j, k, "%s", "unknown field; see docs/import.md for the fields");
        }
        if (r < 0)
            goto done;
    }
    if (!o->ncanvases) {
        fail(j, "canvases", "%s", "missing (an object needs at least one canvas)");
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "ranges");
    if (v && get_ranges(j, v, "ranges", IMP_NO_PARENT, 0) < 0)
        goto done;
    if (extra->child && !(o->extra_json = cJSON_PrintUnformatted(extra))) {
        oom(j);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(extra);
    return rc;
}

/* A line longer than this is refused rather than buffered whole (64 MB holds an object of
 * several hundred thousand canvases). */
#define JSONL_MAX_LINE_BYTES ((size_t)64 << 20)

/* Read one line (with its newline, if any) into *buf. Returns its length, 0 at the end of
 * the file, or -1 when it is longer than the cap or memory runs out (*is_too_long says which).
 * NUL bytes are kept (and refused by the caller). */
static ssize_t read_line(FILE *f, char **buf, size_t *cap, bool *is_too_long)
{
    size_t len = 0;
    int c;
    *is_too_long = false;
    while ((c = getc_unlocked(f)) != EOF) {
        if (len + 2 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            if (len >= JSONL_MAX_LINE_BYTES) {
                *is_too_long = true;
                return -1;
            }
            char *nb = realloc(*buf, ncap);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = ncap;
        }
        (*buf)[len++] = (char)c;
        if (c == '\n')
            break;
    }
    if (len)
        (*buf)[len] = '\0';
    return (ssize_t)len;
}

int import_jsonl(struct importer *im, FILE *f, struct verr *err)
{
    struct jl j = {.im = im, .line = 0, .err = err};
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = -1;
    bool is_too_long;
    while ((got = read_line(f, &buf, &cap, &is_too_long)) != 0) {
        j.line++;
        if (got < 0) {
            if (is_too_long)
                importer_fail(im, err, 400, j.line, NULL, "line longer than %zu MB",
                              JSONL_MAX_LINE_BYTES >> 20);
            else
                verr_set(err, 500, "out of memory");
            goto done;
        }
        size_t n = (size_t)got;
        char *s = buf;
        if (j.line == 1 && n >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) {
            s += 3;
            n -= 3;
        }
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
            n--;
        if (memchr(s, '\0', n)) {
            importer_fail(im, err, 400, j.line, NULL, "NUL byte in the line");
            goto done;
        }
        size_t bad = db_utf8_invalid_at(s, n);
        if (bad != n) {
            importer_fail(im, err, 400, j.line, NULL,
                          "invalid UTF-8 at byte %zu (0x%02x); save the file as UTF-8", bad + 1,
                          (unsigned char)s[bad]);
            goto done;
        }
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t'))
            k++;
        if (k == n)
            continue;
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(s, n, &end, false);
        if (!root) {
            size_t at = end && end >= s ? (size_t)(end - s) : 0;
            importer_fail(im, err, 400, j.line, NULL, "invalid JSON near character %zu", at + 1);
            goto done;
        }
        while (end && (size_t)(end - s) < n && (*end == ' ' || *end == '\t'))
            end++;
        if (end && (size_t)(end - s) < n) {
            importer_fail(im, err, 400, j.line, NULL,
                          "text after the JSON value at character %zu (one object per line)",
                          (size_t)(end - s) + 1);
            cJSON_Delete(root);
            goto done;
        }
        if (!cJSON_IsObject(root)) {
            importer_fail(im, err, 400, j.line, NULL, "expected a JSON object, found %s",
                          type_name(root));
            cJSON_Delete(root);
            goto done;
        }
        j.cur.line = j.line;
        int prc = parse_object(&j, root);
        cJSON_Delete(root);
        if (prc < 0 || importer_write_object(im, &j.cur, err) < 0)
            goto done;
        imp_object_clear(&j.cur);
        importer_row_done(im);
    }
    if (ferror(f)) {
        verr_set(err, 500, "%.60s: read error", importer_file(im));
        goto done;
    }
    rc = 0;
done:
    imp_object_clear(&j.cur);
    free(buf);
    return rc;
}
