/* handle_presentation.c: IIIF Presentation API 3.0 (/presentation/3/) and 2.1 (/presentation/2/)
 * from the catalogue database. Paths (identifiers percent-encoded, decoded once):
 *   {v}/{id}/manifest      a Manifest
 *   3/{id}/canvas/{n}      one Canvas (n from 1), dereferenceable at the id the Manifest gives it
 *   {v}/collection         the top-level Collection; {v}/collection/{name} a named one
 * The database is opened read-only on first use and kept open; it is reopened when its path
 * names another file (a new copy published with rename), so workers never serve a stale one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app.h"
#include "db.h"
#include "iiif.h"
#include "manifest.h"

enum pres_target { PRES_MANIFEST, PRES_CANVAS, PRES_COLLECTION };

struct pres_path {
    enum pres_target target;
    char *id;      /* object id or collection name ("" for the top level), decoded; owned */
    size_t canvas; /* PRES_CANVAS: 1-based */
};

/* A canvas number as the Manifest writes it: 1, 2, ... (no sign, no leading zero), so the id
 * of what is served is always the URL it was fetched at. */
static int parse_canvas_number(const char *s, size_t *out, struct verr *err)
{
    size_t n = 0;
    if (!*s || *s == '0')
        goto bad;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || n > (SIZE_MAX - 9) / 10)
            goto bad;
        n = n * 10 + (size_t)(*p - '0');
    }
    *out = n;
    return 0;
bad:
    return verr_set(err, 400, "invalid canvas number \"%.40s\": canvases are numbered 1, 2, 3, ...",
                    s);
}

static int decode(const char *raw, size_t len, char **out, struct verr *err)
{
    *out = iiif_percent_decode(raw, len, err);
    return *out ? 0 : -1;
}

/* Split the raw path after "/presentation/{v}/". Identifiers are matched from the right, so an
 * identifier with a literal (unencoded) slash still finds its object. */
static int parse_path(const char *rest, int version, struct pres_path *out, struct verr *err)
{
    memset(out, 0, sizeof *out);
    static const char coll[] = "collection";
    size_t cl = sizeof coll - 1;
    if (!strncmp(rest, coll, cl) && (rest[cl] == '\0' || rest[cl] == '/')) {
        out->target = PRES_COLLECTION;
        if (rest[cl] == '\0')
            return decode("", 0, &out->id, err);
        if (rest[cl + 1] == '\0')
            return verr_set(err, 404,
                            "no collection name after collection/ (the top level is "
                            "/presentation/%d/collection)",
                            version);
        return decode(rest + cl + 1, strlen(rest + cl + 1), &out->id, err);
    }
    size_t len = strlen(rest);
    static const char man[] = "/manifest";
    size_t ml = sizeof man - 1;
    if (len > ml && !strcmp(rest + len - ml, man)) {
        out->target = PRES_MANIFEST;
        return decode(rest, len - ml, &out->id, err);
    }
    const char *slash = strrchr(rest, '/');
    if (slash && slash - rest > 7 && !strncmp(slash - 7, "/canvas", 7)) {
        if (version != 3)
            return verr_set(err, 404,
                            "2.1 canvases are not served on their own; fetch the "
                            "manifest, or the canvas under /presentation/3/");
        out->target = PRES_CANVAS;
        if (parse_canvas_number(slash + 1, &out->canvas, err) < 0)
            return -1;
        return decode(rest, (size_t)(slash - 7 - rest), &out->id, err);
    }
    return verr_set(err, 404,
                    "no such Presentation API resource: %.200s (try "
                    "/presentation/%d/{id}/manifest)",
                    rest, version);
}

/* The read-only catalogue, opened on first use. 503 while there is none yet: the server runs
 * (images work) before the first `vellum import`. */
static struct db *catalogue(struct app *app, struct verr *err)
{
    const char *path = app->cfg->database;
    if (!path[0]) {
        verr_set(err, 503,
                 "no catalogue database configured (set database, then run vellum import)");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        db_close(app->db);
        app->db = NULL;
        verr_set(err, 503, "catalogue database %.200s does not exist yet (run vellum import)",
                 path);
        return NULL;
    }
    if (app->db && (st.st_dev != app->db_dev || st.st_ino != app->db_ino)) {
        db_close(app->db);
        app->db = NULL;
    }
    if (!app->db) {
        app->db = db_open(path, false, err);
        if (!app->db) {
            if (!err->status)
                err->status = 503;
            return NULL;
        }
        app->db_dev = st.st_dev;
        app->db_ino = st.st_ino;
    }
    return app->db;
}

static void set_type(const struct http_request *req, struct http_response *resp, int version)
{
    /* SPECS C6 (3.0: JSON-LD with the profile by default) and D (2.1: plain JSON unless asked). */
    if (version == 3)
        http_set_json_type(req, resp, "http://iiif.io/api/presentation/3/context.json", true);
    else
        http_set_json_type(req, resp, "http://iiif.io/api/presentation/2/context.json", false);
}

