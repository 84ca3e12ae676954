/* log.c: see log.h. One fprintf per line, so lines from several workers do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current = LOG_LEVEL_INFO;

void log_set_level(enum log_level level)
{
    current = level;
}

static void timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > current)
        return;
    char ts[40], msg[1024];
    timestamp(ts, sizeof ts);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s [%s] vellum[%d]: %s\n", ts, names[level], (int)getpid(), msg);
}

/* The URI is client input: print it with control characters and spaces escaped so a request
 * cannot forge log lines, and cut very long ones. */
void log_access(const char *method, const char *uri, int status, size_t bytes, double ms)
{
    if (current < LOG_LEVEL_INFO)
        return;
    char ts[40], safe[1100];
    timestamp(ts, sizeof ts);
    size_t j = 0;
    for (const unsigned char *c = (const unsigned char *)uri; *c && j < 1024; c++) {
        if (*c <= 0x20 || *c == 0x7f || *c == '"')
            j += (size_t)snprintf(safe + j, sizeof safe - j, "%%%02X", *c);
        else
            safe[j++] = (char)*c;
    }
    if (uri[0] && j >= 1024)
        j += (size_t)snprintf(safe + j, sizeof safe - j, "...");
    safe[j] = '\0';
    fprintf(stderr, "%s %s %s %d %zu %.3fms pid=%d\n", ts, method, safe, status, bytes, ms,
            (int)getpid());
}
