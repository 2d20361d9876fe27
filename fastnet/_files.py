"""Writing files so that no reader ever sees half of one: every file fastnet
writes (models, checkpoints, metrics, IDX files, downloads) goes to a
temporary file beside its destination first, and is renamed over it only
when it is whole."""
import glob
import json
import os
import re
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

#: A temporary file's name: ``.NAME.PID-XXXX<suffix>``, PID the writing process's.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)-[A-Za-z0-9_]+(?P<suffix>\.[a-z]+)")


@contextmanager
def temporary_beside(path, suffix=".tmp"):
    """A new, empty temporary file in ``path``'s folder, named ``.NAME.PID-XXXX<suffix>``,
    with the usual permissions: yields ``(fd, temporary path)``. The temporary file
    is removed on leaving, unless the caller renamed it into place. Temporary files
    of ``path`` left by writers that were killed (SIGKILL, SIGTERM, a power cut) are
    removed first (see :func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix, dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600
        yield fd, Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_write(path):
    """Open a temporary file beside ``path`` for binary writing; on success,
    flush it to disk and rename it over ``path``. On any error (or Ctrl-C)
    the temporary file is removed and ``path`` is left as it was."""
    with temporary_beside(path) as (fd, tmp):
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def atomic_savez(path, payload):
    """``np.savez(path, **payload)``, atomically."""
    import numpy as np

    with atomic_write(path) as f:
        np.savez(f, **payload)


def atomic_write_json(path, document):
    """``document`` as indented JSON in ``path``, atomically."""
    with atomic_write(path) as f:
        f.write((json.dumps(document, indent=2) + "\n").encode())


def remove_stale_temporaries(path):
    """Remove the temporary files of ``path`` (``.NAME.PID-XXXX.tmp`` or ``.part``) whose
    writing process ``PID`` no longer runs on this machine: a writer killed before
    it could clean up. A live writer's file is left alone."""
    path = Path(path)
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*-*.*"))
    except OSError:
        return
    for candidate in candidates:
        match = _TEMPORARY.fullmatch(candidate.name)
        if match is None or match["name"] != path.name or match["suffix"] not in (".tmp", ".part"):
            continue
        if not _running(int(match["pid"])):
            with suppress(OSError):
                candidate.unlink()


def _running(pid):
    """Whether process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's: alive; a pid out of range: dead
        return pid < 2**22
    return True


@contextmanager
def pid_lock(lock, *, cannot_create, busy, remove=True):
    """Hold an exclusive lock on the file ``lock`` for the block, with this process's
    pid written in it: a second process is refused, naming the first. The lock goes
    with the process however it ends; with ``remove`` the file goes too, on the way out.
    ``cannot_create(exc)`` and ``busy(pid)`` make the exception raised when the file
    cannot be made, or another process holds it."""
    import fcntl

    lock = Path(lock)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise cannot_create(exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(os.pread(fd, 32, 0).decode(errors="replace").strip() or "?") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            if remove:
                lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
