"""Write-protocol variants: switches that skip or reorder one step of the durable protocol.

Owns: ``Protocol`` (a frozen set of flags), ``CORRECT`` (every flag on: the protocol
DESIGN.md's "Durability contract" describes) and ``VARIANTS``, the named broken protocols
a learner can switch on to watch the crash explorer (``phase1.crashcheck``) find data loss.

Must not know: files, clocks, threads, randomness.  It is pure data that ``wal.WalWriter``
and ``snapshot.write_snapshot`` read (``if protocol.fsync: disk.fsync(...)``), so each
variant is the real writer with one step left out, never a copy of it.  Two flags are
about how a *shell* sequences the steps (when the client hears "ok", when old WAL segments
go); the writer ignores them and the crash explorer's workload driver honours them.

Variants (each breaks exactly one rule):

* ``no-fsync``: no file is ever fsynced (WAL segments, snapshot temp file); the writer
  still believes the records are durable and acknowledges them.
* ``snapshot-in-place``: the snapshot overwrites the live file instead of writing a temp
  file and renaming it (no older copy is kept either).
* ``rename-without-dir-fsync``: renames (snapshot temp -> live, WAL rotation) are not
  followed by an fsync of the folder, so a power loss can undo them.
* ``truncate-wal-before-snapshot-durable``: the shell deletes the WAL segments the new
  snapshot covers *before* writing the snapshot.
* ``ack-before-durable``: the shell answers the client as soon as the records are
  appended, before the fsync returns.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Protocol", "CORRECT", "VARIANTS", "protocol_named"]


@dataclass(frozen=True, slots=True)
class Protocol:
    """Which steps of the durable protocol run.  ``Protocol()`` is the correct one."""

    name: str = "correct"
    fsync: bool = True  # fsync files (WAL segments, the snapshot temp file)
    snapshot_temp_file: bool = True  # write snapshot.tmp then rename (not in place)
    rename_dir_fsync: bool = True  # fsync the folder after a rename
    drop_wal_after_snapshot: bool = True  # shell: delete segments only once it is durable
    ack_after_durable: bool = True  # shell: answer the client only once records are durable
    summary: str = "the protocol DESIGN.md specifies: every step, in order"


CORRECT = Protocol()

VARIANTS: dict[str, Protocol] = {
    p.name: p
    for p in (
        CORRECT,
        Protocol(
            "no-fsync",
            fsync=False,
            summary="never fsync a file; acknowledge what only sits in the page cache",
        ),
        Protocol(
            "snapshot-in-place",
            snapshot_temp_file=False,
            summary="overwrite snapshot.json in place (no temp file, no rename)",
        ),
        Protocol(
            "rename-without-dir-fsync",
            rename_dir_fsync=False,
            summary="rename without fsyncing the folder: a power loss can undo the rename",
        ),
        Protocol(
            "truncate-wal-before-snapshot-durable",
            drop_wal_after_snapshot=False,
            summary="delete the covered WAL segments before the new snapshot is written",
        ),
        Protocol(
            "ack-before-durable",
            ack_after_durable=False,
            summary="answer the client once the records are appended, before the fsync",
        ),
    )
}


def protocol_named(name: str) -> Protocol:
    """The variant called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown protocol variant {name!r}; known: {', '.join(VARIANTS)}"
        ) from None
