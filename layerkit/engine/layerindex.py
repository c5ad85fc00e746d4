"""The per-layer index: every tar entry of a layer, kept as columns, and its cache file.

A layer never changes, so its index is built once (while the blob is ingested, or later from the stored
blob) and cached in ``STORE/layerkit/layers/<diff_id hex>.idx``. The index is columnar (one list of paths,
one string of type codes, one array per number) because that is what makes the union view fast: a
100-layer, 100,000-entry image loads from these files with a few C-level calls per layer
(``bytes.split``, ``array.frombytes``) and is merged with dict and set operations, never one Python object
per entry (``benchmarks/union_bench.py``). :class:`Entry` objects are made only for the entries asked for.

``paths[k]`` is the member's normalized path as it stands in the tar; for a whiteout or opaque marker that
is the marker's own path (``/a/.wh.b``), so a marker never collides with an entry of the same layer. The
:class:`Entry` of a marker carries the path it acts on (``/a/b``, or ``/a`` for ``.wh..wh..opq``).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_file

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# one character per entry type in the ``types`` column
TYPE_CODES = {"file": "f", "dir": "d", "symlink": "l", "hardlink": "h", "char": "c", "block": "b",
              "fifo": "p", "whiteout": "w", "opaque": "o"}
TYPE_NAMES = {c: n for n, c in TYPE_CODES.items()}

_MAGIC = b"layerkit layer index 2\n"
_INT_COLUMNS = ("sizes", "modes", "uids", "gids", "offsets")


@dataclass(slots=True)
class Entry:
    """One tar entry of a layer, as indexed.

    ``type`` is one of ``file dir symlink hardlink char block fifo`` for ordinary entries, ``whiteout``
    for ``.wh.NAME`` markers (``path`` is then the path deleted below) and ``opaque`` for
    ``.wh..wh..opq`` (``path`` is the directory whose lower contents are hidden).
    """

    path: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    link: str
    offset: int


def marker_path(entry_path: str, kind: str) -> str:
    """The tar path of a whiteout (``/a/b`` -> ``/a/.wh.b``) or opaque marker (``/a`` -> ``/a/.wh..wh..opq``)."""
    if kind == "opaque":
        return posixpath.join(entry_path, OPAQUE_MARKER)
    parent, base = posixpath.split(entry_path)
    return posixpath.join(parent, WHITEOUT_PREFIX + base)


def marker_target(raw: str, code: str) -> str:
    """Inverse of :func:`marker_path`: the path a marker at tar path ``raw`` acts on."""
    i = raw.rfind("/")
    parent = raw[:i] or "/"
    if code == "o":
        return parent
    return posixpath.join(parent, raw[i + 1 + len(WHITEOUT_PREFIX):])


class Columns:
    """The entries of one layer as parallel columns, in tar order.

    Also holds what the union view needs without looking at every entry again: the marker positions,
    the paths that end up directories, the parent directories the layer implies without listing them,
    and the positions of hardlinks. A path listed twice counts by its last entry, as when applied.
    """

    __slots__ = ("paths", "types", "sizes", "modes", "uids", "gids", "mtimes", "links", "offsets",
                 "markers", "dirs", "implied", "hardlinks", "_position")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.types = ""
        self.sizes = array("q")
        self.modes = array("q")
        self.uids = array("q")
        self.gids = array("q")
        self.mtimes = array("d")
        self.links: list[str] = []
        self.offsets = array("q")
        self.markers: list[int] = []
        self.dirs: frozenset[str] = frozenset()
        self.implied: frozenset[str] = frozenset()
        self.hardlinks: list[int] = []
        self._position: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_rows(cls, paths: list[str], types: list[str] | str, sizes, modes, uids, gids, mtimes,
                  links: list[str], offsets) -> Columns:
        """Columns from per-column sequences (``types`` as one-character codes); derives the rest."""
        c = cls()
        c.paths, c.types, c.links = paths, "".join(types), links
        c.sizes, c.modes, c.uids, c.gids = array("q", sizes), array("q", modes), array("q", uids), array("q", gids)
        c.mtimes, c.offsets = array("d", mtimes), array("q", offsets)
        c._derive()
        return c

    @classmethod
    def from_entries(cls, entries: list[Entry]) -> Columns:
        """Columns of a list of entries (a container's writable layer, tests)."""
        codes = [TYPE_CODES[e.type] for e in entries]
        paths = [marker_path(e.path, e.type) if c in "wo" else e.path for e, c in zip(entries, codes, strict=True)]
        return cls.from_rows(paths, codes, [e.size for e in entries], [e.mode for e in entries],
                             [e.uid for e in entries], [e.gid for e in entries], [e.mtime for e in entries],
                             [e.link for e in entries], [e.offset for e in entries])

    def _derive(self) -> None:
        types, paths = self.types, self.paths
        self.markers = [m.start() for m in re.finditer("[wo]", types)]
        if len(set(paths)) == len(paths):
            final = None
            dirs = [paths[m.start()] for m in re.finditer("d", types)]
            self.hardlinks = [m.start() for m in re.finditer("h", types)]
        else:  # a path listed twice: its last entry decides
            final = self.position()
            dirs = [p for p, k in final.items() if types[k] == "d"]
            self.hardlinks = [k for k in final.values() if types[k] == "h"]
        self.dirs = frozenset(dirs)
        marker_set = {paths[k] for k in self.markers}
        parents = {p[:p.rfind("/")] for p in paths if p not in marker_set} if marker_set else \
            {p[:p.rfind("/")] for p in paths}
        seen: set[str] = set()
        for q in parents:
            while q and q not in seen:
                seen.add(q)
                q = q[:q.rfind("/")]
        self.implied = frozenset(seen - self.dirs)

    def position(self) -> dict[str, int]:
        """path -> position of its (last) entry."""
        if self._position is None:
            self._position = dict(zip(self.paths, range(len(self.paths)), strict=True))
        return self._position

    def entry(self, k: int) -> Entry:
        """The :class:`Entry` at position ``k``."""
        code = self.types[k]
        path = self.paths[k]
        if code in "wo":
            path = marker_target(path, code)
        mtime = self.mtimes[k]
        return Entry(path, TYPE_NAMES[code], self.sizes[k], self.modes[k], self.uids[k], self.gids[k],
                     int(mtime) if mtime.is_integer() else mtime, self.links[k], self.offsets[k])

    def docker_size(self) -> tuple[int, int]:
        """Docker's layer size (regular files, hardlinks once, symlink target lengths) and the file count."""
        size = sum(s for s, t in zip(self.sizes, self.types, strict=True) if t == "f")
        size += sum(len(os.fsencode(self.links[m.start()])) for m in re.finditer("l", self.types))
        t = self.types
        return size, len(t) - t.count("d") - t.count("w") - t.count("o")


class LayerIndex:
    """What a layer holds, keyed by diff_id (a layer never changes, so this is cached forever).

    ``size`` is Docker's size: the bytes of the regular files (each hardlinked inode once) plus the
    length of each symlink's target. ``tar_size`` is the uncompressed tar's length. ``files`` counts the
    entries that are not directories or whiteout markers. Built from ``entries`` or from ``columns``;
    the other form is made when first asked for.
    """

    def __init__(self, diff_id: str, tar_size: int, size: int, files: int, entries: list[Entry] | None = None,
                 *, columns: Columns | None = None) -> None:
        self.diff_id = diff_id
        self.tar_size = tar_size
        self.size = size
        self.files = files
        self._entries = entries
        self._columns = columns if columns is not None else (None if entries is not None else Columns())

    @property
    def columns(self) -> Columns:
        """The columnar form."""
        if self._columns is None:
            self._columns = Columns.from_entries(self._entries or [])
        return self._columns

    @property
    def entries(self) -> list[Entry]:
        """Every entry in tar order (made on first use from the columns)."""
        if self._entries is None:
            c = self._columns
            self._entries = [c.entry(k) for k in range(len(c))]
        return self._entries

    def entry(self, k: int) -> Entry:
        """The entry at position ``k``, without making the others."""
        if self._entries is not None:
            return self._entries[k]
        return self.columns.entry(k)

    def __repr__(self) -> str:
        return f"LayerIndex({self.diff_id}, {len(self.columns)} entries)"


def write_index(index_dir: Path, index: LayerIndex) -> Path:
    """Write a layer index atomically (temporary file then rename); indexes are caches, never edited."""
    index_dir.mkdir(parents=True, exist_ok=True)
    final = index_dir / (index.diff_id.split(":", 1)[1] + ".idx")
    c = index.columns
    sections = [
        "\0".join(c.paths).encode("utf-8", "surrogateescape"),
        c.types.encode("ascii"),
        "\0".join(c.links).encode("utf-8", "surrogateescape"),
        *(getattr(c, name).tobytes() for name in _INT_COLUMNS),
        c.mtimes.tobytes(),
        array("q", c.markers).tobytes(),
        array("q", c.hardlinks).tobytes(),
        "\0".join(c.dirs).encode("utf-8", "surrogateescape"),
        "\0".join(c.implied).encode("utf-8", "surrogateescape"),
    ]
    crc = 0
    for s in sections:
        crc = zlib.crc32(s, crc)
    head = {"diff_id": index.diff_id, "tar_size": index.tar_size, "size": index.size, "files": index.files,
            "count": len(c), "byteorder": sys.byteorder, "sections": [len(s) for s in sections], "crc32": crc}
    with atomic_file(final, fsync=False) as f:  # a cache: rebuilt from the layer when lost
        f.write(_MAGIC + json.dumps(head, separators=(",", ":")).encode() + b"\n")
        for s in sections:
            f.write(s)
    final.with_suffix(".json").unlink(missing_ok=True)  # the JSON index earlier versions wrote
    return final


def _strings(data: bytes, count: int | None = None) -> list[str]:
    """Split a NUL-joined section; ``count`` tells one empty string from none."""
    if not data:
        return [""] * count if count else []
    return data.decode("utf-8", "surrogateescape").split("\0")


def read_index(index_dir: Path, diff_id: str) -> LayerIndex | None:
    """Read a cached layer index, or None when there is none (or it is unreadable or of another version)."""
    p = index_dir / (diff_id.split(":", 1)[1] + ".idx")
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if not data.startswith(_MAGIC):
        return None
    end = data.find(b"\n", len(_MAGIC))
    try:
        head = json.loads(data[len(_MAGIC):end])
        n = head["count"]
        mv = memoryview(data)
        pos = end + 1
        parts = []
        for length in head["sections"]:
            parts.append(mv[pos:pos + length])
            pos += length
        if pos != len(data) or len(parts) != 13 or zlib.crc32(mv[end + 1:]) != head["crc32"]:
            return None  # a damaged cache is rebuilt from the blob, never trusted
        c = Columns()
        c.paths = _strings(bytes(parts[0]), n)
        c.types = bytes(parts[1]).decode("ascii")
        c.links = _strings(bytes(parts[2]), n)
        for name, part in zip(_INT_COLUMNS, parts[3:8], strict=True):
            getattr(c, name).frombytes(part)
        c.mtimes.frombytes(parts[8])
        markers, hardlinks = array("q"), array("q")
        markers.frombytes(parts[9])
        hardlinks.frombytes(parts[10])
        if head["byteorder"] != sys.byteorder:
            for a in (c.sizes, c.modes, c.uids, c.gids, c.offsets, c.mtimes, markers, hardlinks):
                a.byteswap()
        c.markers, c.hardlinks = markers.tolist(), hardlinks.tolist()
        c.dirs = frozenset(_strings(bytes(parts[11])))
        c.implied = frozenset(_strings(bytes(parts[12])))
        if not (len(c.paths) == len(c.types) == len(c.links) == len(c.sizes) == len(c.mtimes) == n):
            return None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return LayerIndex(head["diff_id"], head["tar_size"], head["size"], head["files"], columns=c)
