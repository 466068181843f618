/* Corruption fuzzer of libarrowshm, run under AddressSanitizer by test_fuzz.py.
 *
 *   fuzz DIR NS NAME ITERS SEED
 *
 * DIR holds copies of a real namespace NS (registry and segments). Every iteration
 * restores the originals, then changes one to four words the reader looks at (registry
 * header, the live entries, segment headers and pins) to boundary or random values,
 * or truncates a segment, and runs ash_open, ash_get (latest and a random version),
 * ash_list and ash_wait (no timeout) over it, touching every page of each view handed
 * out. Any status is fine; a crash, an ASan report or a hang is not. Prints a
 * histogram of the statuses.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arrowshm.h"

typedef struct {
    char path[4096];
    uint8_t *bytes;
    size_t size;
    int registry;
} file_t;

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void put_file(const file_t *f) {
    int fd = open(f->path, O_WRONLY);
    if (fd < 0) { perror(f->path); exit(2); }
    if (ftruncate(fd, (off_t)f->size) != 0 || pwrite(fd, f->bytes, f->size, 0) != (ssize_t)f->size) {
        perror("restore");
        exit(2);
    }
    close(fd);
}

/* what an iteration changed, undone before the next (restoring whole files costs a 4 MiB
 * registry copy per iteration) */
static struct { const file_t *f; size_t word; int truncated; } undo[8];
static int nundo;

static void poke(const file_t *f, size_t word, uint64_t value) {
    if (8 * word + 8 > f->size) return;
    undo[nundo].f = f;
    undo[nundo].word = word;
    undo[nundo++].truncated = 0;
    int fd = open(f->path, O_WRONLY);
    if (pwrite(fd, &value, 8, (off_t)(8 * word)) != 8) exit(2);
    close(fd);
}

static uint64_t pick_value(uint64_t old, size_t size) {
    static const uint64_t fixed[] = {0, 1, 2, 3, 7, 8, 4095, 4096, 4097, 1u << 20, 1ULL << 31,
                                     1ULL << 32, 1ULL << 62, 1ULL << 63, ~0ULL, ~0ULL - 1};
    switch (rnd() % 6) {
    case 0: return fixed[rnd() % (sizeof fixed / sizeof fixed[0])];
    case 1: return size + (rnd() % 3) - 1;
    case 2: return old + (rnd() % 3) - 1;
    case 3: return old ^ (1ULL << (rnd() % 64));
    case 4: return rnd();
    default: return size - 4096 + (rnd() % 8192);
    }
}

static volatile uint64_t sink;
static void touch(const ash_view *v) {
    uint64_t s = 0;
    for (uint64_t i = 0; i < v->length; i += 4096) s += v->data[i];
    if (v->length) s += v->data[v->length - 1];
    if (v->batch_length) s += v->data[v->batch_offset + v->batch_length - 1];
    sink += s;
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    const char *dir = argv[1], *ns_name = argv[2], *name = argv[3];
    long iters = atol(argv[4]);
    rng_state = strtoull(argv[5], NULL, 10);
    file_t files[64];
    int nfiles = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "ash-%s-", ns_name);
    while ((e = readdir(d)) && nfiles < 64) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        file_t *f = &files[nfiles++];
        snprintf(f->path, sizeof f->path, "%s/%s", dir, e->d_name);
        f->registry = strcmp(e->d_name + strlen(prefix), "reg") == 0;
        struct stat st;
        stat(f->path, &st);
        f->size = (size_t)st.st_size;
        f->bytes = malloc(f->size);
        int fd = open(f->path, O_RDONLY);
        if (read(fd, f->bytes, f->size) != (ssize_t)f->size) return 2;
        close(fd);
    }
    closedir(d);
    /* the live entries' slots (state word == 2), for targeted pokes */
    size_t live[64];
    int nlive = 0;
    for (int i = 0; i < nfiles; i++)
        if (files[i].registry) {
            uint64_t cap;
            memcpy(&cap, files[i].bytes + 24, 8);
            for (uint64_t s = 0; s < cap && nlive < 64; s++) {
                uint64_t st;
                memcpy(&st, files[i].bytes + 4096 + s * 1024, 8);
                if (st == 2) live[nlive++] = (size_t)s;
            }
        }
    long hist[32] = {0};
    for (long it = 0; it < iters; it++) {
        for (int k = 0; k < nundo; k++) {
            const file_t *f = undo[k].f;
            if (undo[k].truncated) {
                put_file(f);
            } else {
                int fd = open(f->path, O_WRONLY);
                if (pwrite(fd, f->bytes + 8 * undo[k].word, 8, (off_t)(8 * undo[k].word)) != 8)
                    exit(2);
                close(fd);
            }
        }
        nundo = 0;
        int n = 1 + (int)(rnd() % 4);
        for (int k = 0; k < n; k++) {
            file_t *f = &files[rnd() % nfiles];
            uint64_t r = rnd() % 10;
            size_t word;
            if (!f->registry && r == 0) { /* truncate a segment */
                if (truncate(f->path, (off_t)(rnd() % (f->size + 1))) != 0) exit(2);
                undo[nundo].f = f;
                undo[nundo++].truncated = 1;
                continue;
            }
            if (f->registry) {
                if (r < 3 || nlive == 0) word = rnd() % 48;
                else word = 512 + live[rnd() % nlive] * 128 + rnd() % 128;
            } else {
                word = r < 7 ? rnd() % 24 : 128 + rnd() % 256;
            }
            uint64_t old = 0;
            if (8 * word + 8 <= f->size) memcpy(&old, f->bytes + 8 * word, 8);
            poke(f, word, pick_value(old, f->size));
        }
        ash_ns *ns = NULL;
        int rc = ash_open(ns_name, dir, &ns);
        hist[-rc & 31]++;
        if (rc != ASH_OK) continue;
        ash_view v1, v2;
        rc = ash_get(ns, name, 0, &v1);
        hist[-rc & 31]++;
        if (rc == ASH_OK) touch(&v1);
        rc = ash_get(ns, name, rnd() % 4, &v2);
        hist[-rc & 31]++;
        if (rc == ASH_OK) touch(&v2);
        ash_entry entries[8];
        long listed = ash_list(ns, entries, 8);
        if (listed < 0) hist[-listed & 31]++;
        uint64_t got;
        ash_wait(ns, name, rnd() % 8, 0, &got);
        ash_release(&v1);
        ash_release(&v2);
        ash_close(ns);
    }
    for (int i = 0; i < nfiles; i++) {
        put_file(&files[i]);
        free(files[i].bytes);
    }
    printf("fuzz iterations %ld:", iters);
    for (int i = 0; i < 32; i++)
        if (hist[i]) printf(" %s=%ld", ash_strerror(-i), hist[i]);
    printf("\n");
    return 0;
}
