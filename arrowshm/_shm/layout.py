"""Byte layouts of arrowshm's shared-memory segments (format version 2).

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
56     init_start           its start time (clock ticks since boot)
64     struct_lock          pid holding the claim/delete lock (0 = free)
72     struct_lock_start    that pid's start time (clock ticks since boot)
80     pid_ns               inode of the creator's PID namespace (/proc/self/ns/pid):
                            only processes of that namespace may join
96     boot_id              16 bytes: /proc/sys/kernel/random/boot_id at creation
112    id_key               secret that turns the segment counter into segment ids
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
352    stat_recycled        puts that reused a spare
1024   reservations[64]     32 bytes each: pid, start, bytes, 0 — bytes a live
                            creator reserved for a segment not yet named
3072   spares[24]           40 bytes each: state, owner start, segment id, bytes,
                            since ns — retired segments any process may reuse
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
24     state                (epoch << 8) | state: WRITING 1, SEALED 2,
                            PUBLISHED 3, POOLED 4, RECLAIMING 5
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
128    pin_overflow         1 once a reader found every pin slot taken
136    recycles             times the segment was reused
1024   pins[64]             (pid, start ticks, since ns, 0) of each process holding it
4096   payload              Arrow IPC stream (datasets), 64-byte aligned
====== ==================== ==================================================
"""

from __future__ import annotations

import struct

from ..kernels import pins as _pins
from ..kernels import ring as _ring

FORMAT_VERSION = 2
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
H_INIT_START = 7
H_STRUCT_LOCK = 8
H_STRUCT_LOCK_START = 9
H_PID_NS = 10
H_BOOT_ID = 12  # two words
H_ID_KEY = 14
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
H_STAT_RECYCLED = 44  # puts that reused a spare instead of creating a segment
# in-flight byte reservations: a creator's quota bytes until its segment is named
H_RESERVATIONS = 128
RESERVATION_SLOTS = 64
RESERVATION_WORDS = 4  # pid, start, bytes, (unused)
# the spare table: unpinned retired dataset segments, claimable by any process of the
# namespace for any name (arrowshm/_shm/spares.py)
H_SPARES = 384
SPARE_SLOTS = 24
SPARE_WORDS = 5  # state, owner start, segment id, bytes, since (CLOCK_REALTIME ns)
SPARE_EMPTY = 0
SPARE_READY = 1 << 62  # listed: claimable
SPARE_BUSY = 1 << 63  # | pid of the process inserting or claiming it (start in word 1)
# the reserves: processes keeping pre-faulted spares ready (arrowshm.reserve, serve
# --reserve), so that every process's trimming spares their ladders
H_RESERVES = 504
RESERVE_SLOTS = 2
RESERVE_WORDS = 4  # pid (0 = free), start, bytes, (unused)

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

# --- data segment header (word indices; defined once, by the pins kernel) ---------
SEGMENT_HEADER_BYTES = _pins.SEGMENT_HEADER_BYTES
S_MAGIC = _pins.S_MAGIC
S_FORMAT_VERSION = _pins.S_FORMAT_VERSION
S_KIND = _pins.S_KIND
S_STATE = _pins.S_STATE
S_CREATOR_PID = _pins.S_CREATOR_PID
S_CREATOR_START = _pins.S_CREATOR_START
S_CREATED_NS = _pins.S_CREATED_NS
S_SEGMENT_BYTES = _pins.S_SEGMENT_BYTES
S_DATA_OFFSET = _pins.S_DATA_OFFSET
S_DATA_BYTES = _pins.S_DATA_BYTES
S_NAME_HASH = _pins.S_NAME_HASH
S_VERSION = _pins.S_VERSION
S_NUM_ROWS = _pins.S_NUM_ROWS
S_SCHEMA_FP = _pins.S_SCHEMA_FP
S_GENERATION = _pins.S_GENERATION
S_PIN_OVERFLOW = _pins.S_PIN_OVERFLOW
S_RECYCLES = _pins.S_RECYCLES
S_BATCH_VERSION = _pins.S_BATCH_VERSION
S_BATCH_OFFSET = _pins.S_BATCH_OFFSET
S_BATCH_BYTES = _pins.S_BATCH_BYTES
S_PINS = _pins.S_PINS
PIN_SLOTS = _pins.PIN_SLOTS
PIN_WORDS = _pins.PIN_WORDS

# S_STATE holds (epoch << 8) | state; every transition bumps the epoch so a
# compare-and-swap from a state read earlier fails if anything happened since
SEG_WRITING = _pins.SEG_WRITING
SEG_SEALED = _pins.SEG_SEALED
SEG_PUBLISHED = _pins.SEG_PUBLISHED
SEG_POOLED = _pins.SEG_POOLED
SEG_RECLAIMING = _pins.SEG_RECLAIMING
SEG_STATE_NAMES = {
    SEG_WRITING: "writing",
    SEG_SEALED: "sealed",
    SEG_PUBLISHED: "published",
    SEG_POOLED: "pooled",
    SEG_RECLAIMING: "reclaiming",
}
STATE_BITS = _pins.STATE_BITS
STATE_MASK = _pins.STATE_MASK


