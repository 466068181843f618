/*
 * libarrowshm: the reader side of docs/FORMAT.md (format version 2) in C11.
 *
 * Every word shared with other processes is accessed through <stdatomic.h> with the
 * ordering the numba kernel doing the same step uses (arrowshm/kernels/); the
 * comment at each access says which kernel it mirrors. Nothing read from shared
 * memory is trusted: every offset, length, count and index is checked against the
 * sizes this process got from fstat before it is used.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "arrowshm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- layout (docs/FORMAT.md; word indices = byte offset / 8) ------------------- */
#define REGISTRY_MAGIC 0x0100474552485341ULL /* "ASHREG\0\1" */
#define SEGMENT_MAGIC 0x0100474553485341ULL  /* "ASHSEG\0\1" */
#define HEADER_BYTES 4096u
#define ENTRY_BYTES 1024u
#define ENTRY_WORDS 128u
#define MAX_CAPACITY (1u << 20)

#define H_MAGIC 0
#define H_FORMAT_VERSION 1
#define H_HEADER_BYTES 2
#define H_CAPACITY 3
#define H_ENTRY_BYTES 4
#define H_PID_NS 10
#define H_BOOT_ID 12
#define H_EVENT_SEQ 32
#define H_EVENT_WAITERS 33
#define H_EVENT_FUTEX 34

#define E_STATE 0
#define E_GENERATION 1
#define E_NAME_HASH 2
#define E_KIND 3
#define E_NAME_LEN 4
#define E_NOTIFY_FUTEX 11
#define E_NOTIFY_WAITERS 12
#define E_NAME 16
#define NAME_WORDS 26
#define E_SEQ 42
#define E_RECORD 44
#define RECORD_WORDS 40

#define STATE_LIVE 2
#define KIND_DATASET 1

#define R_VERSION 0
#define R_SEGMENT_ID 1
#define R_DATA_BYTES 3
#define R_NUM_ROWS 4
#define R_SCHEMA_FP 5
#define R_UPDATED_NS 7
#define R_TTL_NS 8
#define R_N_HISTORY 14
#define R_HISTORY 16
#define MAX_HISTORY 16

#define S_MAGIC 0
#define S_FORMAT_VERSION 1
#define S_STATE 3
#define S_DATA_OFFSET 8
#define S_DATA_BYTES 9
#define S_NAME_HASH 10
#define S_VERSION 11
#define S_NUM_ROWS 12
#define S_SCHEMA_FP 13
#define S_GENERATION 14
#define S_PIN_OVERFLOW 16
#define S_BATCH_VERSION 18
#define S_BATCH_OFFSET 19
#define S_BATCH_BYTES 20
#define S_PINS 128
#define PIN_SLOTS 64
#define PIN_WORDS 4
#define STATE_MASK 0xFFu
#define SEG_SEALED 2
#define SEG_PUBLISHED 3

/* ---- tuning ---------------------------------------------------------------------- */
#define GET_RETRIES 64
#define SEQLOCK_SPINS (1 << 14)
#define STALL_NS 5000000000LL     /* a record mid-write this long: ASH_EBUSY (default of
                                     ARROWSHM_STALL_TIMEOUT_S, as on the Python side) */
#define WAIT_SLICE_NS 250000000LL /* ash_wait re-checks the entry this often */
#define WAIT_SPINS 2000
#define NAME_CACHE 64 /* direct-mapped name -> (slot, generation, stamp) */
#define IDLE_MAPS 8   /* unpinned mappings kept for the next get */

typedef _Atomic uint64_t au64;
typedef _Atomic uint32_t au32;

static inline au64 *W(uint8_t *base, size_t word) { return (au64 *)(base + 8 * word); }
static inline uint64_t ld_acq(au64 *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline uint64_t ld_rlx(au64 *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline uint64_t ld_sc(au64 *p) { return atomic_load_explicit(p, memory_order_seq_cst); }
static inline void st_rlx(au64 *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_relaxed); }
static inline void st_rel(au64 *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_release); }
static inline void st_sc(au64 *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_seq_cst); }
/* a seq_cst compare-and-swap returning the value found (kernels/atomics.py cas) */
static inline uint64_t cas_sc(au64 *p, uint64_t expected, uint64_t desired) {
    atomic_compare_exchange_strong_explicit(p, &expected, desired, memory_order_seq_cst,
                                            memory_order_seq_cst);
    return expected;
}
static inline void cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- errors ------------------------------------------------------------------------ */
static _Thread_local char g_msg[1024];

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *ash_errmsg(void) { return g_msg; }

const char *ash_strerror(int status) {
    switch (status) {
    case ASH_OK: return "ASH_OK: success";
    case ASH_ENOTFOUND: return "ASH_ENOTFOUND: not found";
    case ASH_ENOVERSION: return "ASH_ENOVERSION: version not retained";
    case ASH_EKIND: return "ASH_EKIND: not a dataset";
    case ASH_EACCES: return "ASH_EACCES: access denied (not this user's, or not private)";
    case ASH_ECORRUPT: return "ASH_ECORRUPT: impossible value in shared memory";
    case ASH_EFORMAT: return "ASH_EFORMAT: another format version";
    case ASH_EBUSY: return "ASH_EBUSY: kept changing, try again";
    case ASH_ETIMEDOUT: return "ASH_ETIMEDOUT: timed out";
    case ASH_EINVAL: return "ASH_EINVAL: invalid argument";
    case ASH_ENOMEM: return "ASH_ENOMEM: out of memory";
    case ASH_ESYS: return "ASH_ESYS: system call failed";
    case ASH_EFORKED: return "ASH_EFORKED: handle of the parent of a fork";
    case ASH_EINTR: return "ASH_EINTR: interrupted";
    case ASH_EWRONGDIR: return "ASH_EWRONGDIR: the namespace lives in another directory";
    default: return "unknown arrowshm status";
    }
}

/* ---- blake2b-64 (RFC 7693), the name hash ------------------------------------------ */
static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }
static inline uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#define B2_G(a, b, c, d, x, y)        \
    do {                              \
        v[a] = v[a] + v[b] + (x);     \
        v[d] = rotr64(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];           \
        v[b] = rotr64(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);     \
        v[d] = rotr64(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];           \
        v[b] = rotr64(v[b] ^ v[c], 63); \
    } while (0)

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++) m[i] = le64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t;
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

