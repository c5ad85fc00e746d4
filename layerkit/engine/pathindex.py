"""A persistent path index of an image's union view, so that a container's ``diff`` costs what its
writable layer holds, not what the image holds.

One SQLite file per layer stack, named by the top layer's chain ID (which fixes the content for ever),
in ``STORE/layerkit/views/``. It is built once from the union view, written to a temporary file and
renamed into place; afterwards a lookup is one indexed query.

Paths are stored as the bytes of the name (a BLOB, compared as bytes: the same order as UTF-8 text), so a
name that is not UTF-8 (held as a surrogate escape, as the tar reader and ``os.scandir`` give it) is looked
up like any other.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from .atomic import atomic_path
from .union import UnionView


class Found(NamedTuple):
    """A path in the image: the providing layer's position, its type and size."""

    layer: int
    type: str
    size: int


class PathIndex:
    """Read-only lookups into a built index."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def get(self, path: str) -> Found | None:
        """The entry at ``path`` in the image (no symlink resolution), or None."""
        row = self._db.execute("SELECT layer, type, size FROM p WHERE path = ?", (_key(path),)).fetchone()
        return Found(*row) if row else None

    def children(self, dirpath: str) -> list[tuple[str, int]]:
        """(path, size) of the entries directly in ``dirpath``: a range scan of the primary key, so the cost
        is the directory's subtree, not the image."""
        prefix = _key(dirpath.rstrip("/") + "/")
        cur = self._db.execute("SELECT path, size FROM p WHERE path > ? AND path < ?",
                               (prefix, prefix[:-1] + b"0"))  # "0" follows "/": the end of the subtree
        return [(p.decode("utf-8", "surrogateescape"), size) for p, size in cur if b"/" not in p[len(prefix):]]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def build(view: UnionView, dest: Path) -> None:
    """Write the index of ``view`` to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE p (path BLOB PRIMARY KEY, layer INTEGER, type TEXT, size INTEGER) WITHOUT ROWID")
        db.executemany("INSERT INTO p VALUES (?, ?, ?, ?)",
                       ((_key(u.entry.path), u.layer, u.entry.type, u.entry.size) for u in view.entries()))
        db.commit()
        db.close()
