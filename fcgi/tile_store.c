/* tile_store.c: see tile_store.h.
 *
 * Everything goes through directory descriptors (openat & co, O_NOFOLLOW on every component
 * Vellum opens), so a link planted in the store is never followed. The size counter is a
 * uint64_t in a MAP_SHARED page of .vellum/bytes, updated with atomics by every worker; it may
 * drift (a file replaced by a worker storing the same tile, a crash between write and count),
 * and every trim sets it to what the trimming scan found. */
#include "tile_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "http.h"

/* Every stored file's mode; a trim that spares a file sets it again, which only moves ctime. */
#define STORED_FILE_MODE 0644

#define MAX_SEGMENTS 16
#define MAX_SEGMENT 200
#define WALK_DEPTH (MAX_SEGMENTS + 2)
#define SHARED_LEN 4096

struct shared {
    uint64_t bytes;
};

struct tile_store {
    int dirfd;   /* the store: the web server's root for /iiif/ */
    int statefd; /* its .vellum folder */
    uint64_t max_bytes;
    struct shared *shared;
    uint64_t seq; /* for temporary and trash names */
    struct tile_store_stats stats;
};

static bool segment_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-_.~!,:^+=@", c) != NULL);
}

bool tile_store_path_ok(const char *path)
{
    if (!path || path[0] != '/')
        return false;
    int segments = 0;
    for (const char *p = path + 1;;) {
        const char *e = p;
        while (*e && *e != '/') {
            if (!segment_char_ok((unsigned char)*e))
                return false;
            e++;
        }
        size_t n = (size_t)(e - p);
        if (n == 0 || n >= MAX_SEGMENT || *p == '.' || ++segments > MAX_SEGMENTS)
            return false;
        if (*e == '\0')
            return true;
        p = e + 1;
    }
}

/* A folder under dfd, created (mode 0755 whatever the umask: the web server's user reads it)
 * when missing, opened without following a link. */
