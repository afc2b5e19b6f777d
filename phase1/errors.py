"""The exception tree of phase1.

Every error says *where* (file, line, byte offset, config key, job id), *what* went wrong
and, where there is one, *what to do next*.  The CLI prints ``str(err)`` as one line and
exits with status 2.

Expected weather is not an exception: a torn WAL tail is counted in the
``RecoveryReport`` and a late ACK is a ``LateAck`` effect.
"""

from __future__ import annotations

__all__ = [
    "QueueKitError",
    "ConfigError",
    "InvalidJobError",
    "IllegalTransition",
    "InvariantViolation",
    "WalCorruptionError",
    "SnapshotError",
    "DurabilityError",
    "SandboxViolation",
]


class QueueKitError(Exception):
    """Base class of every error phase1 raises on purpose."""


class ConfigError(QueueKitError):
    """A configuration file or value is malformed (the message names file and key)."""


class InvalidJobError(QueueKitError):
    """An untrusted job (dict or JSON) is malformed; the message names the job and field."""

    def __init__(self, message: str, *, job_id: str | None = None, field: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.field = field


class IllegalTransition(QueueKitError):
    """A record asks for a state change the transition table does not allow."""

    def __init__(self, message: str, *, job_id: str, record_type: str, state: str | None):
        super().__init__(message)
        self.job_id = job_id
        self.record_type = record_type
        self.state = state


class InvariantViolation(QueueKitError):
    """``QueueCore.check()`` found state that breaks an invariant (a bug, never weather)."""


class WalCorruptionError(QueueKitError):
    """A WAL record that fails its checksum or framing is followed by valid records.

    A damaged *last* record is a torn tail (expected after a crash) and is reported,
    not raised.  Attributes locate the damage for ``phase1 wal repair``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int,
        offset: int,
        seq: int | None = None,
    ):
        super().__init__(message)
        self.path = path
        self.line = line
        self.offset = offset
        self.seq = seq


class SnapshotError(QueueKitError):
    """A snapshot file is unreadable, fails its checksum, or has an unknown schema."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class DurabilityError(QueueKitError):
    """fsync (or a write) failed; the writer is poisoned and refuses further appends.

    After a failed fsync the kernel may have dropped the dirty pages, so retrying
    the fsync can falsely report success (the 2018 "fsyncgate").  Like LevelDB and
    PostgreSQL, phase1 treats it as fatal: restart and recover from the files.
    """


class SandboxViolation(QueueKitError):
    """A payload handler was asked to touch something outside its sandbox."""
