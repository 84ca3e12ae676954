/* fuzz_import: the catalogue importers (db_import_file), built twice (tests/fuzz/CMakeLists.txt):
 * fuzz_import_csv writes the input to in.csv, fuzz_import_jsonl to in.jsonl (the importer picks
 * the format by extension). At start-up a temporary image root gets a few small images, made
 * with our own encoders, and an empty catalogue is created once and kept as bytes; every input
 * starts from a fresh copy of it, so runs do not depend on each other.
 * After a successful import every object and collection is loaded back, and a second import of
 * the same file must find every object unchanged. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "db.h"

#if defined(FUZZ_IMPORT_CSV)
#define FUZZ_NAME "fuzz_import_csv"
#define INPUT_NAME "in.csv"
#elif defined(FUZZ_IMPORT_JSONL)
#define FUZZ_NAME "fuzz_import_jsonl"
#define INPUT_NAME "in.jsonl"
#else
#error "define FUZZ_IMPORT_CSV or FUZZ_IMPORT_JSONL"
#endif

static char base[PATH_MAX], images[PATH_MAX], input[PATH_MAX], dbpath[PATH_MAX];
static unsigned char *template_db;
static size_t template_len;
static int verbose; /* VELLUM_FUZZ_VERBOSE=1: say why each input was refused (to write seeds) */

static void die(const char *what, const char *detail)
{
    fprintf(stderr, FUZZ_NAME ": %s: %s\n", what, detail);
    abort();
}

static void write_bytes(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        die(path, strerror(errno));
}

static void make_image(const char *rel, uint32_t w, uint32_t h, int is_jpeg)
{
    struct codec_image *img = codec_image_new(w, h, 3);
    unsigned char *bytes = NULL;
    size_t len = 0;
    struct verr err = {0, ""};
    char path[PATH_MAX];

    if (!img)
        die("codec_image_new", rel);
    memset(img->px, 0x80, (size_t)w * h * 3);
    if ((is_jpeg ? codec_encode_jpeg(img, 90, NULL, 0, &bytes, &len, &err)
                 : codec_encode_png(img, NULL, 0, &bytes, &len, &err)) < 0)
        die("encoding a test image", err.msg);
    snprintf(path, sizeof path, "%s/%s", images, rel);
    write_bytes(path, bytes, len);
    free(bytes);
    codec_image_free(img);
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

static void cleanup(void)
{
    if (base[0])
        nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_db(void)
{
    char p[PATH_MAX + 8];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *tmp = getenv("TMPDIR");
    struct verr err = {0, ""};
    char sub[PATH_MAX + 8];

    snprintf(base, sizeof base, "%s/vellum-" FUZZ_NAME "-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        die("mkdtemp", strerror(errno));
    atexit(cleanup);
    verbose = getenv("VELLUM_FUZZ_VERBOSE") != NULL;
    snprintf(images, sizeof images, "%s/images", base);
    snprintf(sub, sizeof sub, "%s/sub", images);
    if (mkdir(images, 0755) < 0 || mkdir(sub, 0755) < 0)
        die("mkdir", strerror(errno));
    make_image("a.png", 3, 2, 0);
    make_image("b.jpg", 16, 9, 1);
    make_image("sub/c.png", 1, 5, 0);
    snprintf(input, sizeof input, "%s/" INPUT_NAME, base);
    snprintf(dbpath, sizeof dbpath, "%s/catalogue.db", base);

    /* The empty catalogue, created (and migrated) once. */
    struct db *db = db_open(dbpath, true, &err);
    if (!db)
        die("db_open", err.msg);
    db_close(db);
    FILE *f = fopen(dbpath, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0 || !(template_db = malloc((size_t)st.st_size + 1)) ||
        fread(template_db, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        die("reading the empty catalogue", strerror(errno));
    template_len = (size_t)st.st_size;
    fclose(f);
    return 0;
}

/* Load a collection and everything under it, as the Presentation API routes would. */
static void load_collection(struct db *db, const char *name, int depth)
{
    struct db_collection *c = NULL;
    struct verr err = {0, ""};

    if (db_collection_load(db, name, &c, &err) < 0) {
        fprintf(stderr, "collection \"%s\": %s\n", name, err.msg);
        die("a collection listed after import does not load", name);
    }
    for (size_t i = 0; i < c->nitems && i < 64; i++) {
        const struct db_collection_item *it = &c->items[i];
        if (!it->id)
            die("collection item without an id", name);
        if (it->is_collection) {
            if (depth < 8)
                load_collection(db, it->id, depth + 1);
            continue;
        }
        struct db_object *o = NULL;
        int64_t modified = 0;
        if (db_object_load(db, it->id, &o, &err) < 0 ||
            db_object_modified(db, it->id, &modified, &err) < 0) {
            fprintf(stderr, "object \"%s\": %s\n", it->id, err.msg);
            die("an object listed after import does not load", it->id);
        }
        if (!o->id || strcmp(o->id, it->id) != 0 || o->modified != modified || o->ncanvases == 0)
            die("a loaded object is unlike its listing", it->id);
        for (size_t k = 0; k < o->ncanvases; k++) {
            if (!o->canvases[k].image || o->canvases[k].width == 0 || o->canvases[k].height == 0)
                die("a canvas without an image or size", it->id);
        }
        db_object_free(o);
    }
    db_collection_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct db_import_stats stats, again;
    struct verr err = {0, ""};

    write_bytes(input, data, size);
    remove_db();
    write_bytes(dbpath, template_db, template_len);
    struct db *db = db_open(dbpath, true, &err);
    if (!db)
        die("db_open", err.msg);

    if (db_import_file(db, input, images, NULL, NULL, &stats, &err) < 0) {
        if (verbose)
            fprintf(stderr, FUZZ_NAME ": %d %s\n", err.status, err.msg);
        if (err.status != 400 && err.status != 413) {
            fprintf(stderr, "status %d\n", err.status);
            die("import error other than 400", err.msg);
        }
    } else {
        if (verbose)
            fprintf(stderr, FUZZ_NAME ": imported %zu objects, %zu canvases\n", stats.objects,
                    stats.canvases);
        load_collection(db, "", 0);
        if (db_import_file(db, input, images, NULL, NULL, &again, &err) < 0)
            die("a file that imported once does not import again", err.msg);
        if (again.objects != stats.objects || again.unchanged != again.objects)
            die("re-importing the same file changed objects", input);
    }
    db_close(db);
    return 0;
}
