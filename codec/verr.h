/* verr: the error every Vellum library function fills on failure.
 * status is the HTTP status the failure deserves (400, 404, 413, 500, 501, 503); fcgi/ turns it
 * into a response, nobody else prints. Shared by codec/, manifest/ and db/. */
#ifndef VELLUM_VERR_H
#define VELLUM_VERR_H

struct verr {
    int status;
    char msg[256];
};

/* Fill err (if not NULL) with status and a printf-style message. Always returns -1, so a
 * failing function can `return verr_set(err, 400, "...")`. */
int verr_set(struct verr *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
