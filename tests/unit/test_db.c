/* test_db.c: the catalogue (db/): import CSV and JSON Lines, load objects and collections back,
 * replace on re-import, roll back on every kind of bad input, read-only opens.
 *
 * Images are PNGs written here with libpng (three sizes) under a temporary image root. Every
 * rejected file is checked twice: the message names file, line and column or field, and a
 * dump of every table (schema, user_version and all rows) is identical before and after.
 * Temp files go to $VELLUM_TEST_TMP. */
#include <errno.h>
#include <ftw.h>
#include <png.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "db.h"
#include "db_internal.h"

static char tmpdir[1024];
static char image_root[1100];

static const char *tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
    return buf;
}

/* ---------------------------------------------------------------- fixtures */

static bool write_png(const char *path, uint32_t w, uint32_t h)
{
    FILE *f = fopen(path, "wb");
    png_structp png = NULL;
    png_infop info = NULL;
    unsigned char *row = calloc(w, 3);
    bool ok = false;
    if (!f || !row)
        goto done;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png)))
        goto done;
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++) {
        memset(row, (int)(y * 7), (size_t)w * 3);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    ok = true;
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(row);
    if (f && fclose(f) != 0)
        ok = false;
    return ok;
}

static void write_bytes(const char *name, const char *content, size_t len)
{
    char path[1200];
    FILE *f = fopen(tmp_path(path, sizeof path, name), "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(content, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void write_file(const char *name, const char *content)
{
    write_bytes(name, content, strlen(content));
}

/* Every table: its SQL, then its rows in a canonical order, plus user_version. Two equal
 * dumps mean two databases with the same schema and content. */
static char *dump(const char *dbpath)
{
    sqlite3 *sq = NULL;
    struct strbuf out = {0};
    sqlite3_stmt *tables = NULL;
    if (sqlite3_open_v2(dbpath, &sq, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto done;
    if (sqlite3_prepare_v2(sq, "SELECT name, sql FROM sqlite_master ORDER BY type, name", -1,
                           &tables, NULL) != SQLITE_OK)
        goto done;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        const char *sql = (const char *)sqlite3_column_text(tables, 1);
        strbuf_puts(&out, "== ");
        strbuf_puts(&out, name);
        strbuf_puts(&out, "\n");
        strbuf_puts(&out, sql ? sql : "(auto)");
        strbuf_puts(&out, "\n");
        if (!sql || strncmp(sql, "CREATE TABLE", 12))
            continue;
        char q[256];
        sqlite3_stmt *rows = NULL;
        snprintf(q, sizeof q, "SELECT * FROM \"%s\"", name);
        if (sqlite3_prepare_v2(sq, q, -1, &rows, NULL) != SQLITE_OK)
            continue;
        int ncol = sqlite3_column_count(rows);
        sqlite3_finalize(rows);
        /* ORDER BY every column: canonical for any table, rowid or not. */
        int len = snprintf(q, sizeof q, "SELECT * FROM \"%s\" ORDER BY 1", name);
        for (int i = 2; i <= ncol && len < (int)sizeof q - 8; i++)
            len += snprintf(q + len, sizeof q - (size_t)len, ",%d", i);
        if (sqlite3_prepare_v2(sq, q, -1, &rows, NULL) != SQLITE_OK)
            continue;
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int i = 0; i < ncol; i++) {
                const char *v = (const char *)sqlite3_column_text(rows, i);
                strbuf_puts(&out, i ? "|" : "");
                strbuf_puts(&out, v ? v : "NULL");
            }
            strbuf_putc(&out, '\n');
        }
        sqlite3_finalize(rows);
    }
    sqlite3_stmt *uv = NULL;
    if (sqlite3_prepare_v2(sq, "PRAGMA user_version", -1, &uv, NULL) == SQLITE_OK &&
        sqlite3_step(uv) == SQLITE_ROW) {
        strbuf_puts(&out, "user_version ");
        strbuf_puts(&out, (const char *)sqlite3_column_text(uv, 0));
    }
    sqlite3_finalize(uv);
done:
    sqlite3_finalize(tables);
    sqlite3_close(sq);
    if (!strbuf_ok(&out)) {
        strbuf_free(&out);
        return strdup("(dump failed)");
    }
    return out.p;
}

/* Check a language map against (lang, value) pairs, in order. */
static void check_map(int line, const char *what, const struct db_lang_map *m, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    check_count++;
    bool ok = m->n == n;
    if (!ok)
        fprintf(stderr, "test_db.c:%d: %s: %zu values, expected %zu\n", line, what, m->n, n);
    for (size_t i = 0; ok && i < n; i++) {
        const char *lang = va_arg(ap, const char *);
        const char *value = va_arg(ap, const char *);
        if (strcmp(m->items[i].lang, lang) || strcmp(m->items[i].value, value)) {
            fprintf(stderr, "test_db.c:%d: %s[%zu] = %s:\"%s\", expected %s:\"%s\"\n", line, what,
                    i, m->items[i].lang, m->items[i].value, lang, value);
            ok = false;
        }
    }
    va_end(ap);
    if (!ok)
        check_failures++;
}
#define CHECK_MAP(m, n, ...) check_map(__LINE__, #m, (m), (n), __VA_ARGS__)
#define CHECK_EMPTY(m) check_map(__LINE__, #m, (m), 0, NULL, NULL)

static void check_positions(int line, const struct db_range *r, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    check_count++;
    bool ok = r->ncanvases == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = r->canvases[i] == va_arg(ap, size_t);
    va_end(ap);
    if (!ok) {
        check_failures++;
        fprintf(stderr, "test_db.c:%d: range canvases differ (%zu of them)\n", line, r->ncanvases);
    }
}
#define CHECK_POSITIONS(r, n, ...) check_positions(__LINE__, (r), (n), __VA_ARGS__)

static int import(struct db *db, const char *name, struct db_import_stats *st, struct verr *err)
{
    char path[1200];
    memset(err, 0, sizeof *err);
    return db_import_file(db, tmp_path(path, sizeof path, name), image_root, NULL, NULL, st, err);
}

static bool contains(const char *s, const char *part)
{
    return strstr(s, part) != NULL;
}

/* ---------------------------------------------------------------- CSV */

/* 20 columns; the summary of book1 spans two physical lines (2 and 3). */
static const char catalogue_csv[] =
    "\xef\xbb\xbf"
    "manifest,label,label@ar,label@he,summary,rights,required_statement,required_statement@fr,"
    "nav_date,viewing_direction,behavior,collection,metadata.Creator,metadata.Creator@de,"
    "metadata.Title@ar,canvas_label,canvas_label@ar,image,range,range@fr\r\n"
    "book1,\"Kitab, \"\"the book\"\"\",كتاب,ספר,\"Line one\r\nline two\","
    "https://creativecommons.org/licenses/by/4.0/,Bodleian | Oxford,Bodléienne,1650-03-01,"
    "right-to-left,paged | individuals,Manuscripts > Arabic,Ibn Sina,Avicenna,القانون,f. 1r,"
    "ورقة ١,a.png,Part 1 > Chapter 1,Partie 1 > Chapitre 1\r\n"
    "book1,ignored,,,,,,,,,,,,,,f. 1v,,b.png,Part 1 > Chapter 1,Partie 1 > Chapitre 1\n"
    "book1,,,,,,,,,,,,,,,\"f. 2r, \"\"recto\"\"\",,sub/c.png,Part 1 > Chapter 2,"
    "Partie 1 > Chapitre 2\n"
    "\n"
    "book1,,,,,,,,,,,,,,,f. 2v,,a.png,Part 2,Partie 2\n"
    "map7,Map of Europe,,,,,,,2020-01-02T03:04:05Z,,,Maps,,,,,,b.png,,\n"
    ",,,, ,\n" /* a spreadsheet's empty row: skipped */
    "loose,,,דף בודד,,,,,,,,,,,,,,sub/c.png,,\n";

static void check_book1(const struct db_object *o)
{
    CHECK_STR(o->id, "book1");
    CHECK_MAP(&o->label, 3, "none", "Kitab, \"the book\"", "ar", "كتاب", "he", "ספר");
    CHECK_MAP(&o->summary, 1, "none", "Line one\nline two");
    CHECK(o->rights && !strcmp(o->rights, "https://creativecommons.org/licenses/by/4.0/"));
    CHECK(o->has_required_statement);
    CHECK_MAP(&o->required_statement.label, 1, "en", "Attribution");
    CHECK_MAP(&o->required_statement.value, 3, "none", "Bodleian", "none", "Oxford", "fr",
              "Bodléienne");
    CHECK(o->nav_date && !strcmp(o->nav_date, "1650-03-01T00:00:00Z"));
    CHECK(o->viewing_direction && !strcmp(o->viewing_direction, "right-to-left"));
    CHECK_INT(o->nbehavior, 2);
    if (o->nbehavior == 2) {
        CHECK_STR(o->behavior[0], "paged");
        CHECK_STR(o->behavior[1], "individuals");
    }
    CHECK(o->extra_json == NULL);
    CHECK_INT(o->nmetadata, 2);
    if (o->nmetadata == 2) {
        CHECK_MAP(&o->metadata[0].label, 1, "none", "Creator");
        CHECK_MAP(&o->metadata[0].value, 2, "none", "Ibn Sina", "de", "Avicenna");
        CHECK_MAP(&o->metadata[1].label, 1, "none", "Title");
        CHECK_MAP(&o->metadata[1].value, 1, "ar", "القانون");
    }
    CHECK_INT(o->ncanvases, 4);
    if (o->ncanvases == 4) {
        CHECK_MAP(&o->canvases[0].label, 2, "none", "f. 1r", "ar", "ورقة ١");
        CHECK_STR(o->canvases[0].image, "a.png");
        CHECK_INT(o->canvases[0].width, 30);
        CHECK_INT(o->canvases[0].height, 20);
        CHECK_MAP(&o->canvases[1].label, 1, "none", "f. 1v");
        CHECK_STR(o->canvases[1].image, "b.png");
        CHECK_INT(o->canvases[1].width, 40);
        CHECK_INT(o->canvases[1].height, 50);
        CHECK_MAP(&o->canvases[2].label, 1, "none", "f. 2r, \"recto\"");
        CHECK_STR(o->canvases[2].image, "sub/c.png");
        CHECK_INT(o->canvases[2].width, 7);
        CHECK_INT(o->canvases[2].height, 9);
        CHECK_MAP(&o->canvases[3].label, 1, "none", "f. 2v");
        CHECK_STR(o->canvases[3].image, "a.png");
    }
    CHECK_INT(o->nranges, 2);
    if (o->nranges == 2) {
        const struct db_range *p1 = &o->ranges[0], *p2 = &o->ranges[1];
        CHECK_MAP(&p1->label, 2, "none", "Part 1", "fr", "Partie 1");
        CHECK_INT(p1->ncanvases, 0);
        CHECK_INT(p1->nranges, 2);
        if (p1->nranges == 2) {
            CHECK_MAP(&p1->ranges[0].label, 2, "none", "Chapter 1", "fr", "Chapitre 1");
            CHECK_POSITIONS(&p1->ranges[0], 2, (size_t)0, (size_t)1);
            CHECK_INT(p1->ranges[0].nranges, 0);
            CHECK_MAP(&p1->ranges[1].label, 2, "none", "Chapter 2", "fr", "Chapitre 2");
            CHECK_POSITIONS(&p1->ranges[1], 1, (size_t)2);
        }
        CHECK_MAP(&p2->label, 2, "none", "Part 2", "fr", "Partie 2");
        CHECK_POSITIONS(p2, 1, (size_t)3);
        CHECK_INT(p2->nranges, 0);
    }
    CHECK(o->modified > 0);
}

static const struct db_collection_item *find_item(const struct db_collection *c, const char *id)
{
    for (size_t i = 0; i < c->nitems; i++) {
        if (!strcmp(c->items[i].id, id))
            return &c->items[i];
    }
    return NULL;
}

static void test_csv(const char *dbpath)
{
    struct verr err;
    struct db_import_stats st;
    struct db_object *o = NULL;
    struct db_collection *c = NULL;
    struct db *db = db_open(dbpath, true, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (!db)
        return;

    write_file("catalogue.csv", catalogue_csv);
    CHECK_MSG(import(db, "catalogue.csv", &st, &err) == 0, "%s", err.msg);
    CHECK_INT(st.objects, 3);
    CHECK_INT(st.canvases, 6);
    CHECK_INT(st.rows, 6);
    CHECK_INT(st.unchanged, 0);

    CHECK_MSG(db_object_load(db, "book1", &o, &err) == 0, "%s", err.msg);
    if (o)
        check_book1(o);
    int64_t book1_modified = o ? o->modified : 0;
    db_object_free(o);

    CHECK_MSG(db_object_load(db, "map7", &o, &err) == 0, "%s", err.msg);
    int64_t map7_modified = 0;
    if (o) {
        CHECK_MAP(&o->label, 1, "none", "Map of Europe");
        CHECK(o->nav_date && !strcmp(o->nav_date, "2020-01-02T03:04:05Z"));
        CHECK(!o->has_required_statement && !o->rights && !o->viewing_direction);
        CHECK_INT(o->nbehavior + o->nmetadata + o->nranges, 0);
        CHECK_INT(o->ncanvases, 1);
        CHECK_EMPTY(&o->canvases[0].label);
        CHECK_EMPTY(&o->summary);
        map7_modified = o->modified;
    }
    db_object_free(o);
    CHECK_MSG(db_object_load(db, "loose", &o, &err) == 0, "%s", err.msg);
    if (o)
        CHECK_MAP(&o->label, 1, "he", "דף בודד");
    db_object_free(o);

    CHECK(db_object_load(db, "nope", &o, &err) < 0 && err.status == 404 && o == NULL);
    int64_t m = 0;
    CHECK(db_object_modified(db, "book1", &m, &err) == 0 && m == book1_modified);
    CHECK(db_object_modified(db, "nope", &m, &err) < 0 && err.status == 404);

    /* Collections: the top level lists root collections and objects in none. */
    CHECK_MSG(db_collection_load(db, "", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_STR(c->name, "");
        CHECK_MAP(&c->label, 1, "en", "All objects");
        CHECK_INT(c->nitems, 3);
        if (c->nitems == 3) {
            CHECK(c->items[0].is_collection && !strcmp(c->items[0].id, "Manuscripts"));
            CHECK_MAP(&c->items[0].label, 1, "none", "Manuscripts");
            CHECK(c->items[1].is_collection && !strcmp(c->items[1].id, "Maps"));
            CHECK(!c->items[2].is_collection && !strcmp(c->items[2].id, "loose"));
            CHECK_MAP(&c->items[2].label, 1, "he", "דף בודד");
            CHECK(c->items[2].thumbnail_image && !strcmp(c->items[2].thumbnail_image, "sub/c.png"));
        }
        CHECK(c->modified >= book1_modified);
    }
    db_collection_free(c);
    CHECK_MSG(db_collection_load(db, "Manuscripts", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_INT(c->nitems, 1);
        if (c->nitems == 1) {
            CHECK(c->items[0].is_collection && !strcmp(c->items[0].id, "Manuscripts > Arabic"));
            CHECK_MAP(&c->items[0].label, 1, "none", "Arabic");
        }
    }
    db_collection_free(c);
    CHECK_MSG(db_collection_load(db, "Manuscripts > Arabic", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_MAP(&c->label, 1, "none", "Arabic");
        CHECK_INT(c->nitems, 1);
        if (c->nitems == 1) {
            CHECK(!c->items[0].is_collection && !strcmp(c->items[0].id, "book1"));
            CHECK_MAP(&c->items[0].label, 3, "none", "Kitab, \"the book\"", "ar", "كتاب", "he",
                      "ספר");
            CHECK(c->items[0].thumbnail_image && !strcmp(c->items[0].thumbnail_image, "a.png"));
        }
        CHECK_INT(c->modified, book1_modified);
    }
    db_collection_free(c);
    CHECK(db_collection_load(db, "Arabic", &c, &err) < 0 && err.status == 404 && c == NULL);

    /* The same file again: nothing changes, not even a stamp. */
    char *before = dump(dbpath);
    CHECK_MSG(import(db, "catalogue.csv", &st, &err) == 0, "%s", err.msg);
    CHECK_INT(st.unchanged, 3);
    char *after = dump(dbpath);
    CHECK_MSG(!strcmp(before, after), "re-importing the same file changed the database");
    free(before);
    free(after);

    /* Changed data: book1 loses canvases, ranges, metadata, its statement and moves to Maps;
     * map7's row is unchanged; "loose" is not in the file and stays. */
    write_file("catalogue.csv", "manifest,label@en,label,collection,image,canvas_label,nav_date\n"
                                "book1,The book (revised),,Maps,b.png,one,\n"
                                "book1,,,,a.png,two,\n"
                                "map7,,Map of Europe,Maps,b.png,,2020-01-02T03:04:05Z\n");
    CHECK_MSG(import(db, "catalogue.csv", &st, &err) == 0, "%s", err.msg);
    CHECK_INT(st.objects, 2);
    CHECK_INT(st.unchanged, 1);
    CHECK_MSG(db_object_load(db, "book1", &o, &err) == 0, "%s", err.msg);
    if (o) {
        CHECK_MAP(&o->label, 1, "en", "The book (revised)");
        CHECK_EMPTY(&o->summary);
        CHECK(!o->has_required_statement && !o->rights && !o->nav_date && !o->viewing_direction);
        CHECK_INT(o->nmetadata + o->nbehavior + o->nranges, 0);
        CHECK_INT(o->ncanvases, 2);
        if (o->ncanvases == 2) {
            CHECK_STR(o->canvases[0].image, "b.png");
            CHECK_MAP(&o->canvases[0].label, 1, "none", "one");
            CHECK_STR(o->canvases[1].image, "a.png");
        }
        /* A change is always a later stamp, even within the same second. */
        CHECK(o->modified > book1_modified);
    }
    int64_t book1_modified2 = o ? o->modified : 0;
    db_object_free(o);
    CHECK(db_object_modified(db, "map7", &m, &err) == 0 && m == map7_modified);
    CHECK(db_object_modified(db, "loose", &m, &err) == 0);
    /* The collections book1 left were emptied, hence removed. */
    CHECK(db_collection_load(db, "Manuscripts > Arabic", &c, &err) < 0 && err.status == 404);
    CHECK(db_collection_load(db, "Manuscripts", &c, &err) < 0 && err.status == 404);
    CHECK_MSG(db_collection_load(db, "Maps", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_INT(c->nitems, 2);
        CHECK(find_item(c, "book1") && find_item(c, "map7"));
        if (c->nitems == 2)
            CHECK_STR(c->items[0].id, "book1"); /* first-import order */
        CHECK_INT(c->modified, book1_modified2);
        const struct db_collection_item *it = find_item(c, "book1");
        CHECK(it && it->thumbnail_image && !strcmp(it->thumbnail_image, "b.png"));
    }
    db_collection_free(c);
    CHECK_MSG(db_collection_load(db, "", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_INT(c->nitems, 2);
        CHECK(find_item(c, "Maps") && find_item(c, "loose") && !find_item(c, "Manuscripts"));
        CHECK_INT(c->modified, book1_modified2);
    }
    db_collection_free(c);
    db_close(db);
}

/* ---------------------------------------------------------------- rejected files */

struct bad_case {
    const char *name;
    const char *content;
    const char *expect[4]; /* substrings of the message */
};

static const struct bad_case bad_cases[] = {
    /* book1 is complete (and written) before line 5 fails: the rollback must undo it. */
    {"missing.csv",
     "manifest,label,image\n"
     "book1,\"Changed\n"
     "label\",a.png\n"
     "book9,x,b.png\n"
     "book9,,nothere.png\n",
     {"missing.csv line 5", "column \"image\"", "\"nothere.png\" not found"}},
    {"unknown.csv",
     "manifest,lable,image\nb,x,a.png\n",
     {"unknown.csv line 1", "column \"lable\"", "unknown column"}},
    {"unterminated.csv",
     "manifest,label,image\nb,x,a.png\nc,\"open,a.png\nd,y,a.png\n",
     {"unterminated.csv line 3", "unterminated quote"}},
    {"toomany.csv",
     "manifest,label,image\nb,x,a.png\nb,x,a.png,extra\n",
     {"toomany.csv line 3", "4 fields", "3 columns"}},
    {"utf8.csv",
     "manifest,label,image\nb,\"ok\nbad \xff\",a.png\n",
     {"utf8.csv line 3", "column \"label\"", "UTF-8"}},
    {"overlong.csv", "manifest,label,image\nb,\xc0\xaf,a.png\n", {"line 2", "UTF-8"}},
    {"navdate.csv",
     "manifest,nav_date,image\nb,2020-13-01,a.png\n",
     {"navdate.csv line 2", "column \"nav_date\"", "2020-13-01"}},
    {"navdate2.csv", "manifest,nav_date,image\nb,2021-02-29,a.png\n", {"nav_date", "2021-02-29"}},
    {"navdate3.csv", "manifest,nav_date,image\nb,2020-01-01 10:00:00,a.png\n", {"nav_date"}},
    {"rights.csv",
     "manifest,rights,image\nb,ftp://example.org/x,a.png\n",
     {"line 2", "column \"rights\"", "http(s)"}},
    {"direction.csv",
     "manifest,viewing_direction,image\nb,sideways,a.png\n",
     {"line 2", "column \"viewing_direction\"", "sideways"}},
    {"behavior.csv",
     "manifest,behavior,image\nb,paged | pagd,a.png\n",
     {"line 2", "column \"behavior\"", "pagd"}},
    {"consecutive.csv",
     "manifest,image\nb1,a.png\nb2,a.png\nb1,b.png\n",
     {"consecutive.csv line 4", "column \"manifest\"", "first at line 2"}},
    {"noid.csv",
     "manifest,image\nb1,a.png\n,a.png\n",
     {"noid.csv line 3", "column \"manifest\"", "missing object id"}},
    {"noimage.csv",
     "manifest,label,image\nb1,x,\n",
     {"line 2", "column \"image\"", "missing image"}},
    {"badimage.csv",
     "manifest,image\nb1,a.png\nb1,bad.png\n",
     {"badimage.csv line 3", "column \"image\"", "cannot read image \"bad.png\""}},
    {"escape.csv", "manifest,image\nb1,../a.png\n", {"line 2", "column \"image\"", "../a.png"}},
    {"langtag.csv",
     "manifest,label@e,image\nb1,x,a.png\n",
     {"line 1", "column \"label@e\"", "language tag"}},
    {"taggedid.csv", "manifest@en,image\nb1,a.png\n", {"line 1", "no language tag"}},
    {"nocolumn.csv", "manifest,label\nb1,x\n", {"line 1", "no \"image\" column"}},
    {"afterquote.csv",
     "manifest,label,image\nb1,\"x\"y,a.png\n",
     {"line 2", "after a closing quote"}},
    {"duplicate.csv",
     "manifest,label@fr,image,label@fr\nb1,x,a.png,y\n",
     {"line 1", "column \"label@fr\"", "duplicate"}},
    {"ranges.csv",
     "manifest,range,range@fr,image\nb1,A > B,A,a.png\n",
     {"line 2", "column \"range@fr\"", "levels"}},
    {"emptyrange.csv",
     "manifest,range,image\nb1,A >  > B,a.png\n",
     {"line 2", "empty range label"}},
    {"collection.csv",
     "manifest,collection,image\nb1,Maps >  Europe,a.png\n",
     {"line 2", "column \"collection\""}},
    {"empty.csv", "", {"empty.csv line 1", "header"}},
    {"format.txt", "manifest,image\n", {"format.txt", "unknown format"}},
    /* JSON Lines */
    {"badjson.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}]}\n{\"manifest\": \n",
     {"badjson.jsonl line 2", "invalid JSON"}},
    {"type.jsonl",
     "\n{\"manifest\": \"j\", \"label\": 5, \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"type.jsonl line 2", "field \"label\"", "found a number"}},
    {"langtype.jsonl",
     "{\"manifest\": \"j\", \"label\": {\"en\": [1]}, \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "field \"label.en\"", "expected a string"}},
    {"canvasimage.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}, {\"label\": \"x\"}]}\n",
     {"line 1", "field \"canvases[1].image\"", "missing image"}},
    {"canvasmissing.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"zz.png\"}]}\n",
     {"line 1", "field \"canvases[0].image\"", "\"zz.png\" not found"}},
    {"rangeidx.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}],"
     " \"ranges\": [{\"label\": \"A\", \"ranges\": [{\"label\": \"B\", \"canvases\": [0, 1]}]}]}\n",
     {"line 1", "field \"ranges[0].ranges[0].canvases\"", "1 canvases"}},
    {"unknownfield.jsonl",
     "{\"manifest\": \"j\", \"lable\": \"x\", \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "field \"lable\"", "unknown field"}},
    {"jnavdate.jsonl",
     "{\"manifest\": \"j\", \"navDate\": \"yesterday\", \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "field \"navDate\"", "yesterday"}},
    {"twice.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}]}\n"
     "{\"manifest\": \"k\", \"canvases\": [{\"image\": \"a.png\"}]}\n"
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"twice.jsonl line 3", "field \"manifest\"", "first at line 1"}},
    {"jutf8.jsonl",
     "{\"manifest\": \"j\", \"label\": \"\xed\xa0\x80\", \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "UTF-8"}},
    {"notobject.jsonl", "[1, 2]\n", {"line 1", "expected a JSON object"}},
    {"trailing.jsonl",
     "{\"manifest\": \"j\", \"canvases\": [{\"image\": \"a.png\"}]} {}\n",
     {"line 1", "text after the JSON value"}},
    {"nocanvas.jsonl", "{\"manifest\": \"j\"}\n", {"line 1", "field \"canvases\""}},
    {"jrights.jsonl",
     "{\"manifest\": \"j\", \"rights\": [\"http://x\"], \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "field \"rights\"", "expected a string"}},
    {"extra.jsonl",
     "{\"manifest\": \"j\", \"homepage\": \"https://x\", \"canvases\": [{\"image\": \"a.png\"}]}\n",
     {"line 1", "field \"homepage\""}},
    {"dupkey.jsonl",
     "{\"manifest\": \"j\", \"label\": \"a\", \"label\": \"b\", \"canvases\": [{\"image\": "
     "\"a.png\"}]}\n",
     {"line 1", "field \"label\"", "twice"}},
};

static void test_rejected(const char *dbpath)
{
    struct verr err;
    struct db_import_stats st;
    struct db *db = db_open(dbpath, true, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (!db)
        return;
    char *before = dump(dbpath);
    CHECK(strstr(before, "book1|") != NULL); /* there is something to protect */
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *b = &bad_cases[i];
        write_file(b->name, b->content);
        int rc = import(db, b->name, &st, &err);
        CHECK_MSG(rc < 0, "%s: imported", b->name);
        for (size_t k = 0; k < 4 && b->expect[k]; k++)
            CHECK_MSG(contains(err.msg, b->expect[k]), "%s: message \"%s\" lacks \"%s\"", b->name,
                      err.msg, b->expect[k]);
        char *after = dump(dbpath);
        CHECK_MSG(!strcmp(before, after), "%s: the database changed", b->name);
        free(after);
    }
    /* NUL bytes would silently cut a value short: refused. */
    static const char nul_csv[] = "manifest,image\nb1,a.png\nb2,a\0.png\n";
    static const char nul_jsonl[] =
        "{\"manifest\": \"j\", \"label\": \"a\0b\", \"canvases\": []}\n";
    write_bytes("nul.csv", nul_csv, sizeof nul_csv - 1);
    CHECK(import(db, "nul.csv", &st, &err) < 0 && contains(err.msg, "nul.csv line 3") &&
          contains(err.msg, "NUL"));
    write_bytes("nul.jsonl", nul_jsonl, sizeof nul_jsonl - 1);
    CHECK(import(db, "nul.jsonl", &st, &err) < 0 && contains(err.msg, "nul.jsonl line 1") &&
          contains(err.msg, "NUL"));
    char *after_nul = dump(dbpath);
    CHECK(!strcmp(before, after_nul));
    free(after_nul);

    /* The handle is still usable after all those rollbacks. */
    struct db_object *o = NULL;
    CHECK_MSG(db_object_load(db, "book1", &o, &err) == 0, "%s", err.msg);
    if (o)
        CHECK_MAP(&o->label, 1, "en", "The book (revised)");
    db_object_free(o);
    free(before);
    db_close(db);
}

/* ---------------------------------------------------------------- JSON Lines */

static const char catalogue_jsonl[] =
    "{\"manifest\": \"j1\", \"label\": {\"en\": [\"Psalter\"], \"he\": \"תהילים\"},"
    " \"summary\": \"A plain summary\","
    " \"metadata\": [{\"label\": {\"en\": [\"Date\"]}, \"value\": \"c. 1300\"},"
    "               {\"label\": \"Script\", \"value\": {\"ar\": [\"نسخ\", \"ثلث\"]}}],"
    " \"requiredStatement\": {\"label\": {\"en\": [\"Held by\"]}, \"value\": {\"none\": "
    "[\"Library\"]}},"
    " \"rights\": \"http://rightsstatements.org/vocab/NoC-NC/1.0/\","
    " \"navDate\": \"1300-01-01\", \"viewingDirection\": \"left-to-right\","
    " \"behavior\": [\"paged\", \"auto-advance\"],"
    " \"provider\": [{\"id\": \"https://example.org\", \"type\": \"Agent\"}],"
    " \"homepage\": [{\"id\": \"https://example.org/j1\", \"type\": \"Text\"}],"
    " \"canvases\": [{\"label\": \"1r\", \"image\": \"a.png\"},"
    "                {\"label\": {\"ar\": [\"٢\"]}, \"image\": \"b.png\"},"
    "                {\"image\": \"sub/c.png\"}],"
    " \"ranges\": [{\"label\": \"Front\", \"canvases\": [0],"
    "              \"ranges\": [{\"label\": {\"en\": [\"Inner\"]}, \"canvases\": [1, 2]}]},"
    "             {\"label\": \"Back\", \"canvases\": [2]}],"
    " \"collection\": [\"Psalters\", \"Hebrew > Liturgy\"]}\r\n"
    "\n"
    "   \n"
    "{\"manifest\": \"j2\", \"label\": \"Second\", \"canvases\": [{\"image\": \"a.png\"}],"
    " \"collection\": \"Psalters\"}\n";

static void test_jsonl(const char *dbpath)
{
    struct verr err;
    struct db_import_stats st;
    struct db_object *o = NULL;
    struct db_collection *c = NULL;
    struct db *db = db_open(dbpath, true, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (!db)
        return;
    write_file("catalogue.jsonl", catalogue_jsonl);
    CHECK_MSG(import(db, "catalogue.jsonl", &st, &err) == 0, "%s", err.msg);
    CHECK_INT(st.objects, 2);
    CHECK_INT(st.canvases, 4);
    CHECK_MSG(db_object_load(db, "j1", &o, &err) == 0, "%s", err.msg);
    if (o) {
        CHECK_MAP(&o->label, 2, "en", "Psalter", "he", "תהילים");
        CHECK_MAP(&o->summary, 1, "none", "A plain summary");
        CHECK_INT(o->nmetadata, 2);
        if (o->nmetadata == 2) {
            CHECK_MAP(&o->metadata[0].label, 1, "en", "Date");
            CHECK_MAP(&o->metadata[0].value, 1, "none", "c. 1300");
            CHECK_MAP(&o->metadata[1].label, 1, "none", "Script");
            CHECK_MAP(&o->metadata[1].value, 2, "ar", "نسخ", "ar", "ثلث");
        }
        CHECK(o->has_required_statement);
        CHECK_MAP(&o->required_statement.label, 1, "en", "Held by");
        CHECK_MAP(&o->required_statement.value, 1, "none", "Library");
        CHECK(o->rights && !strcmp(o->rights, "http://rightsstatements.org/vocab/NoC-NC/1.0/"));
        CHECK(o->nav_date && !strcmp(o->nav_date, "1300-01-01T00:00:00Z"));
        CHECK(o->viewing_direction && !strcmp(o->viewing_direction, "left-to-right"));
        CHECK(o->nbehavior == 2 && !strcmp(o->behavior[1], "auto-advance"));
        cJSON *extra = o->extra_json ? cJSON_Parse(o->extra_json) : NULL;
        CHECK(extra != NULL);
        if (extra) {
            cJSON *p = cJSON_GetObjectItemCaseSensitive(extra, "provider");
            cJSON *h = cJSON_GetObjectItemCaseSensitive(extra, "homepage");
            CHECK(cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1);
            CHECK(cJSON_IsArray(h) && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                                                  cJSON_GetArrayItem(h, 0), "id")),
                                              "https://example.org/j1"));
            CHECK_INT(cJSON_GetArraySize(extra), 2);
        }
        cJSON_Delete(extra);
        CHECK_INT(o->ncanvases, 3);
        if (o->ncanvases == 3) {
            CHECK_MAP(&o->canvases[0].label, 1, "none", "1r");
            CHECK_MAP(&o->canvases[1].label, 1, "ar", "٢");
            CHECK_EMPTY(&o->canvases[2].label);
            CHECK(o->canvases[2].width == 7 && o->canvases[2].height == 9);
        }
        CHECK_INT(o->nranges, 2);
        if (o->nranges == 2) {
            CHECK_MAP(&o->ranges[0].label, 1, "none", "Front");
            CHECK_POSITIONS(&o->ranges[0], 1, (size_t)0);
            CHECK_INT(o->ranges[0].nranges, 1);
            if (o->ranges[0].nranges == 1) {
                CHECK_MAP(&o->ranges[0].ranges[0].label, 1, "en", "Inner");
                CHECK_POSITIONS(&o->ranges[0].ranges[0], 2, (size_t)1, (size_t)2);
            }
            CHECK_MAP(&o->ranges[1].label, 1, "none", "Back");
            CHECK_POSITIONS(&o->ranges[1], 1, (size_t)2);
        }
    }
    db_object_free(o);
    CHECK_MSG(db_collection_load(db, "Psalters", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK_INT(c->nitems, 2);
        if (c->nitems == 2)
            CHECK(!strcmp(c->items[0].id, "j1") && !strcmp(c->items[1].id, "j2"));
    }
    db_collection_free(c);
    CHECK_MSG(db_collection_load(db, "Hebrew > Liturgy", &c, &err) == 0, "%s", err.msg);
    if (c)
        CHECK(c->nitems == 1 && !strcmp(c->items[0].id, "j1"));
    db_collection_free(c);
    CHECK_MSG(db_collection_load(db, "", &c, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK(find_item(c, "Psalters") && find_item(c, "Hebrew") && !find_item(c, "j1") &&
              !find_item(c, "Hebrew > Liturgy"));
    }
    db_collection_free(c);

    /* Re-import j1 with fewer canvases and no ranges: replaced entirely. */
    write_file(
        "again.ndjson",
        "{\"manifest\": \"j1\", \"label\": \"Psalter\", \"canvases\": [{\"image\": \"b.png\"}]}\n");
    CHECK_MSG(import(db, "again.ndjson", &st, &err) == 0, "%s", err.msg);
    CHECK_MSG(db_object_load(db, "j1", &o, &err) == 0, "%s", err.msg);
    if (o) {
        CHECK_MAP(&o->label, 1, "none", "Psalter");
        CHECK(o->ncanvases == 1 && o->nranges == 0 && o->nmetadata == 0 && !o->extra_json &&
              !o->has_required_statement && o->nbehavior == 0);
    }
    db_object_free(o);
    CHECK(db_collection_load(db, "Hebrew > Liturgy", &c, &err) < 0 && err.status == 404);
    CHECK_MSG(db_collection_load(db, "Psalters", &c, &err) == 0, "%s", err.msg);
    if (c)
        CHECK(c->nitems == 1 && !strcmp(c->items[0].id, "j2"));
    db_collection_free(c);
    db_close(db);
}

/* ---------------------------------------------------------------- read-only, schema */

static void test_read_only(const char *dbpath)
{
    struct verr err;
    struct db_import_stats st;
    char *before = dump(dbpath);
    struct db *db = db_open(dbpath, false, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (db) {
        struct db_object *o = NULL;
        CHECK_MSG(db_object_load(db, "map7", &o, &err) == 0, "%s", err.msg);
        db_object_free(o);
        /* Neither the importer nor raw SQL can write through a read-only handle. */
        write_file("ro.csv", "manifest,image\nro,a.png\n");
        CHECK(import(db, "ro.csv", &st, &err) < 0 && contains(err.msg, "read-only"));
        int rc = sqlite3_exec(db->sq, "DELETE FROM objects", NULL, NULL, NULL);
        CHECK_MSG((rc & 0xff) == SQLITE_READONLY, "DELETE through a read-only handle: %d", rc);
        db_close(db);
    }
    char *after = dump(dbpath);
    CHECK_MSG(!strcmp(before, after), "a read-only open changed the database");
    free(before);
    free(after);

    /* A missing file is not created by a read-only open. */
    char path[1200];
    tmp_path(path, sizeof path, "absent.db");
    CHECK(db_open(path, false, &err) == NULL);
    CHECK(access(path, F_OK) != 0);
    /* An empty file is not a catalogue yet. */
    write_file("empty.db", "");
    CHECK(db_open(tmp_path(path, sizeof path, "empty.db"), false, &err) == NULL &&
          contains(err.msg, "vellum import"));
    /* Not a database at all. */
    write_file("text.db", "this is not SQLite, just some text that is long enough......\n");
    CHECK(db_open(tmp_path(path, sizeof path, "text.db"), true, &err) == NULL);
    CHECK(db_open(path, false, &err) == NULL);
}

static void set_user_version(const char *dbpath, int v)
{
    sqlite3 *sq = NULL;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    CHECK(sqlite3_open(dbpath, &sq) == SQLITE_OK);
    CHECK(sqlite3_exec(sq, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(sq);
}

static void test_schema_version(const char *dbpath)
{
    struct verr err;
    set_user_version(dbpath, DB_SCHEMA_VERSION + 1);
    CHECK(db_open(dbpath, true, &err) == NULL && contains(err.msg, "newer"));
    CHECK(db_open(dbpath, false, &err) == NULL && contains(err.msg, "upgrade vellum"));
    set_user_version(dbpath, DB_SCHEMA_VERSION);
    struct db *db = db_open(dbpath, false, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    db_close(db);
    /* A fresh database gets the schema and the journal mode. */
    char path[1200];
    db = db_open(tmp_path(path, sizeof path, "fresh.db"), true, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (db) {
        sqlite3_stmt *s = NULL;
        CHECK(sqlite3_prepare_v2(db->sq, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK &&
              sqlite3_step(s) == SQLITE_ROW &&
              !strcmp((const char *)sqlite3_column_text(s, 0), "wal"));
        sqlite3_finalize(s);
        CHECK(sqlite3_prepare_v2(db->sq, "PRAGMA foreign_keys", -1, &s, NULL) == SQLITE_OK &&
              sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 1);
        sqlite3_finalize(s);
        struct db_collection *c = NULL;
        CHECK(db_collection_load(db, "", &c, &err) == 0 && c && c->nitems == 0);
        db_collection_free(c);
        db_close(db);
    }
}

/* ---------------------------------------------------------------- validators */

static void test_validators(void)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } dates[] = {
        {"2020-01-02", "2020-01-02T00:00:00Z"},
        {"2020-01-02T03:04:05Z", "2020-01-02T03:04:05Z"},
        {"2000-02-29", "2000-02-29T00:00:00Z"},
        {"1900-02-29", NULL},
        {"2020-04-31", NULL},
        {"2020-1-02", NULL},
        {"2020-01-02T24:00:00Z", NULL},
        {"2020-01-02T03:04:05", NULL},
        {"2020-01-02T03:04:05+01:00", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
        char out[21];
        bool ok = db_nav_date_normalize(dates[i].in, out);
        CHECK_MSG(ok == (dates[i].out != NULL), "nav_date \"%s\"", dates[i].in);
        if (ok && dates[i].out)
            CHECK_STR(out, dates[i].out);
    }
    static const struct {
        const char *tag;
        bool ok;
    } tags[] = {{"en", true},      {"none", true},        {"zh-Hant-TW", true},
                {"ar-Latn", true}, {"e", false},          {"en-", false},
                {"en_GB", false},  {"toolongtag", false}, {"fr-123456789", false},
                {"", false}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        CHECK_MSG(db_lang_tag_ok(tags[i].tag, strlen(tags[i].tag)) == tags[i].ok, "tag \"%s\"",
                  tags[i].tag);
    static const struct {
        const char *s;
        size_t bad; /* SIZE_MAX: valid */
    } utf8[] = {{"plain", SIZE_MAX}, {"ك ש €𝄞", SIZE_MAX},    {"a\xff", 1},     {"\xc0\xaf", 0},
                {"\xed\xa0\x80", 0}, {"\xf4\x90\x80\x80", 0}, {"ab\xe2\x82", 2}};
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        size_t n = strlen(utf8[i].s);
        size_t at = db_utf8_invalid_at(utf8[i].s, n);
        CHECK_MSG(at == (utf8[i].bad == SIZE_MAX ? n : utf8[i].bad), "utf8 case %zu: %zu", i, at);
    }
    CHECK(db_rights_ok("https://creativecommons.org/licenses/by/4.0/"));
    CHECK(!db_rights_ok("https://"));
    CHECK(!db_rights_ok("https://x y"));
    CHECK(!db_rights_ok("creativecommons.org"));
    CHECK(db_collection_path_ok("Maps > Europe"));
    CHECK(!db_collection_path_ok("Maps >  Europe"));
    CHECK(!db_collection_path_ok("Maps > "));
    CHECK(!db_collection_path_ok(""));
}

/* ---------------------------------------------------------------- speed (reported) */

static void test_large_object(const char *dbpath)
{
    struct verr err;
    struct db_import_stats st;
    struct strbuf csv = {0};
    strbuf_puts(&csv, "manifest,label,canvas_label,image,range\n");
    for (int i = 0; i < 1000; i++) {
        char row[128];
        snprintf(row, sizeof row, "big,Big book,p. %d,%s,Part %d > Section %d\n", i + 1,
                 i % 3 == 0   ? "a.png"
                 : i % 3 == 1 ? "b.png"
                              : "sub/c.png",
                 i / 100, i / 10);
        strbuf_puts(&csv, row);
    }
    CHECK(strbuf_ok(&csv));
    write_file("big.csv", csv.p ? csv.p : "");
    strbuf_free(&csv);
    struct db *db = db_open(dbpath, true, &err);
    CHECK_MSG(db != NULL, "%s", err.msg);
    if (!db)
        return;
    CHECK_MSG(import(db, "big.csv", &st, &err) == 0, "%s", err.msg);
    db_close(db);
    db = db_open(dbpath, false, &err);
    if (!db)
        return;
    struct timespec t0, t1;
    struct db_object *o = NULL;
    int runs = 50;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < runs; i++) {
        CHECK(db_object_load(db, "big", &o, &err) == 0);
        if (i < runs - 1) {
            db_object_free(o);
            o = NULL;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (o) {
        CHECK_INT(o->ncanvases, 1000);
        CHECK_INT(o->nranges, 10);
        if (o->nranges == 10) {
            CHECK_INT(o->ranges[9].nranges, 10);
            CHECK_POSITIONS(&o->ranges[9].ranges[9], 10, (size_t)990, (size_t)991, (size_t)992,
                            (size_t)993, (size_t)994, (size_t)995, (size_t)996, (size_t)997,
                            (size_t)998, (size_t)999);
        }
        CHECK_MAP(&o->canvases[999].label, 1, "none", "p. 1000");
    }
    db_object_free(o);
    double ms =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / runs;
    printf("db_object_load of a 1,000-canvas object: %.2f ms (mean of %d)\n", ms, runs);
    db_close(db);
}

/* ---------------------------------------------------------------- main */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    const char *base = getenv("VELLUM_TEST_TMP");
    if (base && *base) {
        if (mkdir(base, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "cannot create %s\n", base);
            return 1;
        }
        snprintf(tmpdir, sizeof tmpdir, "%s/db-%ld", base, (long)getpid());
    } else {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/vellum-test-db-%ld", (long)getpid());
    }
    snprintf(image_root, sizeof image_root, "%s/images", tmpdir);
    char path[1200], dbpath[1200];
    if (mkdir(tmpdir, 0700) != 0 || mkdir(image_root, 0700) != 0 ||
        mkdir(tmp_path(path, sizeof path, "images/sub"), 0700) != 0) {
        fprintf(stderr, "cannot create %s\n", tmpdir);
        return 1;
    }
    CHECK(write_png(tmp_path(path, sizeof path, "images/a.png"), 30, 20));
    CHECK(write_png(tmp_path(path, sizeof path, "images/b.png"), 40, 50));
    CHECK(write_png(tmp_path(path, sizeof path, "images/sub/c.png"), 7, 9));
    write_file("images/bad.png", "\x89PNG\r\n\x1a\nnot really a png at all");
    tmp_path(dbpath, sizeof dbpath, "catalogue.db");

    test_validators();
    test_csv(dbpath);
    test_rejected(dbpath);
    test_jsonl(dbpath);
    test_read_only(dbpath);
    test_schema_version(dbpath);
    test_large_object(dbpath);

    int rc = CHECK_DONE();
    if (rc == 0)
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
