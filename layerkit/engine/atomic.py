"""Writing a file so that readers see the old content or the new, never a part: the one helper every
writer of the store (and of layerkit's other files) uses.

The new content goes to a temporary file beside the target (same directory, so the rename cannot cross
file systems), is flushed and, unless the caller opts out, fsynced, then renamed over the target. If the
writer fails, the temporary file is removed and the target is untouched. Temporary names start with a dot
and the target's name, so a crash leaves only dot-files that no reader looks at.

Blobs have their own writer (:mod:`.blobs`: digest checked as it streams, written behind by a thread)
built on the same rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a name (SQLite); renamed over ``path`` when
    the block ends without an exception, removed otherwise. ``mode``: the file's permissions (default the
    0600 ``mkstemp`` gives)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, text: bool = False, fsync: bool = True, mode: int | None = None
                ) -> Iterator[IO]:
    """An open temporary file beside ``path`` (binary, or text with ``text``); when the block ends without
    an exception it is flushed, fsynced (unless ``fsync`` is False: caches that can be rebuilt) and
    renamed over ``path``; otherwise removed."""
    with atomic_path(path, mode) as tmp, open(tmp, "w" if text else "wb") as f:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, data: object, indent: int | None = 2, fsync: bool = True,
                      mode: int | None = None) -> None:
    """Write ``data`` as JSON (and a final newline) to ``path`` atomically."""
    with atomic_file(path, text=True, fsync=fsync, mode=mode) as f:
        json.dump(data, f, indent=indent)
        f.write("\n")