uint64_t ash_name_hash(const void *name, size_t len) {
    const uint8_t *p = (const uint8_t *)name;
    uint64_t h[8];
    uint8_t block[128];
    memcpy(h, B2_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ 8; /* digest 8 bytes, no key, fanout 1, depth 1 */
    uint64_t t = 0;
    while (len > 128) {
        t += 128;
        b2_compress(h, p, t, 0);
        p += 128;
        len -= 128;
    }
    memset(block, 0, sizeof block);
    if (len) memcpy(block, p, len);
    t += len;
    b2_compress(h, block, t, 1);
    return h[0] ? h[0] : 1; /* the digest's 8 bytes, little-endian; 0 marks an empty slot */
}

/* ---- process identity (arrowshm/_proc.py) ------------------------------------------- */
static atomic_uint g_fork_gen;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { atomic_fetch_add(&g_fork_gen, 1); }
static void install_atfork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

/* Start time of this process in clock ticks since boot: field 22 of /proc/self/stat
 * (the command name may hold spaces and parentheses: count after the last ')'). */
static uint64_t self_start_ticks(void) {
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    p += 2; /* field 3 */
    for (int field = 3; field < 22 && *p; field++) {
        p = strchr(p, ' ');
        if (!p) return 0;
        p++;
    }
    return strtoull(p, NULL, 10);
}

static int read_boot_id(uint64_t out[2]) {
    char buf[64], hex[33];
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    int k = 0;
    for (ssize_t i = 0; i < n && k < 32; i++)
        if (buf[i] != '-' && buf[i] != '\n') hex[k++] = buf[i];
    if (k != 32) return -1;
    uint8_t raw[16];
    for (int i = 0; i < 16; i++) {
        unsigned v;
        char two[3] = {hex[2 * i], hex[2 * i + 1], 0};
        if (sscanf(two, "%2x", &v) != 1) return -1;
        raw[i] = (uint8_t)v;
    }
    out[0] = le64(raw);
    out[1] = le64(raw + 8);
    return 0;
}

static uint64_t clock_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- names ---------------------------------------------------------------------------- */
static int valid_namespace(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 12) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) return 0;
    return 1;
}

/* arrowshm/_names.py validate_name: 1-200 of [A-Za-z0-9._-/:], no empty '/'-component,
 * no '..' component. */
static int valid_name(const char *s, size_t *len) {
    size_t n = strnlen(s, 201);
    if (n < 1 || n > 200) return 0;
    size_t comp = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '/' || c == 0) {
            if (comp == 0) return 0;
            if (comp == 2 && s[i - 1] == '.' && s[i - 2] == '.') return 0;
            comp = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == ':'))
            return 0;
        comp++;
    }
    *len = n;
    return 1;
}