def state_of(word: int) -> int:
    """The state part of a segment's state word."""
    return word & STATE_MASK


def next_state(word: int, state: int) -> int:
    """The state word after a transition of *word* to *state* (epoch + 1)."""
    return (((word >> STATE_BITS) + 1) << STATE_BITS) | state


def entry_word(slot: int, field: int) -> int:
    """Absolute word index of *field* of entry *slot* in the registry."""
    return REGISTRY_HEADER_BYTES // WORD + slot * ENTRY_WORDS + field


def registry_bytes(capacity: int) -> int:
    """Size in bytes of a registry with *capacity* entries."""
    return REGISTRY_HEADER_BYTES + capacity * ENTRY_BYTES


def align(value: int, to: int = CACHE_LINE) -> int:
    """Round *value* up to a multiple of *to* (a power of two)."""
    return (value + to - 1) & ~(to - 1)


# =====================================================================================
# Stream segment (owners: arrowshm/_streams/geometry.py and kernels/ring.py)
# =====================================================================================
#
# A stream segment ``/ash-<ns>-<base36 id>`` starts with the common 4 KiB data
# segment header above (S_KIND = KIND_STREAM, S_DATA_OFFSET/S_DATA_BYTES = the
# arena, S_VERSION = writer session), then:
#
# ====== ==================== ==================================================
# offset field                meaning
# ====== ==================== ==================================================
# 4096   st_magic             ``STREAM_MAGIC`` (b"ASHSTRM\x01"), written last at init
# 4104   mode                 STREAM_BLOCK 0, STREAM_OVERWRITE 1
# 4112   n_slots              descriptors in the ring (power of two)
# 4120   max_readers          reader slots
# 4128   arena_bytes          bytes of the data arena (the capacity)
# 4136   schema_bytes         length of the Arrow IPC schema message
# 4144   session              writer session (registry R_VERSION of this segment)
# 4152   evict_ns             writer's bound on dead-reader stalls (ns)
# 4160   schema_offset        byte offset of the schema message (4608)
# 4168   readers_offset       byte offset of reader slot 0 (64-byte aligned)
# 4176   ring_offset          byte offset of descriptor 0 (64-byte aligned)
# 4184   arena_offset         byte offset of the arena (4096-byte aligned)
# 4192   slot_bytes           512 (a cursor line and a pin table per reader)
# 4200   desc_bytes           32
# 4224   writer_pid           pid of the writer of this session
# 4232   writer_start         its start time (clock ticks since boot)
# 4240   opened_ns            CLOCK_REALTIME ns the session opened
# 4248   closed_ns            CLOCK_REALTIME ns it closed (0 while open)
# 4288   cursor               batches published (next sequence)       } ring header
# 4296   reclaim              batches below may be overwritten          } line 0:
# 4304   head                 virtual arena byte after the last message } written by
# 4312   closed               0 open, 1 closed, 2 aborted               } the writer
# 4320   data_futex           32-bit event count readers sleep on (low half)
# 4328   bytes                message bytes published
# 4336   rows                 rows published
# 4344   heartbeat            CLOCK_MONOTONIC ns of the last publish
# 4352   data_waiters         readers asleep on data_futex (own line)
# 4416   space_futex          32-bit event count the writer sleeps on (low half)
# 4424   space_waiters        1 while the writer sleeps
# 4432   gated_since          CLOCK_MONOTONIC ns the writer began to wait (0: not)
# 4440   gating_reader        1 + slot of the first reader in its way (0: none)
# 4448   evicted              dead readers evicted
# 4456   waits                writes that had to wait for space
# 4464   skipped              arena bytes the writer jumped over (pinned by readers)
# 4608   schema               Arrow IPC schema message, ``schema_bytes`` long
# R      readers[max_readers] 512 bytes each (below)
# D      ring[n_slots]        32 bytes each: seq + 1, vstart, length, rows
# A      arena[arena_bytes]   Arrow IPC record batch messages (8-byte aligned)
# ====== ==================== ==================================================
#
# Reader slot (512 bytes, 64-byte aligned; only its reader writes it, except
# eviction of a dead reader):
#
# ====== ==================== ==================================================
# +0     pid                  owner (0 = free; claimed by compare-and-swap)
# +8     start                owner's start time (clock ticks since boot)
# +16    state                FREE 0, ACTIVE 1, DRAINING 2 (closed, still holding)
# +24    read                 next sequence it will claim
# +32    held                 batches it holds (returned, not yet freed)
# +40    missed               batches lost to overwrite mode
# +48    heartbeat            CLOCK_MONOTONIC ns of its last read
# +56    since                CLOCK_REALTIME ns it attached
# +64    pins_seq             seqlock over pins_n and the spans (odd: changing)
# +72    pins_n               spans in use (<= PIN_SPANS)
# +96    spans[13]            32 bytes each: first seq, last seq, v0, v1 - the
#                             virtual arena bytes [v0, v1) it pins
# ====== ==================== ==================================================
#
# ``ST_*`` are absolute word indices (byte offset / 8); ``RD_*`` and ``DESC_*``
# are word offsets inside a reader slot / descriptor. The ring's own words are
# defined once, in kernels/ring.py, and only positioned here (ST_RING_HEADER).

