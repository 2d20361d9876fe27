"""Writing files so that no reader ever sees half of one: every file fastnet
writes (models, checkpoints, metrics, IDX files, downloads) goes to a
temporary file beside its destination first, and is renamed over it only
when it is whole."""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temporary_beside(path, suffix=".tmp"):
    """A new, empty temporary file in ``path``'s folder, named ``.NAME.XXXX<suffix>``,
    with the usual permissions: yields ``(fd, temporary path)``. The temporary file
    is removed on leaving, unless the caller renamed it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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