static void base36(uint64_t v, char *out) {
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

/* ---- handles ---------------------------------------------------------------------------- */
typedef struct ash_map {
    struct ash_map *next;
    struct ash_ns *ns;
    uint64_t segment_id;
    uint8_t *base;
    size_t size;
    long refs;              /* views of this process holding the pin below */
    int pin_slot;           /* -1: the table was full (overflow flag set) */
    uint64_t pin_version;   /* what the pin was verified to hold */
    uint64_t pin_generation;
    uint64_t data_off, data_len, batch_off, batch_len, num_rows, schema_fp;
    uint64_t used;          /* LRU clock of idle mappings */
} ash_map;

typedef struct {
    char name[ASH_MAX_NAME_BYTES + 1];
    size_t len;
    int valid;
    uint64_t hash;          /* blake2b-64 */
    uint64_t slot, generation;
    int64_t stamp;          /* entry stamp when `version` was found current; -1 unknown */
    uint64_t version, segment_id, expires_ns;
} name_slot;

struct ash_ns {
    pthread_mutex_t mu;
    char name[13];
    char dir[PATH_MAX];
    int dirfd;
    uint8_t *reg;
    size_t reg_size;
    uint64_t capacity;
    uid_t euid;
    uint64_t pid, start;
    uint64_t stall_ns;
    unsigned fork_gen;
    long views;  /* views outstanding (keep the handle alive after ash_close) */
    int closing;
    ash_map *maps;
    uint64_t clock;
    name_slot names[NAME_CACHE];
};

const char *ash_ns_dir(const ash_ns *ns) { return ns ? ns->dir : NULL; }
const char *ash_ns_name(const ash_ns *ns) { return ns ? ns->name : NULL; }

static inline size_t ew(uint64_t slot, size_t field) {
    return HEADER_BYTES / 8 + (size_t)slot * ENTRY_WORDS + field;
}

/* ---- opening ------------------------------------------------------------------------------ */
static int open_object(ash_ns *ns, const char *file, int *fd_out, struct stat *st,
                       const char *what) {
    int fd = openat(ns->dirfd, file, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return fail(ASH_ENOTFOUND, "%s %s/%s does not exist", what, ns->dir, file);
        if (e == ELOOP)
            return fail(ASH_EACCES,
                        "%s %s/%s is a symbolic link, not an object of yours: never followed; "
                        "remove it (someone else may have planted it)", what, ns->dir, file);
        if (e == EACCES || e == EPERM)
            return fail(ASH_EACCES,
                        "%s %s/%s is not yours (%s): arrowshm never uses another user's objects; "
                        "run as its owner or use another namespace", what, ns->dir, file,
                        strerror(e));
        return fail(ASH_ESYS, "cannot open %s %s/%s: %s", what, ns->dir, file, strerror(e));
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return fail(ASH_ESYS, "cannot fstat %s/%s: %s", ns->dir, file, strerror(e));
    }
    if (!S_ISREG(st->st_mode) || st->st_uid != ns->euid) {
        close(fd);
        return fail(ASH_EACCES,
                    "%s %s/%s belongs to uid %u, not to you (uid %u), or is not a regular "
                    "file: arrowshm never reads another user's objects; ask its owner (or "
                    "root) to remove it if it should not be there", what, ns->dir, file,
                    (unsigned)st->st_uid, (unsigned)ns->euid);
    }
    *fd_out = fd;
    return ASH_OK;
}

static int check_registry(ash_ns *ns, const char *file, struct stat *st) {
    uint8_t *r = ns->reg;
    uint64_t magic = ld_acq(W(r, H_MAGIC)); /* stored last by the creator (release) */
    if (magic == 0)
        return fail(ASH_EBUSY, "registry %s/%s is still being created; try again", ns->dir, file);
    if (magic != REGISTRY_MAGIC)
        return fail(ASH_ECORRUPT,
                    "%s/%s is not an arrowshm registry (bad magic); remove it if no arrowshm "
                    "process uses it", ns->dir, file);
    uint64_t fmt = ld_rlx(W(r, H_FORMAT_VERSION));
    if (fmt != ASH_FORMAT_VERSION)
        return fail(ASH_EFORMAT,
                    "registry %s/%s has format version %llu, this library reads %d: use the "
                    "arrowshm version that matches, or another namespace", ns->dir, file,
                    (unsigned long long)fmt, ASH_FORMAT_VERSION);
    uint64_t cap = ld_rlx(W(r, H_CAPACITY));
    if (ld_rlx(W(r, H_HEADER_BYTES)) != HEADER_BYTES ||
        ld_rlx(W(r, H_ENTRY_BYTES)) != ENTRY_BYTES || cap < 1 || cap > MAX_CAPACITY ||
        (uint64_t)st->st_size < HEADER_BYTES + cap * ENTRY_BYTES)
        return fail(ASH_ECORRUPT,
                    "registry %s/%s has an impossible header (capacity %llu, size %lld); "
                    "remove it if no arrowshm process uses it", ns->dir, file,
                    (unsigned long long)cap, (long long)st->st_size);
    ns->capacity = cap;
    struct stat pst;
    uint64_t ours = stat("/proc/self/ns/pid", &pst) == 0 ? (uint64_t)pst.st_ino : 0;
    uint64_t theirs = ld_rlx(W(r, H_PID_NS));
    if (theirs != ours)
        return fail(ASH_EACCES,
                    "the registry %s/%s was made in another PID namespace (pid:[%llu]; this "
                    "process is in pid:[%llu]): its pids cannot be judged from here; share the "
                    "PID namespace (docker --pid=host / --pid=container:NAME) or use another "
                    "namespace (docs/SECURITY.md)", ns->dir, file,
                    (unsigned long long)theirs, (unsigned long long)ours);
    uint64_t boot[2] = {0, 0};
    read_boot_id(boot);
    if (ld_rlx(W(r, H_BOOT_ID)) != boot[0] || ld_rlx(W(r, H_BOOT_ID + 1)) != boot[1])
        return fail(ASH_EACCES,
                    "the registry %s/%s was made before the last reboot: the processes it "
                    "records are gone; remove the namespace's objects (rm %s/ash-%s-*) and "
                    "start again", ns->dir, file, ns->dir, ns->name);
    return ASH_OK;
}

/* ---- the namespace's directory (arrowshm/_shm/directory.py) -------------------------- */
#define SHM_DIR "/dev/shm"
#define MARKER_KEY "ARROWSHM_DIR="
#define MARKER_MAX 4096

/* Canonical form of `raw` into `out` (PATH_MAX): absolute, links resolved, /dev/shm
 * for /dev/shm itself, no trailing '/'. */
static int canonical_dir(const char *raw, char *out) {
    char tmp[PATH_MAX], shm[PATH_MAX];
    if (raw[0] != '/')
        return fail(ASH_EINVAL, "ARROWSHM_DIR=%.200s is not an absolute path; set it to the "
                    "directory that holds the namespace's segments, or unset it for /dev/shm",
                    raw);
    if (!realpath(raw, tmp)) {
        int e = errno;
        return fail(e == ENOENT ? ASH_ENOTFOUND : ASH_ESYS, "directory %.200s: %s", raw,
                    strerror(e));
    }
    if (realpath(SHM_DIR, shm) && strcmp(tmp, shm) == 0) {
        strcpy(out, SHM_DIR);
        return ASH_OK;
    }
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    memcpy(out, tmp, n + 1);
    return ASH_OK;
}

/* check_directory: it and every directory above it belong to this user or root and are
 * not writable by group/others unless sticky. */
static int check_dir(const char *dir, uid_t euid) {
    char path[PATH_MAX];
    strcpy(path, dir);
    for (;;) {
        struct stat st;
        if (lstat(path, &st) != 0)
            return fail(ASH_ESYS, "cannot stat %s (above %s): %s", path, dir, strerror(errno));
        if (S_ISLNK(st.st_mode))
            return fail(ASH_EACCES, "%s (above %s) is a symbolic link someone could swap", path,
                        dir);
        if (st.st_uid != 0 && st.st_uid != euid)
            return fail(ASH_EACCES, "%s: %s belongs to uid %u, who could replace the "
                        "namespace's segments; use a directory of yours (or root's)", dir, path,
                        (unsigned)st.st_uid);
        if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))
            return fail(ASH_EACCES, "%s: %s is writable by other users (mode %04o) and not "
                        "sticky, so they could replace the namespace's segments", dir, path,
                        (unsigned)(st.st_mode & 07777));
        if (strcmp(path, "/") == 0) return ASH_OK;
        char *slash = strrchr(path, '/');
        if (slash == path) path[1] = 0;
        else *slash = 0;
    }
}

/* The directory the namespace's marker names into `out` (1), or 0 when there is none. */
static int read_marker(const char *ns, uid_t euid, char *out) {
    char path[64], buf[MARKER_MAX + 2];
    snprintf(path, sizeof path, SHM_DIR "/ash-%s-reg.at", ns);
    ssize_t n = 0;
    for (int tries = 0; tries < 200; tries++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) return 0;
            return fail(ASH_EACCES, "%s is not a marker of yours (%s); remove it (someone else "
                        "may have planted it) or use another namespace", path, strerror(errno));
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != euid) {
            close(fd);
            return fail(ASH_EACCES, "%s is not a regular file of yours: arrowshm never trusts "
                        "another user's files; ask its owner (or root) to remove it", path);
        }
        n = read(fd, buf, MARKER_MAX + 1);
        close(fd);
        if (n > 0) break;
        struct timespec ts = {0, 5000000}; /* being written */
        nanosleep(&ts, NULL);
    }
    size_t key = strlen(MARKER_KEY);
    if (n <= 0 || n > MARKER_MAX || (size_t)n <= key + 1 || memcmp(buf, MARKER_KEY, key) != 0)
        return fail(ASH_ECORRUPT, "%s is not an arrowshm directory marker; remove it if no "
                    "process of namespace \"%s\" runs", path, ns);
    buf[n] = 0;
    char *value = buf + key;
    size_t len = strlen(value);
    if (len && value[len - 1] == '\n') value[--len] = 0;
    if (value[0] != '/' || strchr(value, '\n') || len >= PATH_MAX || len != (size_t)n - key - 1)
        return fail(ASH_ECORRUPT, "%s is not an arrowshm directory marker", path);
    memcpy(out, value, len + 1);
    return 1;
}

