/* fuzz_tile_store: a request path (from the URL: outside input) that the tile store may turn into
 * a file. Whenever tile_store_path_ok() accepts it, the path must be what the store promises
 * (tile_store.h: '/'-led, non-empty segments of the plain character set, none starting with a
 * dot, none 200 bytes long, at most 16) and tile_store_put() must create exactly <store><path>,
 * a regular file holding the body, inside the store and outside its .vellum folder, and nothing
 * anywhere else (the tree outside the store is checked to stay empty). The identifier folder
 * check (tile_store_check) runs on the path's parent, as handle_image.c does. The store is
 * emptied every 512 inputs. */
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tile_store.h"

static char base[PATH_MAX];    /* the temporary tree */
static char dir[PATH_MAX];     /* base/store */
static char outside[PATH_MAX]; /* base/outside: must stay empty */
static struct tile_store *store;
static unsigned long runs;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void die(const char *what)
{
    perror(what);
    abort();
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/fuzz-tile-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        die("mkdtemp");
    snprintf(dir, sizeof dir, "%s/store", base);
    snprintf(outside, sizeof outside, "%s/outside", base);
    if (mkdir(outside, 0700) < 0)
        die(outside);
    struct verr err;
    store = tile_store_open(dir, 1 << 20, &err);
    if (!store) {
        fprintf(stderr, "tile_store_open: %s\n", err.msg);
        abort();
    }
}

static bool seg_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-_.~!,:^+=@", c));
}

/* What tile_store.h promises of an accepted path, checked independently. */
static void check_shape(const char *p)
{
    if (p[0] != '/')
        abort();
    int segments = 0;
    for (const char *s = p + 1;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || n >= 200 || s[0] == '.' || ++segments > 16)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!seg_char((unsigned char)s[i]))
                abort();
        if (!e)
            break;
        s = e + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        setup();
    if (size > 4000)
        return 0;
    char path[4001];
    memcpy(path, data, size);
    path[size] = '\0';
    if (strlen(path) != size)
        return 0; /* a NUL inside: not a C string a request could hold */
    if (!tile_store_path_ok(path))
        return 0;
    check_shape(path);

    char parent[4001];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    static const uint64_t stamp[4] = {1, 2, 3, 4};
    if (slash && slash != parent) {
        *slash = '\0';
        (void)tile_store_check(store, parent, stamp, sizeof stamp);
    }
    static const unsigned char body[] = "fuzz body";
    if (tile_store_put(store, path, body, sizeof body) == 0) {
        char full[PATH_MAX * 2], real[PATH_MAX], real_dir[PATH_MAX];
        snprintf(full, sizeof full, "%s%s", dir, path);
        struct stat st;
        if (lstat(full, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != (off_t)sizeof body)
            abort();
        if (!realpath(full, real) || !realpath(dir, real_dir))
            abort();
        size_t n = strlen(real_dir);
        if (strncmp(real, real_dir, n) != 0 || real[n] != '/' ||
            strncmp(real + n, "/.vellum/", 9) == 0)
            abort();
    }
    DIR *d = opendir(outside);
    if (!d)
        abort();
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            abort(); /* something was written outside the store */
    closedir(d);

    if (++runs % 512 == 0) {
        tile_store_close(store);
        store = NULL;
        if (nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
            die("nftw");
    }
    return 0;
}
