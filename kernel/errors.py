"""The one error tree of arcoflow.

Every error the kernel raises derives from :class:`ArcoflowError`. Two families are kept apart:

* :class:`InputError` — *you called it wrong*: bad ids, cron expressions, time zones, payloads.
  Nothing was written. Also a :class:`ValueError`.
* :class:`StoreError` — *the stored data is bad or the store cannot go on*: corrupt records,
  records from a newer arcoflow, a full disk. Never silently skipped.

:class:`Conflict` is neither: a compare-and-set that lost a race. It is an expected outcome for
concurrent callers, carries the versions involved, and also wrote nothing.
"""

from __future__ import annotations


class ArcoflowError(Exception):
    """Root of every error arcoflow raises on purpose."""


class InputError(ArcoflowError, ValueError):
    """Bad input from the caller. Nothing was written."""


class InvalidId(InputError):
    """An id does not match ``[a-z0-9][a-z0-9._-]{0,127}``."""


class InvalidCron(InputError):
    """A cron expression that does not parse or never fires."""


class UnknownTimezone(InputError):
    """A time zone that is not an IANA name known to this machine's zone database."""


class InvalidDefinition(InputError):
    """A schedule or sensor definition (or a definitions file) that does not validate."""


class PayloadTooLarge(InputError):
    """A push payload above the configured limit."""


class UnstorableValue(InputError):
    """A write whose records would not read back (a value no decoder takes, an integer over
    64 bits). The store refused the whole transaction: nothing was written. The input
    boundary refuses such values first; this is the store's own second line of defence."""


class NotFound(ArcoflowError, KeyError):
    """The schedule, sensor, tick, evaluation or run does not exist."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(ArcoflowError):
    """A compare-and-set lost: the row moved on since it was read. Nothing was written.
    ``what`` names the compared field (a version, a run's attempts or its claimer)."""

    def __init__(
        self, row: str, expected: object, actual: object, what: str = "state_version"
    ) -> None:
        super().__init__(
            f"{row}: expected {what} {expected}, found {actual} "
            "(another process got there first; re-read and retry)"
        )
        self.row = row
        self.expected = expected
        self.actual = actual


class StoreError(ArcoflowError):
    """The store cannot read or write as asked."""


class CorruptRecord(StoreError):
    """Stored bytes that do not decode. Names the log sequence number (or the row)."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"corrupt record at {where}: {detail}")
        self.where = where


class FutureSchemaVersion(StoreError):
    """A record written by a newer arcoflow than this one: upgrade arcoflow to read it."""

    def __init__(self, where: str, version: int, supported: int) -> None:
        super().__init__(
            f"record at {where} has schema_version {version}, but this arcoflow reads up to "
            f"{supported}; upgrade arcoflow to read this store"
        )
        self.where = where
        self.version = version
        self.supported = supported


class StoreFull(StoreError):
    """The store reached its configured maximum size."""


class Compacted(StoreError):
    """A repeat of an append whose log records were dropped by log compaction: it was applied
    (its idempotency key is remembered, so nothing is written again), but the records that
    answered "what did the original do" are gone. Compact with a ``keep`` window longer than
    any redelivery you expect (see ``docs/operating.md``)."""

    def __init__(self, key: str, seq: int) -> None:
        super().__init__(
            f"{key!r} was applied at seq {seq}, a log record that compaction has dropped; "
            "nothing was written again"
        )
        self.key = key
        self.seq = seq


class StoreBusy(StoreError):
    """An operation that needs the store to itself (compacting the LMDB file) found another
    process holding it open. Nothing was changed: stop the other process and run it again."""


# -- store files: damaged, replaced or missing ------------------------------------------------


class DamagedStore(StoreError):
    """The store's files are damaged: a truncated or replaced data file, or pages the database
    driver cannot read. arcoflow refuses to go on rather than guess; restore the store
    directory from a backup (``arcoflow verify`` checks a restored copy)."""


class StoreNotFound(InputError):
    """A store opened read-only (it must exist) is not there. Nothing was created."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached or refused the connection (PostgreSQL down, a
    wrong host or port, authentication failed). Nothing was written; try again once the
    server answers."""


class Pruned(NotFound):
    """The item existed, but retention pruned it: its owner's history before an instant is
    gone (``arcoflow prune``, or the daemon's pruning). Not a silent gap: the message names
    the instant."""