static int wrong_dir(const char *ns, const char *ours, const char *theirs) {
    int shm = strcmp(theirs, SHM_DIR) == 0;
    return fail(ASH_EWRONGDIR,
                "namespace \"%s\" keeps its segments in %s, but this handle looks in %s: %s%s "
                "(or pass that directory to ash_open)", ns, theirs, ours,
                shm ? "unset ARROWSHM_DIR" : "set ARROWSHM_DIR=", shm ? "" : theirs);
}

/* The namespace lives in `dir` (the reader's half of directory.py agree()). */
static int agree(const char *ns, const char *dir, uid_t euid) {
    char recorded[PATH_MAX];
    int rc = read_marker(ns, euid, recorded);
    if (rc < 0) return rc;
    if (strcmp(dir, SHM_DIR) == 0) return rc ? wrong_dir(ns, dir, recorded) : ASH_OK;
    if (rc == 0) {
        char reg[64];
        struct stat st;
        snprintf(reg, sizeof reg, SHM_DIR "/ash-%s-reg", ns);
        if (lstat(reg, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == euid)
            return wrong_dir(ns, dir, SHM_DIR);
        return fail(ASH_ENOTFOUND, "namespace \"%s\" has no registry in %s (no arrowshm "
                    "process has used it there yet): put something into it first", ns, dir);
    }
    return strcmp(recorded, dir) == 0 ? ASH_OK : wrong_dir(ns, dir, recorded);
}

int ash_open(const char *namespace_, const char *dir, ash_ns **out) {
    if (!out) return fail(ASH_EINVAL, "ash_open: out is NULL");
    *out = NULL;
    pthread_once(&g_atfork_once, install_atfork);
    if (!namespace_) {
        namespace_ = getenv("ARROWSHM_NAMESPACE");
        if (!namespace_ || !*namespace_) namespace_ = "default";
    }
    if (!valid_namespace(namespace_))
        return fail(ASH_EINVAL, "invalid namespace \"%.40s\": use 1-12 characters of a-z0-9",
                    namespace_);
    char canon[PATH_MAX];
    if (!dir) {
        dir = getenv("ARROWSHM_DIR");
        while (dir && (*dir == ' ' || *dir == '\t')) dir++;
        if (!dir || !*dir) dir = SHM_DIR;
    }
    if (strlen(dir) >= PATH_MAX) return fail(ASH_EINVAL, "directory path too long");
    int rc = canonical_dir(dir, canon);
    uid_t euid = geteuid();
    if (rc == ASH_OK && strcmp(canon, SHM_DIR) != 0) rc = check_dir(canon, euid);
    if (rc == ASH_OK) rc = agree(namespace_, canon, euid);
    if (rc != ASH_OK) return rc;
    dir = canon;
    ash_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return fail(ASH_ENOMEM, "out of memory");
    strcpy(ns->name, namespace_);
    strcpy(ns->dir, dir);
    ns->euid = euid;
    ns->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ns->dirfd < 0) {
        int e = errno;
        free(ns);
        return fail(e == ENOENT ? ASH_ENOTFOUND : ASH_ESYS, "cannot open directory %s: %s",
                    dir, strerror(e));
    }
    char file[64];
    snprintf(file, sizeof file, "ash-%s-reg", namespace_);
    int fd;
    struct stat st;
    rc = open_object(ns, file, &fd, &st, "registry");
    if (rc == ASH_ENOTFOUND)
        fail(rc, "namespace \"%s\" has no registry in %s (no arrowshm process has used it "
                 "yet): put something into it first", namespace_, dir);
    if (rc == ASH_OK && (st.st_mode & 077)) {
        close(fd);
        rc = fail(ASH_EACCES,
                  "registry %s/%s has mode %03o: other users could read or change it, so "
                  "arrowshm will not use it; remove it once no arrowshm process of this "
                  "namespace runs", dir, file, (unsigned)(st.st_mode & 0777));
    }
    if (rc == ASH_OK && (uint64_t)st.st_size < HEADER_BYTES) {
        close(fd);
        rc = fail(ASH_EBUSY, "registry %s/%s is still being created; try again", dir, file);
    }
    if (rc != ASH_OK) {
        close(ns->dirfd);
        free(ns);
        return rc;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        close(ns->dirfd);
        free(ns);
        return fail(ASH_ESYS, "cannot map registry %s/%s: %s", dir, file, strerror(e));
    }
    ns->reg = p;
    ns->reg_size = (size_t)st.st_size;
    rc = check_registry(ns, file, &st);
    if (rc != ASH_OK) {
        munmap(ns->reg, ns->reg_size);
        close(ns->dirfd);
        free(ns);
        return rc;
    }
    pthread_mutex_init(&ns->mu, NULL);
    ns->stall_ns = STALL_NS;
    const char *stall = getenv("ARROWSHM_STALL_TIMEOUT_S");
    if (stall && *stall) {
        char *end;
        double s = strtod(stall, &end);
        if (end != stall && s >= 0 && s < 1e6) ns->stall_ns = (uint64_t)(s * 1e9);
    }
    ns->pid = (uint64_t)getpid();
    ns->start = self_start_ticks();
    ns->fork_gen = atomic_load(&g_fork_gen);
    *out = ns;
    return ASH_OK;
}

static void unmap(ash_map *m) {
    munmap(m->base, m->size);
    free(m);
}

static void ns_free(ash_ns *ns) {
    for (ash_map *m = ns->maps, *next; m; m = next) {
        next = m->next;
        unmap(m);
    }
    munmap(ns->reg, ns->reg_size);
    close(ns->dirfd);
    pthread_mutex_destroy(&ns->mu);
    free(ns);
}

void ash_close(ash_ns *ns) {
    if (!ns) return;
    /* in a fork child: nothing (its views' release is a no-op too, and the mutex may be
     * held by a thread the fork left behind); the memory is the child's own copy */
    if (ns->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed)) return;
    pthread_mutex_lock(&ns->mu);
    ns->closing = 1;
    int last = ns->views == 0;
    pthread_mutex_unlock(&ns->mu);
    if (last) ns_free(ns);
}

/* ---- registry reads --------------------------------------------------------------------- */

