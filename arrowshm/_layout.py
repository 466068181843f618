"""Byte layouts of arrowshm's shared-memory segments (format version 1).

All integers are little-endian ``uint64`` words; offsets below are in bytes
from the start of the segment (``W_*`` constants are word indices = byte
offset / 8). Every word that more than one process touches is accessed with
the atomics of :mod:`arrowshm.kernels`. ``docs/FORMAT.md`` is the prose
version of this table and ``tests/arrowshm/test_layout.py`` asserts every
offset.

Registry segment ``/ash-<ns>-reg``
----------------------------------

====== ==================== ==================================================
offset field                meaning
====== ==================== ==================================================
0      magic                ``REGISTRY_MAGIC`` (b"ASHREG\\0\\1"), written last at init
8      format_version       ``FORMAT_VERSION``
16     header_bytes         ``REGISTRY_HEADER_BYTES`` (entries start here)
24     capacity             number of entries
32     entry_bytes          ``ENTRY_BYTES``
40     created_ns           CLOCK_REALTIME ns of creation
48     init_pid             pid of the creating process
64     struct_lock          pid holding the claim/delete lock (0 = free)
72     struct_lock_start    that pid's start time (clock ticks since boot)
128    next_segment_id      fetch-add counter for segment ids (starts at 1)
192    bytes_used           bytes of all live segments of the namespace
200    quota_bytes          byte quota of the namespace (0 = none)
256    event_seq            bumped on every publish and delete (event count)
264    event_waiters        processes sleeping on event_futex
272    event_futex          32-bit futex word (low half of the word)
320    stat_puts            versions published since creation
328    stat_deletes         names deleted
336    stat_reaped          objects reclaimed by gc / the reaper
344    live_entries         entries in state LIVE
4096   entries[capacity]    ``ENTRY_BYTES`` each
====== ==================== ==================================================

Registry entry (``ENTRY_BYTES`` = 1024, at ``4096 + slot * 1024``)
------------------------------------------------------------------

====== ==================== ==================================================
offset field                meaning
====== ==================== ==================================================
0      state                EMPTY 0, CLAIMED 1, LIVE 2, DELETED 3
8      generation           bumped at every claim of the slot
16     name_hash            blake2b-64 of the name (0 never used)
24     kind                 KIND_DATASET 1, KIND_STREAM 2
32     name_len             bytes of the UTF-8 name
64     lock                 writer lock: owner pid, 0 = free
72     lock_start           owner's start time (clock ticks since boot)
80     lock_ns              CLOCK_MONOTONIC ns when the lock was taken
88     notify_futex         32-bit futex word (low half), bumped per publish
96     notify_waiters       processes sleeping on notify_futex
128    name[208]            the name, UTF-8, zero padded
336    seq                  seqlock sequence (odd while a write is in progress)
344    stage_tag            target sequence of the staged record
352    record[40]           live record (``R_*`` word indices below)
672    staged[40]           staged copy of the next record (crash recovery)
====== ==================== ==================================================

Record words (``R_*``): 0 version, 1 segment_id, 2 segment_bytes,
3 data_bytes, 4 num_rows, 5 schema_fp, 6 created_ns, 7 updated_ns,
8 ttl_ns, 9 retain, 10 owner_pid, 11 owner_start, 12 flags,
13 total_bytes (all retained segments), 14 n_history,
16..31 history: segment id of version ``version - k`` for k < n_history.

Data segment ``/ash-<ns>-<base36 id>``
--------------------------------------

====== ==================== ==================================================
offset field                meaning
====== ==================== ==================================================
0      magic                ``SEGMENT_MAGIC`` (b"ASHSEG\\0\\1")
8      format_version       ``FORMAT_VERSION``
16     kind                 KIND_DATASET 1, KIND_STREAM 2
24     state                WRITING 1, SEALED 2, PUBLISHED 3
32     creator_pid          pid of the creating process
40     creator_start        its start time (clock ticks since boot)
48     created_ns           CLOCK_REALTIME ns
56     segment_bytes        size of the whole segment
64     data_offset          where the payload starts (``SEGMENT_HEADER_BYTES``)
72     data_bytes           payload length (Arrow IPC stream for datasets)
80     name_hash            hash of the dataset/stream name
88     version              dataset version this segment holds
96     num_rows             rows of the table
104    schema_fp            schema fingerprint
112    generation           registry entry generation it was written for
4096   payload              Arrow IPC stream (datasets), 64-byte aligned
====== ==================== ==================================================
"""

