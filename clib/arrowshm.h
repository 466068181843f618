/*
 * libarrowshm: a dependency-free C11 reader of arrowshm namespaces (format version 2).
 *
 * A Python process puts Arrow tables into POSIX shared memory with `arrowshm.put`;
 * this library finds a dataset by name, pins one version of it and hands out a view
 * of its Arrow IPC stream *in place* (no copy): any Arrow implementation can read
 * the stream from `view.data`. docs/FORMAT.md is the protocol implemented here,
 * docs/OTHER_LANGUAGES.md the user's guide.
 *
 * Contract (see docs/OTHER_LANGUAGES.md, "The contract"):
 *  - A view stays valid, and its bytes never change, until ash_release(&view):
 *    it holds a pin in the version's segment header, which keeps every writer from
 *    recycling the segment; the mapping is kept until the last view of it goes.
 *  - Never write through view.data (the payload is mapped read-only: a write is SIGSEGV).
 *  - Release every view you got, once; a view does not survive fork() (the child must
 *    not use its parent's handle or views: ash_get & co. return ASH_EFORKED there, and
 *    ash_release/ash_close do nothing; it opens its own namespace).
 *  - A killed reader's pins are reaped by `arrowshm gc` (pins record pid + start time).
 *
 * Thread safety: every function may be called from any thread; an ash_ns serializes
 * its callers with a mutex (a get holds it for well under a microsecond on the fast
 * path). ash_release may run on another thread than the ash_get of its view.
 *
 * Memory ordering (C11 <stdatomic.h>, the orderings of the numba kernels of
 * arrowshm/kernels/, which docs/FORMAT.md states): see each function below.
 */
#ifndef ARROWSHM_H
#define ARROWSHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ASH_FORMAT_VERSION 2
#define ASH_MAX_NAME_BYTES 208

/* Status codes: 0 success, negative failure. ash_strerror() names them; ash_errmsg()
 * gives the calling thread's last message, with the details and what to do. */
enum ash_status {
    ASH_OK = 0,
    ASH_ENOTFOUND = -1,  /* no registry, no such name, no version yet, or expired (ttl) */
    ASH_ENOVERSION = -2, /* that version is not retained (any more) */
    ASH_EKIND = -3,      /* the name is a stream, not a dataset */
    ASH_EACCES = -4,     /* another user's object, open mode, a link, another PID namespace
                            or boot: never used */
    ASH_ECORRUPT = -5,   /* an impossible value read from shared memory */
    ASH_EFORMAT = -6,    /* another format version */
    ASH_EBUSY = -7,      /* the entry kept changing or stayed mid-write: try again */
    ASH_ETIMEDOUT = -8,  /* ash_wait: no newer version within the timeout */
    ASH_EINVAL = -9,     /* a bad argument (name, namespace, NULL pointer, view) */
    ASH_ENOMEM = -10,    /* out of memory */
    ASH_ESYS = -11,      /* a system call failed (the message has errno's text) */
    ASH_EFORKED = -12,   /* the namespace handle belongs to the parent of a fork() */
    ASH_EINTR = -13,     /* (reserved: ash_wait retries interrupted sleeps itself) */
    ASH_EWRONGDIR = -14  /* the namespace lives in another directory (ARROWSHM_DIR): the
                            message names the value to set */
};

typedef struct ash_ns ash_ns;

/* A pinned, read-only view of one version's Arrow IPC stream. Fields are read-only
 * for the caller; `_pin` is private. A zeroed view is "empty" (ash_release is a no-op). */