/* kernels/registry.py registry_find: the LIVE entry named `name`, or -1. */
static long registry_find(ash_ns *ns, const char *name, size_t len, uint64_t hash,
                          uint64_t *gen_out) {
    uint8_t *r = ns->reg;
    uint64_t key[NAME_WORDS] = {0};
    memcpy(key, name, len);
    size_t nw = (len + 7) / 8;
    uint64_t cap = ns->capacity;
    uint64_t home = hash % cap;
    for (uint64_t probes = 0; probes < cap;) {
        uint64_t slot = (home + probes) % cap;
        uint64_t g1 = ld_acq(W(r, ew(slot, E_GENERATION)));
        uint64_t state = ld_acq(W(r, ew(slot, E_STATE)));
        if (state == 0) return -1;
        int match = 0;
        if (state == STATE_LIVE && ld_rlx(W(r, ew(slot, E_NAME_HASH))) == hash &&
            ld_rlx(W(r, ew(slot, E_NAME_LEN))) == len) {
            match = 1;
            for (size_t k = 0; k < nw; k++)
                if (ld_rlx(W(r, ew(slot, E_NAME + k))) != key[k]) {
                    match = 0;
                    break;
                }
        }
        atomic_thread_fence(memory_order_acquire);
        if (ld_rlx(W(r, ew(slot, E_GENERATION))) != g1) continue; /* changed: look again */
        if (match) {
            *gen_out = g1;
            return (long)slot;
        }
        probes++;
    }
    return -1;
}

/* kernels/registry.py registry_entry_stamp: the record's seqlock sequence while the
 * entry is LIVE under `gen`; -1 not LIVE / other generation; -2 mid-write. */
static int64_t entry_stamp(ash_ns *ns, uint64_t slot, uint64_t gen) {
    uint8_t *r = ns->reg;
    uint64_t g1 = ld_acq(W(r, ew(slot, E_GENERATION)));
    uint64_t state = ld_acq(W(r, ew(slot, E_STATE)));
    uint64_t seq = ld_acq(W(r, ew(slot, E_SEQ)));
    uint64_t g2 = ld_acq(W(r, ew(slot, E_GENERATION)));
    if (g1 != g2 || g1 != gen || state != STATE_LIVE) return -1;
    if (seq & 1) return -2;
    return (int64_t)(seq & 0x7FFFFFFFFFFFFFFFULL);
}

/* One attempt of kernels/seqlock.py seqlock_try_read: the even sequence, or -1. */
static int64_t seqlock_read_once(uint8_t *r, size_t base, uint64_t *dst) {
    uint64_t s1 = ld_acq(W(r, base));
    if (s1 & 1) return -1;
    for (size_t k = 0; k < RECORD_WORDS; k++) dst[k] = ld_rlx(W(r, base + 2 + k));
    atomic_thread_fence(memory_order_acquire);
    if (ld_rlx(W(r, base)) != s1) return -1;
    return (int64_t)(s1 & 0x7FFFFFFFFFFFFFFFULL);
}

/* The record of entry `slot`, spinning then sleeping while a write is in progress;
 * ASH_EBUSY after STALL_NS of an odd sequence (a stopped writer, or a dead one that
 * the next Python writer or `arrowshm gc` recovers: readers never write records). */
