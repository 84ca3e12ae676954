/* cpus.c: how many cores this process may use (codec.h).
 *
 * sysconf(_SC_NPROCESSORS_ONLN) counts the machine's cores. A container (docker --cpus or
 * --cpuset-cpus, a Kubernetes CPU limit), a systemd unit (CPUQuota=, CPUAffinity=) or taskset
 * gives Vellum fewer, and workers or decode threads beyond those only queue for them, each with
 * its decode buffers. So the count is the CPU affinity mask, capped by the cgroup's CPU quota
 * (v2 cpu.max, up the hierarchy; v1 cpu.cfs_quota_us), rounded up. */
#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int codec_cpu_quota(const char *quota, const char *period)
{
    if (!quota || !period)
        return 0;
    char *end;
    errno = 0;
    long long q = strtoll(quota, &end, 10);
    if (errno || end == quota || q <= 0) /* "max", "-1" (v1: no limit), or not a number */
        return 0;
    errno = 0;
    long long p = strtoll(period, &end, 10);
    if (errno || end == period || p <= 0)
        return 0;
    long long n = q / p + (q % p != 0);
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* The first line of a small file, without its newline; NULL when unreadable. */
static char *read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *s = fgets(buf, (int)len, f);
    fclose(f);
    if (s)
        s[strcspn(s, "\n")] = '\0';
    return s;
}

/* Our cgroup's path in the hierarchy of `controller` ("cpu" for v1), or of v2 (controller
 * NULL: the "0::" line), from /proc/self/cgroup; false when there is none. */
static bool cgroup_path(const char *controller, char *out, size_t len)
{
    char line[4096];
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) { /* ID:CONTROLLER,...:PATH */
        char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
        if (!p)
            continue;
        *p++ = '\0';
        c++;
        if (!controller) {
            found = *c == '\0' && strncmp(line, "0", 2) == 0;
        } else {
            char *save = NULL;
            for (char *t = strtok_r(c, ",", &save); t && !found; t = strtok_r(NULL, ",", &save))
                found = strcmp(t, controller) == 0;
        }
        if (found) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(out, len, "%s", p);
        }
    }
    fclose(f);
    return found;
}

/* The quota set on one cgroup folder: v2's cpu.max ("QUOTA PERIOD" or "max PERIOD") or v1's
 * cpu.cfs_quota_us and cpu.cfs_period_us; 0 when none. */
static int folder_quota(const char *dir, bool v2)
{
    char path[4400], q[128], p[64];
    if (v2) {
        if ((size_t)snprintf(path, sizeof path, "%s/cpu.max", dir) >= sizeof path)
            return 0;
        char *sp = read_line(path, q, sizeof q) ? strchr(q, ' ') : NULL;
        if (!sp)
            return 0;
        *sp = '\0';
        return codec_cpu_quota(q, sp + 1);
    }
    if ((size_t)snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= sizeof path ||
        !read_line(path, q, sizeof q) ||
        (size_t)snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= sizeof path)
        return 0;
    return read_line(path, p, sizeof p) ? codec_cpu_quota(q, p) : 0;
}

/* The smallest quota from our cgroup up to the root of the hierarchy mounted at mount. A
 * container usually sees its own cgroup as that root, and a path that is not there: then the
 * parents that are not there are skipped too. */
static int walk_quota(const char *mount, char *cg, bool v2)
{
    char dir[4300];
    int best = 0;
    for (;;) {
        int n = 0;
        if ((size_t)snprintf(dir, sizeof dir, "%s%s", mount, strcmp(cg, "/") == 0 ? "" : cg) <
            sizeof dir)
            n = folder_quota(dir, v2);
        if (n > 0 && (best == 0 || n < best))
            best = n;
        char *slash = strrchr(cg, '/');
        if (!slash || strcmp(cg, "/") == 0)
            break;
        slash[slash == cg ? 1 : 0] = '\0'; /* "/a/b" -> "/a" -> "/" */
    }
    return best;
}

static int cgroup_quota(void)
{
    char cg[4096];
    int n = 0;
    if (cgroup_path(NULL, cg, sizeof cg))
        n = walk_quota("/sys/fs/cgroup", cg, true);
    if (n == 0 && cgroup_path("cpu", cg, sizeof cg)) {
        n = walk_quota("/sys/fs/cgroup/cpu,cpuacct", cg, false);
        if (n == 0 && cgroup_path("cpu", cg, sizeof cg)) /* the walk cut cg short */
            n = walk_quota("/sys/fs/cgroup/cpu", cg, false);
    }
    return n;
}

static int affinity(void)
{
    for (int n = 1024; n <= (1 << 18); n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (!set)
            return 0;
        size_t size = CPU_ALLOC_SIZE(n);
        int rc = sched_getaffinity(0, size, set);
        int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (rc == 0)
            return count;
        if (errno != EINVAL) /* EINVAL: the kernel's mask is larger than n */
            return 0;
    }
    return 0;
}

int codec_cpu_count(void)
{
    int n = affinity();
    if (n < 1) {
        long s = sysconf(_SC_NPROCESSORS_ONLN);
        n = s < 1 ? 1 : s > INT_MAX ? INT_MAX : (int)s;
    }
    int q = cgroup_quota();
    return q > 0 && q < n ? q : n;
}