typedef struct ash_view {
    const uint8_t *data; /* the IPC stream: schema message, (dictionaries), batches, EOS */
    uint64_t length;     /* its bytes */
    uint64_t version;    /* dataset version (1 for the first put) */
    uint64_t num_rows;   /* rows of that version */
    uint64_t schema_fp;  /* blake2b-64 fingerprint of the serialized schema */
    uint64_t segment_id; /* the segment holding it (/ash-<ns>-<base36 id>) */
    /* Where the version's only record-batch message lies in `data` (FORMAT.md "Batch
     * locator"), when the writer recorded it for this version; else both 0. A reader
     * that already holds the schema of `schema_fp` may decode just that message. */
    uint64_t batch_offset;
    uint64_t batch_length;
    void *_pin;          /* private: the mapping and pin this view holds */
} ash_view;

/* One live entry, as ash_list reports it. */
typedef struct ash_entry {
    char name[ASH_MAX_NAME_BYTES + 1]; /* NUL-terminated */
    int kind;                          /* 1 dataset, 2 stream */
    uint64_t version;                  /* dataset: version (0 = none yet); stream: session */
    uint64_t num_rows;
    uint64_t data_bytes;
    uint64_t schema_fp;
    uint64_t updated_ns; /* CLOCK_REALTIME of the version's publish */
} ash_entry;

/* Open namespace `namespace_` (1-12 of [a-z0-9]; NULL: $ARROWSHM_NAMESPACE, else
 * "default") whose objects live in directory `dir` (NULL: $ARROWSHM_DIR, else /dev/shm).
 *
 * The directory follows the Python side's rules (arrowshm/_shm/directory.py): it must
 * be absolute; it is made canonical (realpath; /dev/shm itself is /dev/shm); any other
 * directory, and every directory above it, must belong to this user or root and not
 * be writable by group or others unless sticky. A namespace outside /dev/shm has a
 * marker /dev/shm/ash-<ns>-reg.at ("ARROWSHM_DIR=<dir>\n", a regular file of this
 * user): a handle of /dev/shm refuses a namespace with a marker, a handle of <dir>
 * refuses a marker naming another directory, or a registry in /dev/shm, with
 * ASH_EWRONGDIR and the value to set. (Readers never write the marker.)
 *
 * Joins the registry exactly as FORMAT.md "Joining" says: opened with O_NOFOLLOW, it
 * must be a regular file owned by the effective uid with no group/other permission
 * bits, of format version 2, with a sane geometry (fstat size covers every entry),
 * made in this process's PID namespace (/proc/self/ns/pid inode) during this boot
 * (/proc/sys/kernel/random/boot_id). The library never creates a registry: a
 * namespace no Python process has used yet is ASH_ENOTFOUND.
 *
 * Memory ordering: the magic word is an acquire load (its creator stores it last,
 * release); the other header words are read after it with relaxed loads.
 * Returns ASH_OK and *out, or ASH_ENOTFOUND, ASH_EACCES, ASH_EFORMAT, ASH_ECORRUPT,
 * ASH_EBUSY (registry still being created), ASH_EWRONGDIR, ASH_EINVAL, ASH_ENOMEM,
 * ASH_ESYS. */
int ash_open(const char *namespace_, const char *dir, ash_ns **out);

/* Close a namespace handle. Views still held stay valid: the handle is freed when
 * the last of them is released. Touches no shared word. A handle keeps the registry it
 * opened: if the namespace is removed and made again, open a new handle. */
void ash_close(ash_ns *ns);