static void send_json(struct http_response *resp, char *json, struct verr *err)
{
    if (!json) {
        http_error(resp, err->status ? err->status : 500, "%s", err->msg);
        return;
    }
    http_body_take(resp, (unsigned char *)json, strlen(json));
}

/* A Manifest or Canvas: the ETag comes from the object's modification time, so a revalidation
 * (304) costs one indexed lookup and never loads the object. Documents are revalidated on every
 * use (no-cache): a re-import shows at once, and an unchanged one costs a 304. */
/* Content-Type and validators of an object's document; true when the answer is a 304. */
static bool object_headers(const struct http_request *req, struct http_response *resp,
                           int version, const struct pres_path *pp, const char *base,
                           int64_t modified)
{
    /* What the document depends on: the object's version, this code's version, the URL base
     * (ids are absolute), and which document it is. */
    uint64_t h = http_hash(HTTP_HASH_INIT, &modified, sizeof modified);
    h = http_hash(h, VELLUM_VERSION, strlen(VELLUM_VERSION));
    h = http_hash(h, base, strlen(base) + 1);
    h = http_hash(h, &version, sizeof version);
    h = http_hash(h, &pp->target, sizeof pp->target);
    h = http_hash(h, &pp->canvas, sizeof pp->canvas);
    char etag[64];
    snprintf(etag, sizeof etag, "\"p%016" PRIx64 "\"", h);
    set_type(req, resp, version);
    return http_cache_headers(req, resp, etag, (time_t)modified, -1);
}

static void serve_object(const struct http_request *req, struct http_response *resp, int version,
                         const struct pres_path *pp, const char *base, struct db *db)
{
    struct verr err = {0};
    int64_t modified;
    if (db_object_modified(db, pp->id, &modified, &err) < 0) {
        http_error(resp, err.status ? err.status : 500, "%s", err.msg);
        return;
    }
    if (object_headers(req, resp, version, pp, base, modified))
        return;

    struct db_object *obj = NULL;
    if (db_object_load(db, pp->id, &obj, &err) < 0) {
        http_error(resp, err.status ? err.status : 500, "%s", err.msg);
        return;
    }
    /* An import committed between the two reads: the validators must be those of the object
     * actually loaded (one snapshot), not of the one looked up first. */
    if (obj->modified != modified) {
        http_response_init(resp); /* nothing but these headers was set yet */
        if (object_headers(req, resp, version, pp, base, obj->modified)) {
            db_object_free(obj);
            return;
        }
    }
    char *json;
    if (pp->target == PRES_CANVAS)
        json = manifest_canvas3(obj, pp->canvas - 1, base, &err);
    else if (version == 3)
        json = manifest_presentation3(obj, base, &err);
    else
        json = manifest_presentation2(obj, base, &err);
    db_object_free(obj);
    send_json(resp, json, &err);
}

/* A Collection lists other objects' labels, which a re-import of those objects can change
 * without touching the collection's own time: its ETag is a hash of the document itself. */
static void serve_collection(const struct http_request *req, struct http_response *resp,
                             int version, const struct pres_path *pp, const char *base,
                             struct db *db)
{
    struct verr err = {0};
    struct db_collection *c = NULL;
    if (db_collection_load(db, pp->id, &c, &err) < 0) {
        http_error(resp, err.status ? err.status : 500, "%s", err.msg);
        return;
    }
    char *json =
        version == 3 ? manifest_collection3(c, base, &err) : manifest_collection2(c, base, &err);
    int64_t modified = c->modified;
    db_collection_free(c);
    if (!json) {
        send_json(resp, NULL, &err);
        return;
    }
    size_t len = strlen(json);
    char etag[64];
    snprintf(etag, sizeof etag, "\"c%016" PRIx64 "\"", http_hash(HTTP_HASH_INIT, json, len));
    set_type(req, resp, version);
    if (http_cache_headers(req, resp, etag, (time_t)modified, -1)) {
        free(json);
        return;
    }
    http_body_take(resp, (unsigned char *)json, len);
}

void handle_presentation(struct app *app, const struct http_request *req,
                         struct http_response *resp)
{
    /* Routes are "/presentation/3/" and "/presentation/2/". */
    int version = req->path[14] == '3' ? 3 : 2;
    struct verr err = {0};
    struct pres_path pp;
    if (parse_path(req->path + 16, version, &pp, &err) < 0) {
        http_error(resp, err.status, "%s", err.msg);
        free(pp.id);
        return;
    }
    char base[1024];
    struct db *db;
    if (http_base_url(req, app->cfg, base, sizeof base) < 0) {
        http_error(resp, 500, "base URL does not fit");
    } else if (!(db = catalogue(app, &err))) {
        http_error(resp, err.status, "%s", err.msg);
    } else if (pp.target == PRES_COLLECTION) {
        serve_collection(req, resp, version, &pp, base, db);
    } else if (!*pp.id) {
        http_error(resp, 404, "empty object identifier");
    } else {
        serve_object(req, resp, version, &pp, base, db);
    }
    free(pp.id);
}

void handle_presentation_release(struct app *app)
{
    db_close(app->db);
    app->db = NULL;
}