STREAM_MAGIC = struct.unpack("<Q", b"ASHSTRM\x01")[0]
STREAM_HEADER_OFFSET = SEGMENT_HEADER_BYTES  # 4096
STREAM_HEADER_BYTES = 512
STREAM_SCHEMA_OFFSET = STREAM_HEADER_OFFSET + STREAM_HEADER_BYTES  # 4608

ST_MAGIC = 512
ST_MODE = 513
ST_N_SLOTS = 514
ST_MAX_READERS = 515
ST_ARENA_BYTES = 516
ST_SCHEMA_BYTES = 517
ST_SESSION = 518
ST_EVICT_NS = 519
ST_SCHEMA_OFFSET = 520
ST_READERS_OFFSET = 521
ST_RING_OFFSET = 522
ST_ARENA_OFFSET = 523
ST_SLOT_BYTES = 524
ST_DESC_BYTES = 525
ST_WRITER_PID = 528
ST_WRITER_START = 529
ST_OPENED_NS = 530
ST_CLOSED_NS = 531
ST_RING_HEADER = 536  # byte 4288: kernels.ring header base (G_HDR); the hot words follow
ST_CURSOR = ST_RING_HEADER + _ring.H_CURSOR
ST_RECLAIM = ST_RING_HEADER + _ring.H_RECLAIM
ST_HEAD = ST_RING_HEADER + _ring.H_HEAD
ST_CLOSED = ST_RING_HEADER + _ring.H_CLOSED
ST_DATA_FUTEX = ST_RING_HEADER + _ring.H_DATA_FUTEX
ST_BYTES = ST_RING_HEADER + _ring.H_BYTES
ST_ROWS = ST_RING_HEADER + _ring.H_ROWS
ST_HEARTBEAT = ST_RING_HEADER + _ring.H_HEARTBEAT
ST_DATA_WAITERS = ST_RING_HEADER + _ring.H_DATA_WAITERS
ST_SPACE_FUTEX = ST_RING_HEADER + _ring.H_SPACE_FUTEX
ST_SPACE_WAITERS = ST_RING_HEADER + _ring.H_SPACE_WAITERS
ST_GATED_SINCE = ST_RING_HEADER + _ring.H_GATED_SINCE
ST_GATING_READER = ST_RING_HEADER + _ring.H_GATING_READER
ST_EVICTED = ST_RING_HEADER + _ring.H_EVICTED
ST_WAITS = ST_RING_HEADER + _ring.H_WAITS
ST_SKIPPED = ST_RING_HEADER + _ring.H_SKIPPED

STREAM_BLOCK = _ring.MODE_BLOCK
STREAM_OVERWRITE = _ring.MODE_OVERWRITE
STREAM_MODE_NAMES = {STREAM_BLOCK: "block", STREAM_OVERWRITE: "overwrite"}
STREAM_OPEN = _ring.CLOSED_OPEN
STREAM_CLOSED = _ring.CLOSED_CLOSED
STREAM_ABORTED = _ring.CLOSED_ABORTED

# reader slots and descriptors: the ring kernel's layout
SLOT_BYTES = _ring.SLOT_WORDS * WORD  # a cursor line, then its pin table
RD_PID = _ring.RD_PID
RD_START = _ring.RD_START
RD_STATE = _ring.RD_STATE
RD_READ = _ring.RD_READ
RD_HELD = _ring.RD_HELD
RD_MISSED = _ring.RD_MISSED
RD_HEARTBEAT = _ring.RD_HEARTBEAT
RD_SINCE = _ring.RD_SINCE
RD_PINS_SEQ = _ring.RD_PINS_SEQ
RD_PINS_N = _ring.RD_PINS_N
RD_SPANS = _ring.RD_SPANS
SPAN_WORDS = _ring.SPAN_WORDS
PIN_SPANS = _ring.PIN_SPANS
RD_FREE = _ring.RD_FREE
RD_ACTIVE = _ring.RD_ACTIVE
RD_DRAINING = _ring.RD_DRAINING
RD_STATE_NAMES = {RD_FREE: "free", RD_ACTIVE: "active", RD_DRAINING: "draining"}

DESC_BYTES = _ring.DESC_WORDS * WORD
DESC_SEQ = _ring.D_SEQ
DESC_VSTART = _ring.D_VSTART
DESC_LENGTH = _ring.D_LENGTH
DESC_ROWS = _ring.D_ROWS

R_FLAG_CLOSED = 1  # registry record R_FLAGS bit: the stream's writer closed it


def stream_layout(schema_bytes: int, max_readers: int, n_slots: int,
                  arena_bytes: int) -> tuple[int, int, int, int]:
    """(readers_offset, ring_offset, arena_offset, segment_bytes) of a stream segment."""
    readers = align(STREAM_SCHEMA_OFFSET + schema_bytes, CACHE_LINE)
    ring = align(readers + max_readers * SLOT_BYTES, CACHE_LINE)
    arena = align(ring + n_slots * DESC_BYTES, PAGE)
    return readers, ring, arena, arena + arena_bytes
