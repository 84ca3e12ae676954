/* source_cache.c: identifier resolution under the image root and the header cache. */
#include "source_cache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int codec_resolve(const char *root, const char *identifier, char *out, size_t out_len,
                  struct verr *err)
{
    size_t n = strlen(identifier);
    if (n == 0)
        return verr_set(err, 400, "empty identifier");
    if (n > 1024)
        return verr_set(err, 400, "identifier longer than 1024 bytes");
    if (identifier[0] == '/')
        return verr_set(err, 400, "identifier must be a relative path");
    /* Refuse the shapes traversal takes before touching the file system: "..", "." and empty
     * segments, backslashes (never a separator here, but a trap for anyone who copies files
     * to Windows), and control bytes. */
    const char *seg = identifier;
    for (const char *p = identifier;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t len = (size_t)(p - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return verr_set(err, 400, "identifier has an empty, \".\" or \"..\" segment");
            if (*p == '\0')
                break;
            seg = p + 1;
        } else if (*p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f) {
            return verr_set(err, 400, "identifier has a backslash or a control character");
        }
    }
    char root_real[PATH_MAX], joined[PATH_MAX], real[PATH_MAX];
    if (!realpath(root, root_real))
        return verr_set(err, 500, "image_root %.200s: %s", root, strerror(errno));
    int m = snprintf(joined, sizeof joined, "%s/%s", root_real, identifier);
    if (m < 0 || (size_t)m >= sizeof joined)
        return verr_set(err, 400, "identifier too long");
    if (!realpath(joined, real))
        return verr_set(err, 404, "no image with this identifier");
    /* A symlink may point anywhere; what it resolves to must still be under the root. */
    size_t rl = strlen(root_real);
    if (strncmp(real, root_real, rl) != 0 || (real[rl] != '/' && !(rl == 1 && root_real[0] == '/')))
        return verr_set(err, 404, "no image with this identifier");
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISREG(st.st_mode))
        return verr_set(err, 404, "no image with this identifier");
    if (access(real, R_OK) < 0)
        return verr_set(err, 403, "image not readable by the server");
    if (strlen(real) >= out_len)
        return verr_set(err, 400, "identifier too long");
    strcpy(out, real);
    return 0;
}

struct entry {
    char *path;
    struct source_stamp stamp;
    struct codec_info info;
    uint64_t used; /* last use tick, for LRU */
};

struct source_cache {
    struct entry *entries;
    size_t n, max;
    uint64_t tick;
};

struct source_cache *source_cache_new(size_t max_entries)
{
    struct source_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->max = max_entries ? max_entries : 1;
    c->entries = calloc(c->max, sizeof *c->entries);
    if (!c->entries) {
        free(c);
        return NULL;
    }
    return c;
}

static void entry_clear(struct entry *e)
{
    free(e->path);
    codec_info_clear(&e->info);
    memset(e, 0, sizeof *e);
}

void source_cache_free(struct source_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_clear(&c->entries[i]);
    free(c->entries);
    free(c);
}

/* Remove an (already cleared) slot by moving the last entry into it. */
static void drop_slot(struct source_cache *c, struct entry *slot)
{
    size_t idx = (size_t)(slot - c->entries);
    c->n--;
    if (idx != c->n) {
        *slot = c->entries[c->n];
        memset(&c->entries[c->n], 0, sizeof c->entries[c->n]);
    }
}

int source_stamp_read(const char *path, struct source_stamp *out)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

bool source_stamp_equal(const struct source_stamp *a, const struct source_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

int source_cache_get(struct source_cache *c, const char *path, uint64_t max_pixels,
                     const struct codec_info **info, struct source_stamp *stamp,
                     struct verr *err)
{
    struct source_stamp now;
    if (source_stamp_read(path, &now) < 0)
        return verr_set(err, 404, "no image with this identifier");
    c->tick++;
    /* A linear scan: the cache is small (hundreds), and a string compare per entry is cheaper
     * than the header parse it saves by orders of magnitude. */
    struct entry *slot = NULL;
    for (size_t i = 0; i < c->n; i++) {
        struct entry *e = &c->entries[i];
        if (strcmp(e->path, path) != 0)
            continue;
        if (source_stamp_equal(&e->stamp, &now)) {
            e->used = c->tick;
            *info = &e->info;
            *stamp = now;
            return 0;
        }
        slot = e; /* the file changed: probe again into the same slot */
        entry_clear(slot);
        break;
    }
    if (!slot) {
        if (c->n < c->max) {
            slot = &c->entries[c->n++];
        } else {
            slot = &c->entries[0];
            for (size_t i = 1; i < c->n; i++) {
                if (c->entries[i].used < slot->used)
                    slot = &c->entries[i];
            }
            entry_clear(slot);
        }
    }
    struct codec_info fresh;
    memset(&fresh, 0, sizeof fresh);
    if (codec_probe(path, max_pixels, &fresh, err) < 0) {
        drop_slot(c, slot);
        return -1;
    }
    slot->path = strdup(path);
    if (!slot->path) {
        codec_info_clear(&fresh);
        drop_slot(c, slot);
        return verr_set(err, 500, "out of memory");
    }
    slot->info = fresh;
    slot->stamp = now;
    slot->used = c->tick;
    *info = &slot->info;
    *stamp = now;
    return 0;
}