static int read_record(ash_ns *ns, uint64_t slot, uint64_t *rec) {
    size_t base = ew(slot, E_SEQ);
    uint64_t deadline = 0;
    for (;;) {
        for (int i = 0; i < SEQLOCK_SPINS; i++) {
            if (seqlock_read_once(ns->reg, base, rec) >= 0) return ASH_OK;
            cpu_pause();
        }
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (!deadline) deadline = now + ns->stall_ns;
        else if (now > deadline)
            return fail(ASH_EBUSY,
                        "entry %llu of registry %s/ash-%s-reg has been mid-write for over %.3g s "
                        "(ARROWSHM_STALL_TIMEOUT_S): its writer is stopped, or died (the next "
                        "writer or `arrowshm gc` recovers a dead one)", (unsigned long long)slot,
                        ns->dir, ns->name, (double)ns->stall_ns / 1e9);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static name_slot *name_cache(ash_ns *ns, const char *name, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a: only picks the cache slot */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
    name_slot *c = &ns->names[h % NAME_CACHE];
    if (!c->valid || c->len != len || memcmp(c->name, name, len) != 0) {
        memcpy(c->name, name, len);
        c->name[len] = 0;
        c->len = len;
        c->hash = ash_name_hash(name, len);
        c->valid = 1;
        c->slot = UINT64_MAX; /* not looked up yet */
        c->stamp = -1;
    }
    return c;
}

/* (slot, generation) of the cached name, looked up when unknown; -1 if not LIVE. */
static int lookup(ash_ns *ns, name_slot *c) {
    if (c->slot != UINT64_MAX) return 0;
    uint64_t gen = 0;
    long slot = registry_find(ns, c->name, c->len, c->hash, &gen);
    if (slot < 0) return -1;
    c->slot = (uint64_t)slot;
    c->generation = gen;
    c->stamp = -1;
    return 0;
}

static void forget(name_slot *c) {
    c->slot = UINT64_MAX;
    c->stamp = -1;
}

/* ---- segments and pins ------------------------------------------------------------------- */
static int map_segment(ash_ns *ns, uint64_t sid, ash_map **out) {
    for (ash_map *m = ns->maps; m; m = m->next)
        if (m->segment_id == sid) {
            *out = m;
            return ASH_OK;
        }
    char file[64], b36[16];
    base36(sid, b36);
    snprintf(file, sizeof file, "ash-%s-%s", ns->name, b36);
    int fd;
    struct stat st;
    int rc = open_object(ns, file, &fd, &st, "segment");
    if (rc != ASH_OK) return rc;
    if ((uint64_t)st.st_size < HEADER_BYTES) {
        close(fd);
        return fail(ASH_ECORRUPT, "segment %s/%s is %lld bytes, smaller than its header",
                    ns->dir, file, (long long)st.st_size);
    }
    /* the payload read-only, the header (pin table) writable */
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    if (p != MAP_FAILED && mprotect(p, HEADER_BYTES, PROT_READ | PROT_WRITE) != 0) {
        e = errno;
        munmap(p, (size_t)st.st_size);
        p = MAP_FAILED;
    }
    close(fd);
    if (p == MAP_FAILED)
        return fail(ASH_ESYS, "cannot map segment %s/%s: %s", ns->dir, file, strerror(e));
    ash_map *m = calloc(1, sizeof *m);
    if (!m) {
        munmap(p, (size_t)st.st_size);
        return fail(ASH_ENOMEM, "out of memory");
    }
    m->ns = ns;
    m->segment_id = sid;
    m->base = p;
    m->size = (size_t)st.st_size;
    m->pin_slot = -1;
    m->next = ns->maps;
    ns->maps = m;
    *out = m;
    return ASH_OK;
}

static void drop_map(ash_ns *ns, ash_map *m) {
    for (ash_map **pp = &ns->maps; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            unmap(m);
            return;
        }
}

/* Keep at most IDLE_MAPS unpinned mappings (least recently used go first): an idle
 * mapping of a segment gc unlinked still holds its memory. */
static void trim_idle(ash_ns *ns) {
    for (;;) {
        int idle = 0;
        ash_map *oldest = NULL;
        for (ash_map *m = ns->maps; m; m = m->next)
            if (m->refs == 0) {
                idle++;
                if (!oldest || m->used < oldest->used) oldest = m;
            }
        if (idle <= IDLE_MAPS) return;
        drop_map(ns, oldest);
    }
}

/* kernels/pins.py unpin */
static void unpin(ash_map *m, uint64_t pid) {
    if (m->pin_slot < 0) return;
    size_t base = S_PINS + (size_t)m->pin_slot * PIN_WORDS;
    if (ld_rlx(W(m->base, base)) == pid) {
        st_rlx(W(m->base, base + 2), 0);
        st_rlx(W(m->base, base + 1), 0);
        cas_sc(W(m->base, base), pid, 0);
    }
    m->pin_slot = -1;
}

#define PIN_OK 0
#define PIN_NOT_A_SEGMENT -301
#define PIN_BAD_FORMAT -302
#define PIN_STALE -303
#define PIN_BAD_OFFSETS -304

/* kernels/pins.py pin_version: claim a pin slot, then re-check the segment holds
 * `version` of the entry (`generation`, `name_hash`); on PIN_OK the mapping holds it. */
static int pin_version(ash_ns *ns, ash_map *m, uint64_t version, uint64_t generation,
                       uint64_t name_hash) {
    uint8_t *b = m->base;
    if (m->size < HEADER_BYTES || ld_rlx(W(b, S_MAGIC)) != SEGMENT_MAGIC) return PIN_NOT_A_SEGMENT;
    if (ld_rlx(W(b, S_FORMAT_VERSION)) != ASH_FORMAT_VERSION) return PIN_BAD_FORMAT;
    int slot = -1;
    for (int s = 0; s < PIN_SLOTS; s++) {
        size_t base = S_PINS + (size_t)s * PIN_WORDS;
        if (ld_rlx(W(b, base)) == 0 && cas_sc(W(b, base), 0, ns->pid) == 0) {
            st_rlx(W(b, base + 2), clock_ns(CLOCK_REALTIME)); /* since */
            st_rel(W(b, base + 1), ns->start);                /* a scanner reads start first */
            slot = s;
            break;
        }
    }
    if (slot < 0) st_sc(W(b, S_PIN_OVERFLOW), 1); /* never recycled from now on */
    m->pin_slot = slot;
    uint64_t state = ld_sc(W(b, S_STATE)); /* after the claim: the Dekker pair */
    uint64_t st = state & STATE_MASK;
    if ((st != SEG_SEALED && st != SEG_PUBLISHED) || ld_rlx(W(b, S_VERSION)) != version ||
        ld_rlx(W(b, S_GENERATION)) != generation || ld_rlx(W(b, S_NAME_HASH)) != name_hash) {
        unpin(m, ns->pid);
        return PIN_STALE;
    }
    uint64_t off = ld_rlx(W(b, S_DATA_OFFSET)), n = ld_rlx(W(b, S_DATA_BYTES));
    if (off < HEADER_BYTES || off > m->size || n > m->size - off || (off & 7)) {
        unpin(m, ns->pid);
        return PIN_BAD_OFFSETS;
    }
    uint64_t boff = ld_rlx(W(b, S_BATCH_OFFSET)), blen = ld_rlx(W(b, S_BATCH_BYTES));
    if (ld_rlx(W(b, S_BATCH_VERSION)) != version || blen == 0 || boff > n || blen > n - boff ||
        (boff & 7))
        boff = blen = 0;
    m->pin_version = version;
    m->pin_generation = generation;
    m->data_off = off;
    m->data_len = n;
    m->batch_off = boff;
    m->batch_len = blen;
    m->num_rows = ld_rlx(W(b, S_NUM_ROWS));
    m->schema_fp = ld_rlx(W(b, S_SCHEMA_FP));
    return PIN_OK;
}

static void fill_view(ash_ns *ns, ash_map *m, ash_view *v) {
    m->refs++;
    ns->views++;
    m->used = ++ns->clock;
    v->data = m->base + m->data_off;
    v->length = m->data_len;
    v->version = m->pin_version;
    v->num_rows = m->num_rows;
    v->schema_fp = m->schema_fp;
    v->segment_id = m->segment_id;
    v->batch_offset = m->batch_off;
    v->batch_length = m->batch_len;
    v->_pin = m;
}

/* ---- get ----------------------------------------------------------------------------------- */
static int get_locked(ash_ns *ns, name_slot *c, uint64_t version, ash_view *view) {
    uint8_t *r = ns->reg;
    uint64_t rec[RECORD_WORDS];
    /* fast path: the entry is unchanged since this process found `c->version` current */
    if (version == 0 && c->stamp >= 0 && c->slot != UINT64_MAX &&
        entry_stamp(ns, c->slot, c->generation) == c->stamp &&
        (c->expires_ns == UINT64_MAX || clock_ns(CLOCK_REALTIME) <= c->expires_ns)) {
        for (ash_map *m = ns->maps; m; m = m->next)
            if (m->segment_id == c->segment_id) {
                if (m->refs > 0 && m->pin_version == c->version &&
                    m->pin_generation == c->generation) {
                    fill_view(ns, m, view);
                    return ASH_OK;
                }
                if (m->refs == 0 &&
                    pin_version(ns, m, c->version, c->generation,
                                ld_rlx(W(r, ew(c->slot, E_NAME_HASH)))) == PIN_OK) {
                    fill_view(ns, m, view);
                    return ASH_OK;
                }
                break;
            }
    }
    for (int attempt = 0; attempt < GET_RETRIES; attempt++) {
        if (attempt > 8) {
            struct timespec ts = {0, 100000L * attempt};
            nanosleep(&ts, NULL);
        }
        if (lookup(ns, c) != 0)
            return fail(ASH_ENOTFOUND, "\"%s\" does not exist in namespace \"%s\"; `arrowshm ls` "
                        "lists what does", c->name, ns->name);
        uint64_t slot = c->slot, gen = c->generation;
        int64_t before = entry_stamp(ns, slot, gen);
        if (before == -1) { /* deleted or reused since the lookup */
            forget(c);
            continue;
        }
        int rc = read_record(ns, slot, rec);
        if (rc != ASH_OK) return rc;
        if (ld_acq(W(r, ew(slot, E_STATE))) != STATE_LIVE ||
            ld_acq(W(r, ew(slot, E_GENERATION))) != gen) {
            forget(c);
            continue;
        }
        uint64_t kind = ld_rlx(W(r, ew(slot, E_KIND)));
        if (kind != KIND_DATASET)
            return fail(ASH_EKIND, "\"%s\" is a %s, not a dataset; read it with "
                        "arrowshm.StreamReader", c->name, kind == 2 ? "stream" : "kind-unknown entry");
        uint64_t current = rec[R_VERSION];
        if (current == 0)
            return fail(ASH_ENOTFOUND, "\"%s\" has no version yet", c->name);
        uint64_t ttl = rec[R_TTL_NS], expires = UINT64_MAX;
        if (ttl) {
            expires = rec[R_UPDATED_NS] + ttl < rec[R_UPDATED_NS] ? UINT64_MAX
                                                                  : rec[R_UPDATED_NS] + ttl;
            if (clock_ns(CLOCK_REALTIME) > expires)
                return fail(ASH_ENOTFOUND, "\"%s\" expired (its ttl passed) and is being removed",
                            c->name);
        }
        uint64_t nh = rec[R_N_HISTORY];
        if (nh < 1 || nh > MAX_HISTORY || rec[R_HISTORY] != rec[R_SEGMENT_ID])
            return fail(ASH_ECORRUPT, "entry \"%s\" has an impossible history (%llu versions)",
                        c->name, (unsigned long long)nh);
        uint64_t want = version ? version : current, sid;
        if (want > current || current - want >= nh) {
            uint64_t lo = current - nh + 1;
            return fail(ASH_ENOVERSION,
                        "\"%s\" version %llu is not retained: versions %llu..%llu are (put with "
                        "a larger retain= to keep more)", c->name, (unsigned long long)want,
                        (unsigned long long)lo, (unsigned long long)current);
        }
        sid = rec[R_HISTORY + (current - want)];
        uint64_t name_hash = ld_rlx(W(r, ew(slot, E_NAME_HASH)));
        ash_map *m = NULL;
        rc = map_segment(ns, sid, &m);
        if (rc == ASH_ENOTFOUND) { /* retired since the record was read: read it again */
            forget(c);
            continue;
        }
        if (rc != ASH_OK) return rc;
        if (m->refs > 0) {
            /* this process pins it already: it cannot have been recycled since */
            if (m->pin_version != want || m->pin_generation != gen) {
                forget(c);
                continue;
            }
        } else {
            int p = pin_version(ns, m, want, gen, name_hash);
            if (p == PIN_STALE) { /* recycled, being rewritten or reclaimed: map afresh */
                drop_map(ns, m);
                forget(c);
                continue;
            }
            if (p != PIN_OK) {
                char b36[16];
                base36(sid, b36);
                int code = p == PIN_BAD_FORMAT ? ASH_EFORMAT : ASH_ECORRUPT;
                uint64_t found = ld_rlx(W(m->base, S_FORMAT_VERSION));
                drop_map(ns, m);
                if (code == ASH_EFORMAT)
                    return fail(code, "segment %s/ash-%s-%s (dataset \"%s\" version %llu) has "
                                "format version %llu, this library reads %d", ns->dir, ns->name,
                                b36, c->name, (unsigned long long)want,
                                (unsigned long long)found, ASH_FORMAT_VERSION);
                return fail(code, "segment %s/ash-%s-%s (dataset \"%s\" version %llu) %s; "
                            "delete the dataset and put it again", ns->dir, ns->name, b36,
                            c->name, (unsigned long long)want,
                            p == PIN_NOT_A_SEGMENT ? "is not an arrowshm segment (bad magic)"
                                                   : "has payload offsets outside the segment");
            }
        }
        fill_view(ns, m, view);
        /* arm the fast path when the stamp taken before the record read still holds */
        if (want == current && before >= 0 && entry_stamp(ns, slot, gen) == before) {
            c->stamp = before;
            c->version = want;
            c->segment_id = sid;
            c->expires_ns = expires;
        } else if (want == current) {
            c->stamp = -1;
        }
        return ASH_OK;
    }
    return fail(ASH_EBUSY, "\"%s\" kept changing while it was read; try again", c->name);
}

static int check_ns(ash_ns *ns) {
    if (ns->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed))
        return fail(ASH_EFORKED, "this namespace handle was opened by the parent of a fork(); "
                    "open the namespace again in the child");
    return ASH_OK;
}

int ash_get(ash_ns *ns, const char *name, uint64_t version, ash_view *view) {
    if (!view) return fail(ASH_EINVAL, "ash_get: view is NULL");
    memset(view, 0, sizeof *view);
    size_t len;
    if (!ns || !name) return fail(ASH_EINVAL, "ash_get: ns or name is NULL");
    if (!valid_name(name, &len))
        return fail(ASH_EINVAL, "invalid name \"%.210s\": use 1-200 characters of letters, "
                    "digits and . _ - / : with no empty or '..' component", name);
    int rc = check_ns(ns); /* before the mutex: a fork child may find it held forever */
    if (rc != ASH_OK) return rc;
    pthread_mutex_lock(&ns->mu);
    name_slot *c = name_cache(ns, name, len);
    rc = get_locked(ns, c, version, view);
    if (rc != ASH_OK) memset(view, 0, sizeof *view);
    trim_idle(ns);
    pthread_mutex_unlock(&ns->mu);
    return rc;
}

void ash_release(ash_view *view) {
    if (!view || !view->_pin) return;
    ash_map *m = view->_pin;
    ash_ns *ns = m->ns;
    memset(view, 0, sizeof *view);
    /* a fork child never touches its parent's pins (nor the mutex, which a thread of
     * the parent may have held at the fork): the parent releases them */
    if (ns->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed)) return;
    pthread_mutex_lock(&ns->mu);
    if (--m->refs == 0) {
        unpin(m, ns->pid);
        trim_idle(ns);
    }
    int last = --ns->views == 0 && ns->closing;
    pthread_mutex_unlock(&ns->mu);
    if (last) ns_free(ns);
}