from __future__ import annotations

import struct

FORMAT_VERSION = 1
REGISTRY_MAGIC = struct.unpack("<Q", b"ASHREG\x00\x01")[0]
SEGMENT_MAGIC = struct.unpack("<Q", b"ASHSEG\x00\x01")[0]

WORD = 8
CACHE_LINE = 64
PAGE = 4096

# --- registry header (word indices) -----------------------------------------
REGISTRY_HEADER_BYTES = 4096
H_MAGIC = 0
H_FORMAT_VERSION = 1
H_HEADER_BYTES = 2
H_CAPACITY = 3
H_ENTRY_BYTES = 4
H_CREATED_NS = 5
H_INIT_PID = 6
H_STRUCT_LOCK = 8
H_STRUCT_LOCK_START = 9
H_NEXT_SEGMENT_ID = 16
H_BYTES_USED = 24
H_QUOTA_BYTES = 25
H_EVENT_SEQ = 32
H_EVENT_WAITERS = 33
H_EVENT_FUTEX = 34  # word index; the futex is the low 32 bits (u32 index 68)
H_STAT_PUTS = 40
H_STAT_DELETES = 41
H_STAT_REAPED = 42
H_LIVE_ENTRIES = 43

# --- registry entry (word indices relative to the entry) --------------------
ENTRY_BYTES = 1024
ENTRY_WORDS = ENTRY_BYTES // WORD
E_STATE = 0
E_GENERATION = 1
E_NAME_HASH = 2
E_KIND = 3
E_NAME_LEN = 4
E_LOCK = 8
E_LOCK_START = 9
E_LOCK_NS = 10
E_NOTIFY_FUTEX = 11
E_NOTIFY_WAITERS = 12
E_NAME = 16
NAME_WORDS = 26
E_SEQLOCK = 42  # seq at +0, stage_tag at +1, live record at +2, staged at +2+RECORD_WORDS
RECORD_WORDS = 40
E_RECORD = E_SEQLOCK + 2
E_STAGED = E_RECORD + RECORD_WORDS

STATE_EMPTY = 0
STATE_CLAIMED = 1
STATE_LIVE = 2
STATE_DELETED = 3

KIND_DATASET = 1
KIND_STREAM = 2
KIND_NAMES = {KIND_DATASET: "dataset", KIND_STREAM: "stream"}

# --- record words (indices into the seqlock-protected record) ---------------
R_VERSION = 0
R_SEGMENT_ID = 1
R_SEGMENT_BYTES = 2
R_DATA_BYTES = 3
R_NUM_ROWS = 4
R_SCHEMA_FP = 5
R_CREATED_NS = 6
R_UPDATED_NS = 7
R_TTL_NS = 8
R_RETAIN = 9
R_OWNER_PID = 10
R_OWNER_START = 11
R_FLAGS = 12
R_TOTAL_BYTES = 13
R_N_HISTORY = 14
R_HISTORY = 16
MAX_RETAIN = 16

# --- data segment header (word indices) --------------------------------------
SEGMENT_HEADER_BYTES = 4096
S_MAGIC = 0
S_FORMAT_VERSION = 1
S_KIND = 2
S_STATE = 3
S_CREATOR_PID = 4
S_CREATOR_START = 5
S_CREATED_NS = 6
S_SEGMENT_BYTES = 7
S_DATA_OFFSET = 8
S_DATA_BYTES = 9
S_NAME_HASH = 10
S_VERSION = 11
S_NUM_ROWS = 12
S_SCHEMA_FP = 13
S_GENERATION = 14

SEG_WRITING = 1
SEG_SEALED = 2
SEG_PUBLISHED = 3
SEG_STATE_NAMES = {SEG_WRITING: "writing", SEG_SEALED: "sealed", SEG_PUBLISHED: "published"}


def entry_word(slot: int, field: int) -> int:
    """Absolute word index of *field* of entry *slot* in the registry."""
    return REGISTRY_HEADER_BYTES // WORD + slot * ENTRY_WORDS + field


def registry_bytes(capacity: int) -> int:
    """Size in bytes of a registry with *capacity* entries."""
    return REGISTRY_HEADER_BYTES + capacity * ENTRY_BYTES


def align(value: int, to: int = CACHE_LINE) -> int:
    """Round *value* up to a multiple of *to* (a power of two)."""
    return (value + to - 1) & ~(to - 1)
