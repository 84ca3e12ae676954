/* fuzz_resolve: identifier -> file under the image root (codec_resolve), the one place that
 * keeps a request inside image_root. At start-up a temporary tree is built:
 *   outside/secret.png                 a file that must never be reached
 *   root/a.png, root/sub/b.png         files that may be
 *   root/out -> ../outside             symlinks pointing out of the root
 *   root/secret.png -> ../outside/secret.png, root/abs -> <outside, absolute>
 *   root/in -> sub, root/loop -> loop  a symlink inside, and a loop
 *   root-twin/c.png                    a sibling whose name starts with the root's name
 * Every identifier that resolves must name a regular file inside the root; anything else
 * abort()s. The result is also written into a buffer of exactly its size, and one byte short. */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source_cache.h"

static char base[PATH_MAX];      /* the temporary tree */
static char root[PATH_MAX];      /* base/root, as given to codec_resolve */
static char root_real[PATH_MAX]; /* its resolved path */

static void die(const char *what)
{
    perror(what);
    abort();
}

static void make_file(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    if (!f || fputs("not really a png\n", f) < 0 || fclose(f) != 0)
        die(p);
}

static void make_dir(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    if (mkdir(p, 0755) < 0)
        die(p);
}

static void make_link(const char *target, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    if (symlink(target, p) < 0)
        die(p);
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

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *tmp = getenv("TMPDIR");
    char abs_target[PATH_MAX];

    snprintf(base, sizeof base, "%s/vellum-fuzz-resolve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        die("mkdtemp");
    atexit(cleanup);
    make_dir("outside");
    make_file("outside/secret.png");
    make_dir("root");
    make_dir("root/sub");
    make_file("root/a.png");
    make_file("root/sub/b.png");
    make_link("../outside", "root/out");
    make_link("../outside/secret.png", "root/secret.png");
    snprintf(abs_target, sizeof abs_target, "%s/outside/secret.png", base);
    make_link(abs_target, "root/abs");
    make_link("sub", "root/in");
    make_link("loop", "root/loop");
    make_link("..", "root/up");
    make_dir("root-twin");
    make_file("root-twin/c.png");
    make_link("../root-twin/c.png", "root/twin.png");
    snprintf(root, sizeof root, "%s/root", base);
    if (!realpath(root, root_real))
        die("realpath");
    return 0;
}

static void check_inside(const char *id, const char *out)
{
    char real[PATH_MAX];
    size_t rl = strlen(root_real);
    struct stat st;

    if (!realpath(out, real) || strncmp(real, root_real, rl) != 0 || real[rl] != '/' ||
        strstr(real, "/outside/") || stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "fuzz_resolve: \"%s\" resolved to \"%s\", not a file inside %s\n", id, out,
                root_real);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *id = malloc(size + 1);
    char out[PATH_MAX + 16];
    struct verr err = {0, ""};

    if (!id)
        return 0;
    memcpy(id, data, size);
    id[size] = '\0';
    if (codec_resolve(root, id, out, sizeof out, &err) < 0) {
        if (err.status != 400 && err.status != 403 && err.status != 404 && err.status != 500) {
            fprintf(stderr, "fuzz_resolve: error status %d: %s\n", err.status, err.msg);
            abort();
        }
        free(id);
        return 0;
    }
    check_inside(id, out);

    /* The same identifier with an output buffer of exactly the right size, then one byte
     * short (which must fail, not overflow: ASan watches the heap buffer's end). */
    size_t need = strlen(out) + 1;
    char *exact = malloc(need);
    if (exact) {
        if (codec_resolve(root, id, exact, need, &err) < 0 || strcmp(exact, out) != 0) {
            fprintf(stderr, "fuzz_resolve: \"%s\" does not fit %zu bytes\n", id, need);
            abort();
        }
        if (codec_resolve(root, id, exact, need - 1, &err) == 0) {
            fprintf(stderr, "fuzz_resolve: \"%s\" fits in %zu bytes\n", id, need - 1);
            abort();
        }
        free(exact);
    }

    /* A root given with a trailing slash names the same folder. */
    char root_slash[PATH_MAX + 1];
    snprintf(root_slash, sizeof root_slash, "%s/", root);
    if (codec_resolve(root_slash, id, out, sizeof out, &err) == 0)
        check_inside(id, out);
    free(id);
    return 0;
}