/* ---- wait ----------------------------------------------------------------------------------- */
static long futex_wait(au32 *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000LL), (long)(timeout_ns % 1000000000LL)};
    /* shared (no FUTEX_PRIVATE_FLAG): the word lives in a mapping of another process */
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, &ts, NULL, 0);
    return r < 0 ? -errno : r;
}

/* kernels/futex.py wait_until_greater: the value once > threshold, or -1 on timeout. */
static int64_t wait_until_greater(uint8_t *base, size_t value_idx, uint64_t threshold,
                                  size_t futex_word, size_t waiters_idx, int64_t timeout_ns) {
    int64_t thr = (int64_t)threshold;
    for (int i = 0; i < WAIT_SPINS; i++) {
        int64_t v = (int64_t)ld_acq(W(base, value_idx));
        if (v > thr) return v;
        cpu_pause();
    }
    uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ns;
    au32 *f = (au32 *)(base + 8 * futex_word); /* the low half of the word */
    au64 *waiters = W(base, waiters_idx);
    for (;;) {
        uint32_t fv = atomic_load_explicit(f, memory_order_seq_cst);
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        int64_t v = (int64_t)ld_sc(W(base, value_idx));
        if (v > thr) {
            atomic_fetch_sub_explicit(waiters, 1, memory_order_seq_cst);
            return v;
        }
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= deadline) {
            atomic_fetch_sub_explicit(waiters, 1, memory_order_seq_cst);
            return -1;
        }
        futex_wait(f, fv, (int64_t)(deadline - now));
        atomic_fetch_sub_explicit(waiters, 1, memory_order_seq_cst);
    }
}

