"""Every status code a kernel returns, in one table.

Kernels never raise: they return an integer, non-negative for a result (a
value, a sequence number, a slot index) and negative for a status. Each
negative code below means one thing in every kernel, so a code can be turned
into an exception without knowing which kernel produced it
(``arrowshm._errors.from_status``). Codes that mirror a Linux errno keep its
value; the others live in one block of a hundred per kernel module.

==========================  =======  ==============================================
name                         value   meaning
==========================  =======  ==============================================
``OK``                          0    done
``EINTR``                      -4    a futex wait was interrupted by a signal
``EAGAIN``                    -11    the futex word no longer held the expected value
``EBUSY``                     -16    a seqlock record stayed odd or kept changing
``EINVAL``                    -22    a record or offset does not fit the array
``ETIMEDOUT``                -110    a wait timed out
``EOWNERDEAD``               -130    a seqlock write found a dead writer's odd record
``NOT_FOUND``                -201    registry: no LIVE entry has that name
``REGISTRY_FULL``            -202    registry: no free entry
``QUOTA_EXCEEDED``           -203    registry: the byte quota would be exceeded
``PIN_NOT_A_SEGMENT``        -301    pins: too small, or not a segment magic
``PIN_BAD_FORMAT``           -302    pins: another format version
``PIN_STALE``                -303    pins: no longer holds the version asked for
``PIN_BAD_OFFSETS``          -304    pins: payload offsets outside the segment
``RING_GATED``               -401    ring: readers' unread or pinned batches leave no room
``RING_EMPTY``               -402    ring: no batch to read yet
``RING_CLOSED``              -403    ring: the writer closed the stream and all is read
``RING_FULL``                -404    ring: no free reader slot
``RING_CORRUPT``             -405    ring: a descriptor or cursor is impossible
``RING_NOT_OWNER``           -406    ring: the reader slot belongs to another pid
``RING_NOT_HELD``            -407    ring: unpin of a sequence no span covers
``SEQLOCK_RETRY``            -501    seqlock (internal): read again
==========================  =======  ==============================================
"""

from __future__ import annotations

__all__ = [
    "EAGAIN",
    "EBUSY",
    "EINTR",
    "EINVAL",
    "EOWNERDEAD",
    "ETIMEDOUT",
    "NAMES",
    "NOT_FOUND",
    "OK",
    "PIN_BAD_FORMAT",
    "PIN_BAD_OFFSETS",
    "PIN_NOT_A_SEGMENT",
    "PIN_STALE",
    "QUOTA_EXCEEDED",
    "REGISTRY_FULL",
    "RING_CLOSED",
    "RING_CORRUPT",
    "RING_EMPTY",
    "RING_FULL",
    "RING_GATED",
    "RING_NOT_HELD",
    "RING_NOT_OWNER",
    "SEQLOCK_RETRY",
]

OK = 0
EINTR = -4
EAGAIN = -11
EBUSY = -16
EINVAL = -22
ETIMEDOUT = -110
EOWNERDEAD = -130

NOT_FOUND = -201
REGISTRY_FULL = -202
QUOTA_EXCEEDED = -203

PIN_NOT_A_SEGMENT = -301
PIN_BAD_FORMAT = -302
PIN_STALE = -303
PIN_BAD_OFFSETS = -304

RING_GATED = -401
RING_EMPTY = -402
RING_CLOSED = -403
RING_FULL = -404
RING_CORRUPT = -405
RING_NOT_OWNER = -406
RING_NOT_HELD = -407

SEQLOCK_RETRY = -501

NAMES: dict[int, str] = {
    value: name for name, value in sorted(globals().items())
    if name.isupper() and isinstance(value, int) and name != "NAMES"
}
"""Code -> name, for messages and the test that codes are distinct."""
