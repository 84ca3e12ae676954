/* fuzz_iiif_path: splitting the path after the Image API prefix (iiif_split_path) and
 * percent-decoding (iiif_percent_decode), the first code a URL from the network reaches.
 * Checks the contract in codec/iiif.h and abort()s when it is broken. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iiif.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_iiif_path: invariant broken: %s\n", what);
    abort();
}

static void check_split(const char *raw)
{
    struct iiif_path p;
    struct verr err = {0, ""};

    if (iiif_split_path(raw, &p, &err) < 0) {
        if (err.status != 400 && err.status != 500)
            fail("split error without status 400");
        if (p.identifier || p.id_raw || p.params[0])
            fail("a failed split left allocations behind");
        return;
    }
    if (!p.identifier || !p.id_raw || !p.id_raw[0])
        fail("split succeeded without an identifier");
    /* id_raw is a prefix of the raw path; decoding only shrinks it. */
    size_t id_len = strlen(p.id_raw);
    if (strncmp(raw, p.id_raw, id_len) != 0 || strlen(p.identifier) > id_len)
        fail("id_raw is not the start of the path");
    if (p.target == IIIF_TARGET_IMAGE) {
        for (int i = 0; i < 4; i++) {
            if (!p.params[i])
                fail("image request without four parameters");
        }
        if (!strchr(p.params[3], '.'))
            fail("quality.format without a '.'");
        /* What the router does next: parse the parameters under both versions. */
        for (int v = 2; v <= 3; v++) {
            struct iiif_params ip;
            struct verr perr = {0, ""};
            if (iiif_parse((enum iiif_version)v, p.params[0], p.params[1], p.params[2], p.params[3],
                           &ip, &perr) < 0 &&
                perr.status != 400)
                fail("parse error without status 400");
        }
    } else if (p.target != IIIF_TARGET_INFO && p.target != IIIF_TARGET_BASE) {
        fail("unknown target");
    } else if (p.params[0]) {
        fail("parameters for a non-image request");
    }
    iiif_path_clear(&p);
}

static void check_decode(const uint8_t *data, size_t size)
{
    struct verr err = {0, ""};
    char *out = iiif_percent_decode((const char *)data, size, &err);
    size_t escapes = 0;

    for (size_t i = 0; i < size; i++)
        escapes += data[i] == '%';
    if (!out) {
        if (err.status != 400 && err.status != 500)
            fail("decode error without status 400");
        return;
    }
    /* Every '%' took two hex digits and became one byte; nothing else changed length. */
    if (memchr(data, '\0', size) || strlen(out) + 2 * escapes != size)
        fail("decoded length does not match the escapes");
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    raw[size] = '\0';
    check_split(raw);
    check_decode(data, size);
    free(raw);
    return 0;
}