/* Pin version `version` (0 = the latest) of dataset `name` and describe it in *view.
 *
 * Steps (FORMAT.md): look the name up (blake2b-64 home slot, linear probe, the
 * entry's generation as a seqlock over its name); take the entry's stamp; read the
 * record through the entry seqlock; map the version's segment (O_NOFOLLOW, regular
 * file of the euid, size from fstat); claim a pin slot, then re-check the segment's
 * state, version, generation and name hash against the entry; bounds-check
 * data_offset/data_bytes against the mapped size. A repeated get of an unchanged
 * entry (same stamp) reuses the pin this process already holds.
 *
 * Memory ordering:
 *  - lookup: generation and state acquire loads, name words relaxed, fence(acquire),
 *    generation again relaxed (kernels/registry.py registry_find);
 *  - stamp: acquire loads of generation, state, seq, generation (registry_entry_stamp);
 *  - record: seq acquire load, record words relaxed, fence(acquire), seq relaxed
 *    (kernels/seqlock.py seqlock_try_read);
 *  - pin: magic/format/payload words relaxed; pin slot claimed by a seq_cst CAS of
 *    the pid word, since_ns a relaxed store, start ticks a release store; overflow
 *    flag a seq_cst store; then the state word a seq_cst load (the reader's half of
 *    the Dekker pair with a recycling writer's CAS-then-scan) (kernels/pins.py
 *    pin_version).
 * Returns ASH_OK, ASH_ENOTFOUND, ASH_ENOVERSION, ASH_EKIND, ASH_EACCES, ASH_ECORRUPT,
 * ASH_EFORMAT, ASH_EBUSY, ASH_EINVAL, ASH_ENOMEM, ASH_ESYS, ASH_EFORKED. On failure
 * *view is zeroed and nothing is held. */
int ash_get(ash_ns *ns, const char *name, uint64_t version, ash_view *view);

/* Release a view: the pin is given back when this process holds no other view of
 * that version (the mapping may stay cached for the next get). Zeroes *view; a
 * zeroed view is a no-op.
 * Memory ordering: start and since words cleared with relaxed stores, then the pid
 * word by a seq_cst CAS (pid -> 0) (kernels/pins.py unpin). */
void ash_release(ash_view *view);

/* Block until dataset `name` has a version greater than `after_version`, or
 * `timeout_ns` passes (< 0: wait forever). *version_out (may be NULL) gets the version.
 * Sleeps on the same futex words as Python's arrowshm.wait: the entry's notify_futex
 * (waiter count notify_waiters) while the name exists, the registry's event_futex
 * (event_waiters) until it appears.
 *
 * Memory ordering (kernels/futex.py wait_until_greater): the version word is spun on
 * with acquire loads; before sleeping, the 32-bit futex word is read seq_cst, the
 * waiter count incremented seq_cst, the version re-checked seq_cst, then
 * FUTEX_WAIT (shared) on the futex value read; the waiter count is decremented
 * (seq_cst) after. The writer's notify stores the version, fences seq_cst, bumps the
 * futex word and loads the waiter count, so no wake-up is missed.
 * Returns ASH_OK, ASH_ETIMEDOUT, ASH_EKIND, ASH_EINVAL, ASH_EFORKED, ASH_ECORRUPT. */
int ash_wait(ash_ns *ns, const char *name, uint64_t after_version, int64_t timeout_ns,
             uint64_t *version_out);

/* Fill out[0..cap) with the live entries (datasets and streams) and return how many
 * there are (which may exceed cap: call again with a larger array), or a negative
 * status. Each entry is consistent; the set is not a snapshot. Entries with
 * impossible fields (a name length over 208) or stuck mid-write are skipped.
 * Memory ordering: per slot, state and generation acquire loads, name, kind and
 * name-length words relaxed, the record through the seqlock (seq acquire, words
 * relaxed, fence(acquire), seq relaxed), then fence(acquire) and the generation again
 * (relaxed): a different generation means the slot changed, and it is read again. */
long ash_list(ash_ns *ns, ash_entry *out, size_t cap);

/* The name of a status code ("ASH_ENOTFOUND: not found"). */
const char *ash_strerror(int status);

/* The calling thread's message of its last failed call: what went wrong and what to do. */
const char *ash_errmsg(void);

/* The directory and namespace a handle uses (for messages and tools). */
const char *ash_ns_dir(const ash_ns *ns);
const char *ash_ns_name(const ash_ns *ns);

/* blake2b with an 8-byte digest, little-endian (the name hash; 0 is mapped to 1). */
uint64_t ash_name_hash(const void *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* ARROWSHM_H */
