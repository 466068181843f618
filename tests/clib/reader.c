/* Test and benchmark driver of libarrowshm (compiled by tests/clib/conftest.py).
 *
 *   reader read NS NAME FINAL        read the latest version until it reaches FINAL
 *   reader get NS NAME [VERSION]     one get: status, message, version, crc32
 *   reader wait NS NAME AFTER MS     block in ash_wait, print what woke it
 *   reader open NS [DIR]             ash_open's status and message
 *   reader list NS                   the live entries
 *   reader fork NS NAME              hold a view across fork(): what the child may do
 *   reader bench NS NAME K           first get of K new versions (after ash_wait), repeated get
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arrowshm.h"

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
/* zlib.crc32 */
static uint32_t crc32(const uint8_t *p, uint64_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (uint64_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return v[n / 2];
}

static ash_ns *open_or_die(const char *ns, const char *dir) {
    ash_ns *h;
    int rc = ash_open(ns, dir, &h);
    if (rc != ASH_OK) {
        printf("open %d %s | %s\n", rc, ash_strerror(rc), ash_errmsg());
        exit(3);
    }
    return h;
}

int main(int argc, char **argv) {
    crc_init();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) return 2;
    const char *mode = argv[1], *nsname = argv[2];
    if (!strcmp(mode, "open")) {
        ash_ns *h = NULL;
        int rc = ash_open(nsname, argc > 3 ? argv[3] : NULL, &h);
        printf("open %d %s | %s\n", rc, ash_strerror(rc), rc ? ash_errmsg() : "");
        ash_close(h);
        return 0;
    }
    ash_ns *ns = open_or_die(nsname, NULL);
    if (!strcmp(mode, "get") && argc >= 4) {
        ash_view v;
        int rc = ash_get(ns, argv[3], argc > 4 ? strtoull(argv[4], NULL, 10) : 0, &v);
        if (rc != ASH_OK) {
            printf("get %d %s | %s\n", rc, ash_strerror(rc), ash_errmsg());
        } else {
            printf("get 0 version %llu rows %llu length %llu crc %u\n",
                   (unsigned long long)v.version, (unsigned long long)v.num_rows,
                   (unsigned long long)v.length, crc32(v.data, v.length));
            ash_release(&v);
        }
    } else if (!strcmp(mode, "read") && argc >= 5) {
        uint64_t final = strtoull(argv[4], NULL, 10), last = 0, reads = 0, backwards = 0;
        uint32_t last_crc = 0;
        for (;;) {
            ash_view v;
            int rc = ash_get(ns, argv[3], 0, &v);
            if (rc == ASH_ENOTFOUND) continue; /* not put yet */
            if (rc != ASH_OK) {
                printf("error %d %s | %s\n", rc, ash_strerror(rc), ash_errmsg());
                return 1;
            }
            uint32_t c = crc32(v.data, v.length);
            reads++;
            if (v.version < last) backwards++;
            if (v.version != last || c != last_crc)
                printf("V %llu %u\n", (unsigned long long)v.version, c);
            last = v.version;
            last_crc = c;
            ash_release(&v);
            if (last >= final) break;
        }
        printf("done reads %llu backwards %llu\n", (unsigned long long)reads,
               (unsigned long long)backwards);
    } else if (!strcmp(mode, "wait") && argc >= 6) {
        uint64_t got = 0;
        printf("waiting\n");
        int rc = ash_wait(ns, argv[3], strtoull(argv[4], NULL, 10),
                          (int64_t)strtoll(argv[5], NULL, 10) * 1000000LL, &got);
        printf("woke %d %llu %s\n", rc, (unsigned long long)got, rc ? ash_errmsg() : "");
    } else if (!strcmp(mode, "fork") && argc >= 4) {
        /* hold a view, fork: the child's calls on the parent's handle are refused and its
         * release is a no-op; the parent still holds its pin until told to let go */
        ash_view v;
        int rc = ash_get(ns, argv[3], 0, &v);
        if (rc) { printf("error %d %s\n", rc, ash_errmsg()); return 1; }
        uint32_t before = crc32(v.data, v.length);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            ash_view w;
            int crc = ash_get(ns, argv[3], 0, &w);
            ash_release(&v);
            ash_close(ns);
            ash_ns *own = NULL;
            int orc = ash_open(nsname, NULL, &own);
            int grc = orc ? orc : ash_get(own, argv[3], 0, &w);
            printf("child get %d own %d\n", crc, grc);
            if (!grc) ash_release(&w);
            ash_close(own);
            _exit(0);
        }
        int status;
        waitpid(child, &status, 0);
        printf("parent holding %d\n", (int)getpid());
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 1;
        printf("parent crc %s\n", crc32(v.data, v.length) == before ? "same" : "changed");
        ash_release(&v);
    } else if (!strcmp(mode, "list")) {
        ash_entry e[64];
        long n = ash_list(ns, e, 64);
        printf("list %ld\n", n);
        for (long i = 0; i < n && i < 64; i++)
            printf("E %s %d %llu %llu\n", e[i].name, e[i].kind, (unsigned long long)e[i].version,
                   (unsigned long long)e[i].num_rows);
    } else if (!strcmp(mode, "bench") && argc >= 5) {
        /* first get of each new version Python puts (woken by ash_wait, holding the
         * previous version like a Python reader holds its table), then repeated gets */
        int k = atoi(argv[4]);
        uint64_t *first = calloc((size_t)k, 8), *again = calloc(200, 8), *cycle = calloc(200, 8);
        uint64_t after = 0;
        ash_view held = {0};
        printf("ready\n");
        int got = 0; /* versions 1..k are put; one may be missed while a get runs */
        for (int i = 0; i < k && after < (uint64_t)k; i++, got++) {
            int rc = ash_wait(ns, argv[3], after, 30000000000LL, &after);
            ash_view v;
            uint64_t t0 = now_ns();
            rc = rc ? rc : ash_get(ns, argv[3], 0, &v);
            uint64_t t1 = now_ns();
            if (rc) { printf("error %d %s\n", rc, ash_errmsg()); return 1; }
            first[i] = t1 - t0;
            ash_release(&held);
            held = v;
        }
        for (int i = 0; i < 200; i++) { /* while holding it: the pin is shared */
            ash_view v;
            uint64_t t0 = now_ns();
            ash_get(ns, argv[3], 0, &v);
            again[i] = now_ns() - t0;
            ash_release(&v);
        }
        ash_release(&held);
        for (int i = 0; i < 200; i++) { /* get + release with nothing held: pin, unpin */
            ash_view v;
            uint64_t t0 = now_ns();
            ash_get(ns, argv[3], 0, &v);
            ash_release(&v);
            cycle[i] = now_ns() - t0;
        }
        uint64_t *fresh = calloc(50, 8);
        for (int i = 0; i < 50; i++) { /* a handle that has mapped nothing yet: new mappings */
            ash_ns *h = open_or_die(nsname, NULL);
            ash_view v;
            uint64_t t0 = now_ns();
            ash_get(h, argv[3], 0, &v);
            fresh[i] = now_ns() - t0;
            ash_release(&v);
            ash_close(h);
        }
        printf("bench first_ns %llu repeat_ns %llu cycle_ns %llu fresh_ns %llu\n",
               /* (the first get warms up) */
               (unsigned long long)(got > 1 ? median(first + 1, got - 1) : first[0]),
               (unsigned long long)median(again, 200),
               (unsigned long long)median(cycle, 200), (unsigned long long)median(fresh, 50));
    } else {
        return 2;
    }
    ash_close(ns);
    return 0;
}