int ash_wait(ash_ns *ns, const char *name, uint64_t after_version, int64_t timeout_ns,
             uint64_t *version_out) {
    size_t len;
    if (!ns || !name) return fail(ASH_EINVAL, "ash_wait: ns or name is NULL");
    if (!valid_name(name, &len)) return fail(ASH_EINVAL, "invalid name \"%.210s\"", name);
    if (after_version > INT64_MAX) return fail(ASH_EINVAL, "after_version is too large");
    uint64_t start = clock_ns(CLOCK_MONOTONIC);
    uint8_t *r = ns->reg;
    for (;;) {
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        int64_t remaining = timeout_ns < 0 ? INT64_MAX : (int64_t)(start + (uint64_t)timeout_ns - now);
        uint64_t event = ld_acq(W(r, H_EVENT_SEQ)); /* before the lookup: no missed event */
        int rc = check_ns(ns);
        if (rc != ASH_OK) return rc;
        uint64_t slot = 0, gen = 0;
        int found = 0;
        pthread_mutex_lock(&ns->mu);
        name_slot *c = name_cache(ns, name, len);
        if (c->slot != UINT64_MAX && entry_stamp(ns, c->slot, c->generation) == -1) forget(c);
        if (lookup(ns, c) == 0) {
            found = 1;
            slot = c->slot;
            gen = c->generation;
        }
        pthread_mutex_unlock(&ns->mu);
        int64_t slice = remaining < WAIT_SLICE_NS ? remaining : WAIT_SLICE_NS;
        if (found) {
            uint64_t kind = ld_rlx(W(r, ew(slot, E_KIND)));
            if (kind != KIND_DATASET)
                return fail(ASH_EKIND, "\"%s\" is not a dataset (kind %llu)", name,
                            (unsigned long long)kind);
            uint64_t v = ld_acq(W(r, ew(slot, E_RECORD + R_VERSION)));
            if (v > after_version && ld_acq(W(r, ew(slot, E_GENERATION))) == gen &&
                ld_acq(W(r, ew(slot, E_STATE))) == STATE_LIVE) {
                if (version_out) *version_out = v;
                return ASH_OK;
            }
            if (remaining <= 0) break;
            wait_until_greater(r, ew(slot, E_RECORD + R_VERSION), after_version,
                               ew(slot, E_NOTIFY_FUTEX), ew(slot, E_NOTIFY_WAITERS), slice);
        } else {
            if (remaining <= 0) break;
            wait_until_greater(r, H_EVENT_SEQ, event, H_EVENT_FUTEX, H_EVENT_WAITERS, slice);
        }
    }
    return fail(ASH_ETIMEDOUT, "no version of \"%s\" newer than %llu within %.3f s", name,
                (unsigned long long)after_version, (double)timeout_ns / 1e9);
}

/* ---- list ------------------------------------------------------------------------------------ */
long ash_list(ash_ns *ns, ash_entry *out, size_t cap) {
    if (!ns || (!out && cap)) return fail(ASH_EINVAL, "ash_list: ns is NULL, or out is NULL");
    int rc = check_ns(ns);
    if (rc != ASH_OK) return rc;
    uint8_t *r = ns->reg;
    long n = 0;
    uint64_t rec[RECORD_WORDS];
    for (uint64_t slot = 0; slot < ns->capacity; slot++) {
        if (ld_acq(W(r, ew(slot, E_STATE))) != STATE_LIVE) continue;
        for (int tries = 0; tries < 100; tries++) {
            uint64_t g1 = ld_acq(W(r, ew(slot, E_GENERATION)));
            if (ld_acq(W(r, ew(slot, E_STATE))) != STATE_LIVE) break;
            uint64_t len = ld_rlx(W(r, ew(slot, E_NAME_LEN)));
            if (len < 1 || len > ASH_MAX_NAME_BYTES) break; /* impossible: skip the entry */
            uint64_t words[NAME_WORDS];
            for (size_t k = 0; k < NAME_WORDS; k++) words[k] = ld_rlx(W(r, ew(slot, E_NAME + k)));
            uint64_t kind = ld_rlx(W(r, ew(slot, E_KIND)));
            int64_t seq = -1;
            for (int i = 0; i < SEQLOCK_SPINS && seq < 0; i++) {
                seq = seqlock_read_once(r, ew(slot, E_SEQ), rec);
                if (seq < 0) cpu_pause();
            }
            if (seq < 0) break; /* mid-write for long: skip */
            atomic_thread_fence(memory_order_acquire);
            if (ld_rlx(W(r, ew(slot, E_GENERATION))) != g1) continue;
            if ((size_t)n < cap) {
                ash_entry *e = &out[n];
                memcpy(e->name, words, len);
                e->name[len] = 0;
                e->kind = (int)(kind & 0xFF);
                e->version = rec[R_VERSION];
                e->num_rows = rec[R_NUM_ROWS];
                e->data_bytes = rec[R_DATA_BYTES];
                e->schema_fp = rec[R_SCHEMA_FP];
                e->updated_ns = rec[R_UPDATED_NS];
            }
            n++;
            break;
        }
    }
    return n;
}
