/* log.h: stderr logging with a level, and the one access-log line per request. Under nginx the
 * pool's stderr is the terminal or a file; under mod_fcgid it lands in Apache's error log. */
#ifndef VELLUM_LOG_H
#define VELLUM_LOG_H

#include "config.h"

void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* time method uri status bytes milliseconds pid, e.g.
 * 2026-11-25T17:50:01.123Z GET /health 200 97 0.412ms pid=1234 */
void log_access(const char *method, const char *uri, int status, size_t bytes, double ms);

#endif