static int open_subdir(int dfd, const char *name, mode_t mode)
{
    if (mkdirat(dfd, name, mode) == 0) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && fchmod(fd, mode) < 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    if (errno != EEXIST)
        return -1;
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

struct tile_store *tile_store_open(const char *dir, uint64_t max_bytes, struct verr *err)
{
    struct tile_store *s = NULL;
    int fd = -1, state = -1, bf = -1;
    void *map = MAP_FAILED;
    struct stat st;

    bool created = mkdir(dir, 0755) == 0;
    if (!created && errno != EEXIST) {
        verr_set(err, 500, "cannot create the tile store %s: %s", dir, strerror(errno));
        goto fail;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    /* A folder we made is 0755 whatever the umask: nginx's user must enter it. One that was
     * there keeps the mode its owner gave it. */
    if (fd < 0 || (created && fchmod(fd, 0755) < 0) || fstat(fd, &st) < 0) {
        verr_set(err, 500, "cannot open the tile store %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* Nobody else may put files there: nginx sends them to every client as our images. */
    if (st.st_uid != geteuid() || (st.st_mode & 022)) {
        verr_set(err, 500,
                 "tile store %s must be owned by uid %u and writable by no one else "
                 "(it is uid %u, mode %03o)",
                 dir, (unsigned)geteuid(), (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        goto fail;
    }
    state = open_subdir(fd, ".vellum", 0700);
    if (state < 0 || fstat(state, &st) < 0 || st.st_uid != geteuid()) {
        verr_set(err, 500, "cannot use %s/.vellum: %s", dir,
                 state < 0 ? strerror(errno) : "not ours");
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        int sub = open_subdir(state, i ? "trash" : "stamps", 0700);
        if (sub < 0) {
            verr_set(err, 500, "cannot create %s/.vellum/%s: %s", dir, i ? "trash" : "stamps",
                     strerror(errno));
            goto fail;
        }
        close(sub);
    }
    bf = openat(state, "bytes", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (bf < 0 || fstat(bf, &st) < 0 ||
        (st.st_size < SHARED_LEN && ftruncate(bf, SHARED_LEN) < 0)) {
        verr_set(err, 500, "cannot create %s/.vellum/bytes: %s", dir, strerror(errno));
        goto fail;
    }
    map = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, bf, 0);
    if (map == MAP_FAILED) {
        verr_set(err, 500, "cannot map %s/.vellum/bytes: %s", dir, strerror(errno));
        goto fail;
    }
    close(bf);
    bf = -1;
    s = calloc(1, sizeof *s);
    if (!s) {
        verr_set(err, 500, "out of memory");
        goto fail;
    }
    s->dirfd = fd;
    s->statefd = state;
    s->max_bytes = max_bytes;
    s->shared = map;
    struct statvfs vfs;
    s->stats.by_use = fstatvfs(fd, &vfs) == 0 && !(vfs.f_flag & ST_NOATIME);
    return s;
fail:
    if (map != MAP_FAILED)
        munmap(map, SHARED_LEN);
    if (bf >= 0)
        close(bf);
    if (state >= 0)
        close(state);
    if (fd >= 0)
        close(fd);
    return NULL;
}

void tile_store_close(struct tile_store *s)
{
    if (!s)
        return;
    munmap(s->shared, SHARED_LEN);
    close(s->statefd);
    close(s->dirfd);
    free(s);
}

static void bytes_sub(struct tile_store *s, uint64_t n)
{
    uint64_t old = __atomic_load_n(&s->shared->bytes, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&s->shared->bytes, &old, old > n ? old - n : 0, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Remove name under dfd and everything in it, without following links; *freed gets the sizes
 * of the files removed. */
static void remove_tree(int dfd, const char *name, int depth, uint64_t *freed)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) == 0 && S_ISREG(st.st_mode))
            *freed += (uint64_t)st.st_size;
        return;
    }
    int sub = depth < WALK_DEPTH
                  ? openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                  : -1;
    DIR *d = sub >= 0 ? fdopendir(sub) : NULL;
    if (!d) {
        if (sub >= 0)
            close(sub);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            remove_tree(sub, e->d_name, depth + 1, freed);
    closedir(d);
    (void)unlinkat(dfd, name, AT_REMOVEDIR);
}

int tile_store_check(struct tile_store *s, const char *id_dir, const void *stamp, size_t len)
{
    size_t idlen = strlen(id_dir);
    unsigned char want[2048], have[sizeof want + 1];
    if (!tile_store_path_ok(id_dir) || len + idlen > sizeof want)
        return -1;
    memcpy(want, stamp, len);
    memcpy(want + len, id_dir, idlen);
    size_t wlen = len + idlen;

    char name[40];
    snprintf(name, sizeof name, "stamps/%016llx",
             (unsigned long long)http_hash(HTTP_HASH_INIT, id_dir, idlen));
    int fd = openat(s->statefd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX) < 0) {
        close(fd);
        return -1;
    }
    int rc = 0;
    /* The record is the stamp and then the folder's path, so that two folders whose paths
     * hash alike only ever cost each other their files. */
    ssize_t n = pread(fd, have, sizeof have, 0);
    if (n != (ssize_t)wlen || memcmp(have, want, wlen) != 0) {
        /* Move the folder out of the web server's sight at once, then delete it. */
        char trash[64];
        snprintf(trash, sizeof trash, "trash/%ld.%llu", (long)getpid(),
                 (unsigned long long)++s->seq);
        if (renameat(s->dirfd, id_dir + 1, s->statefd, trash) == 0) {
            uint64_t freed = 0;
            remove_tree(s->statefd, trash, 0, &freed);
            bytes_sub(s, freed);
            s->stats.invalidated++;
        } else if (errno != ENOENT) {
            rc = -1;
        }
        if (rc == 0 && (ftruncate(fd, 0) < 0 || pwrite(fd, want, wlen, 0) != (ssize_t)wlen))
            rc = -1;
    }
    (void)flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

/* ---- trimming ---------------------------------------------------------------------------- */

/* The trim is CLOCK, an approximation of least-recently-used that needs nothing from the web
 * server but the file system's access times. A file's place in the queue is its ctime: when it
 * was stored, or last spared. Its "sent" mark is its atime being after that: the kernel sets
 * atime when nginx reads the file, under the default relatime mount option too, because relatime
 * always updates an atime that is not after the ctime. The trim removes unmarked files oldest
 * first and spares marked ones by clearing the mark (a chmod to the same mode sets ctime to now,
 * so the file goes to the back of the queue and must be sent again to be spared again). mtime,
 * which nginx's own ETag and Last-Modified come from, is never touched. On a noatime mount no
 * file is ever marked, and the trim is oldest-stored first. */
struct entry {
    int64_t ctime_ns; /* the queue order */
    uint64_t size;
    char *path; /* relative to the store */
    bool sent;  /* read since ctime */
    bool gone;  /* removed by this trim */
};

struct entries {
    struct entry *v;
    size_t n, cap;
    uint64_t total;
    bool failed;
};

static void collect(int dfd, char *rel, size_t rel_len, int depth, struct entries *l)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *e;
    while (!l->failed && (e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 ||
            (depth == 0 && strcmp(nm, ".vellum") == 0))
            continue;
        size_t nl = strlen(nm);
        if (rel_len + 1 + nl >= PATH_MAX)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        size_t sub_len = rel_len ? rel_len + 1 + nl : nl;
        if (rel_len)
            rel[rel_len] = '/';
        memcpy(rel + (rel_len ? rel_len + 1 : 0), nm, nl + 1);
        if (S_ISDIR(st.st_mode) && depth < WALK_DEPTH) {
            int sub = openat(dirfd(d), nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                collect(sub, rel, sub_len, depth + 1, l);
        } else if (S_ISREG(st.st_mode)) {
            if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 1024;
                struct entry *v = realloc(l->v, cap * sizeof *v);
                if (!v) {
                    l->failed = true;
                    break;
                }
                l->v = v;
                l->cap = cap;
            }
            char *p = strdup(rel);
            if (!p) {
                l->failed = true;
                break;
            }
            int64_t ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
            int64_t atime_ns = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
            l->v[l->n++] = (struct entry){ctime_ns, (uint64_t)st.st_size, p, atime_ns > ctime_ns,
                                          false};
            l->total += (uint64_t)st.st_size;
        }
        rel[rel_len] = '\0';
    }
    closedir(d);
}

static int by_ctime(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return x->ctime_ns < y->ctime_ns ? -1 : x->ctime_ns > y->ctime_ns;
}

static void drop(struct tile_store *s, struct entries *l, struct entry *e)
{
    if (unlinkat(s->dirfd, e->path, 0) == 0) {
        e->gone = true;
        l->total -= e->size;
        s->stats.evicted++;
    }
}

/* Clear a file's "sent" mark and put it at the back of the queue (see struct entry). */
static void spare(struct tile_store *s, const struct entry *e)
{
    int fd = openat(s->dirfd, e->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fchmod(fd, STORED_FILE_MODE) == 0)
        s->stats.spared++;
    close(fd);
}

/* Trim to 3/4 of the cap (CLOCK, see struct entry). One worker at a time; the others carry
 * on. */
static void trim(struct tile_store *s)
{
    int lk = openat(s->statefd, "evict.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lk < 0)
        return;
    if (flock(lk, LOCK_EX | LOCK_NB) < 0 ||
        __atomic_load_n(&s->shared->bytes, __ATOMIC_RELAXED) <= s->max_bytes) {
        close(lk);
        return;
    }
    struct entries l = {0};
    char rel[PATH_MAX] = "";
    int top = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top >= 0)
        collect(top, rel, 0, 0, &l);
    if (!l.failed) {
        qsort(l.v, l.n, sizeof *l.v, by_ctime);
        uint64_t target = s->max_bytes / 4 * 3;
        /* The hand goes round once removing files not sent since they were queued, and a
         * second time, oldest first, only when every file left had been sent. */
        size_t hand = 0;
        for (; hand < l.n && l.total > target; hand++)
            if (!l.v[hand].sent)
                drop(s, &l, &l.v[hand]);
        for (size_t i = 0; i < l.n && l.total > target; i++)
            if (!l.v[i].gone)
                drop(s, &l, &l.v[i]);
        for (size_t i = 0; i < hand; i++)
            if (l.v[i].sent && !l.v[i].gone)
                spare(s, &l.v[i]);
        __atomic_store_n(&s->shared->bytes, l.total, __ATOMIC_RELAXED);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].path);
    free(l.v);
    close(lk);
}

int tile_store_put(struct tile_store *s, const char *path, const unsigned char *body, size_t len)
{
    char buf[MAX_SEGMENTS * MAX_SEGMENT + 1];
    if (!tile_store_path_ok(path) || len == 0 || strlen(path + 1) >= sizeof buf)
        return -1;
    strcpy(buf, path + 1);
    int dfd = s->dirfd;
    char *seg = buf, *slash;
    while ((slash = strchr(seg, '/')) != NULL) {
        *slash = '\0';
        int sub = open_subdir(dfd, seg, 0755);
        if (dfd != s->dirfd)
            close(dfd);
        if (sub < 0)
            return -1;
        dfd = sub;
        seg = slash + 1;
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".tmp.%ld.%llu", (long)getpid(), (unsigned long long)++s->seq);
    int rc = -1;
    int fd =
        openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, STORED_FILE_MODE);
    if (fd >= 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(fd, body + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        bool ok = off == len && fchmod(fd, STORED_FILE_MODE) == 0;
        ok = close(fd) == 0 && ok;
        if (ok && renameat(dfd, tmp, dfd, seg) == 0)
            rc = 0;
        else
            (void)unlinkat(dfd, tmp, 0);
    }
    if (dfd != s->dirfd)
        close(dfd);
    if (rc == 0) {
        s->stats.stored++;
        if (__atomic_add_fetch(&s->shared->bytes, (uint64_t)len, __ATOMIC_RELAXED) > s->max_bytes)
            trim(s);
    }
    return rc;
}

void tile_store_stats(const struct tile_store *s, struct tile_store_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    *out = s->stats;
    out->bytes = __atomic_load_n(&s->shared->bytes, __ATOMIC_RELAXED);
}
