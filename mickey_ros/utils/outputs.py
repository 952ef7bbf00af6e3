"""Output files and directories that appear complete or not at all, safe against a concurrent
writer.

A file is written to a temporary name unique to the process and renamed over the old one
(``atomic_write_bytes``).

A directory is written under a staging area unique to the process (``staging_path``), then
renamed into place (``publish_directory``): a reader never sees it half-written, two processes
writing the same output never share a temporary name, and a run that fails leaves no directory
under the final name (``discard_staging``). A run that is killed leaves its staging area; the
next run of the same output (``staging_path`` of it) removes it once its process is gone.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("mickey_ros.outputs")
PUBLISH_TRIES = 5  # renames lost to another process publishing the same name at the same time


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def staging_path(final: Path) -> Path:
    """Where to write ``final`` first: ``<name>.partial-<pid>-<random>/<name>`` beside it.

    The staging area (the ``.partial-`` directory, made by whoever creates the path with
    ``parents=True``) is unique to the process and beside ``final``, so the final rename stays on
    one file system (atomic). The staged directory itself has ``final``'s name because a bag
    writer names its storage files after the directory: the published bag holds ``<name>.mcap``,
    not a staging name. What killed runs of the same output left beside it is removed first
    (``remove_stale_staging``).
    """
    for path in remove_stale_staging(final):
        logger.info("removed %s, left by a killed run", path)
    area = final.with_name(f"{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    return area / final.name


def discard_staging(staging: Path) -> None:
    """Delete ``staging`` (from ``staging_path``) and its area: a failed or interrupted run."""
    shutil.rmtree(staging.parent, ignore_errors=True)


def is_empty_directory(path: Path) -> bool:
    """Whether ``path`` is a directory with nothing in it (an output that may be filled)."""
    return path.is_dir() and not any(path.iterdir())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_staging(final: Path) -> list[Path]:
    """Delete the staging areas of ``final`` left by killed runs; returns what it deleted.

    A staging area (of ``staging_path(final)``) whose process still runs is another run at work
    and is kept.
    """
    removed = []
    for path in final.parent.glob(f"{glob.escape(final.name)}.partial-*-*"):
        pid = path.name.rsplit("-", 2)[-2]
        if path.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _move_aside(final: Path) -> Path | None:
    """Rename ``final`` to a unique name (atomic); None if another process removed it first."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(final, old)
    except FileNotFoundError:
        return None
    return old


def publish_directory(
    staging: Path,
    final: Path,
    replace: bool = False,
    keep_existing: bool = False,
    replaceable: Callable[[Path], bool] = lambda path: True,
) -> Path:
    """Rename the complete directory ``staging`` to ``final``; returns ``final``.

    Args:
        staging: the finished directory (from ``staging_path(final)``).
        final: where it goes.
        replace: an existing ``final`` is replaced (it is moved aside first, then deleted).
        keep_existing: an existing ``final`` is kept and ``staging`` deleted (another process
            made the same thing, e.g. the same cached render).
        replaceable: refuses to replace a ``final`` for which it is False (not our kind).

    Raises:
        FileExistsError: ``final`` exists (callers check that before the work, so another
            process made it) and neither ``replace`` nor ``keep_existing`` is set, or it is not
            ``replaceable``; the message says where this run's output was kept.
    """
    for _ in range(PUBLISH_TRIES):
        if final.exists():
            if keep_existing:
                discard_staging(staging)
                return final
            if not replaceable(final):
                raise FileExistsError(f"cannot replace {final}: it is not what this command "
                                      f"writes; this run's output is kept as {staging}")
            if not replace:
                raise FileExistsError(f"cannot write {final}: another process created it while "
                                      f"this one ran; this run's output is kept as {staging}")
            old = _move_aside(final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(staging, final)  # fails, not merges, when another process got there first
        except OSError:
            if not final.exists():
                raise
            continue
        staging.parent.rmdir()  # the staging area, empty now
        return final
    raise FileExistsError(f"cannot write {final}: other processes keep replacing it; this run's "
                          f"output is kept as {staging}")
