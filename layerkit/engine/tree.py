"""dive's layer tree: the file tree of an image up to one layer, with directory sizes rolled up and each path
marked added, modified or removed.

Two modes, as dive's: *layer* (the default) compares the union of layers ``0..N-1`` with the union of
``0..N``, so the marks are what layer N changed; *aggregate* compares layer 0 with the union of ``0..N``,
so the marks are everything the layers above the base changed. The tree holds the union up to N plus what
was removed (kept in the tree, marked, as dive shows them).

Marks follow dive's ``CompareAndMark``: a path that is new is ``added``; one that was there and is gone is
``removed`` (with everything below it); a non-directory that an upper layer provides again is ``modified``
(dive compares content hashes; the index has no content hashes, so a rewrite with identical bytes counts
as modified here); a directory is ``modified`` when its own type, mode or owner changed or when anything
below it changed, as dive merges its children's marks.

Sizes are Docker's: a file's bytes, a symlink's target length, a hardlink the size of its file. A
directory's ``dir_size`` is ``du``-like: the sizes below it, each file (inode) once however many hardlinks
name it; removed paths count only in removed directories (dive's ``GetSize``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..errors import NotFound
from .union import UnionEntry, UnionView

ADDED, MODIFIED, REMOVED = "added", "modified", "removed"


@dataclass(slots=True)
class TreeRow:
    """One path of the tree, in tree order (parents first, names sorted)."""

    path: str
    depth: int  # 0 for the children of the tree's root
    type: str
    size: int
    dir_size: int
    change: str  # added, modified, removed, or "" (unchanged)
    layer: int  # position of the providing layer (of the removed entry, for a removed path)
    mode: int
    uid: int
    gid: int
    link: str


def entry_size(ue: UnionEntry, view: UnionView) -> int:
    """Docker's size of one path: a file's bytes, a symlink's target length, a hardlink its file's size."""
    e = ue.entry
    if e.type == "file":
        return e.size
    if e.type == "symlink":
        return len(e.link.encode("utf-8", "surrogateescape"))
    if e.type == "hardlink":
        try:
            return view.data_entry(ue).entry.size
        except NotFound:
            return 0
    return 0


def _inode(ue: UnionEntry, view: UnionView) -> tuple[int, str] | None:
    """What identifies the bytes a path holds (so hardlinks count once), or None for no bytes."""
    if ue.entry.type == "hardlink":
        try:
            data = view.data_entry(ue)
        except NotFound:
            return None
        return (data.layer, data.entry.path)
    if ue.entry.type in ("file", "symlink"):
        return (ue.layer, ue.entry.path)
    return None


def _ancestors(path: str, root: str) -> list[str]:
    """The directories above ``path`` and below ``root`` (``root`` itself is not a row of the tree)."""
    prefix = root.rstrip("/") + "/"
    out = []
    p = posixpath.dirname(path)
    while p != root and p.startswith(prefix):
        out.append(p)
        p = posixpath.dirname(p)
    return out


def layer_tree(layers: list, n: int, aggregate: bool = False, path: str = "/") -> list[TreeRow]:
    """The tree of ``layers[:n + 1]`` (layer indexes, bottom first) below ``path``, marked against
    ``layers[:n]`` (``aggregate``: against ``layers[:1]``). Rows in tree order."""
    if not 0 <= n < len(layers):
        raise IndexError(f"layer {n} does not exist (the image has {len(layers)})")
    top = UnionView(layers[:n + 1])
    base_count = 1 if aggregate else n
    below = UnionView(layers[:base_count]) if base_count else UnionView([])
    root = posixpath.normpath("/" + path.lstrip("/"))
    prefix = root.rstrip("/") + "/"

    def inside(p: str) -> bool:
        return p.startswith(prefix)

    rows: dict[str, TreeRow] = {}
    inodes: dict[tuple[int, str], tuple[int, list[str]]] = {}
    for ue in top.entries():
        p = ue.entry.path
        if not inside(p):
            continue
        e = ue.entry
        old = below.get(p)
        if old is None:
            change = ADDED
        elif ue.layer < base_count:
            change = ""  # still provided by a layer of the base
        elif e.type == "dir" and old.entry.type == "dir":
            same = (e.mode, e.uid, e.gid) == (old.entry.mode, old.entry.uid, old.entry.gid)
            change = "" if same else MODIFIED
        else:
            change = MODIFIED
        size = entry_size(ue, top)
        rows[p] = TreeRow(p, 0, e.type, size, 0, change, ue.layer, e.mode, e.uid, e.gid, e.link)
        key = _inode(ue, top)
        if key is not None:
            inodes.setdefault(key, (size, []))[1].append(p)
    removed_inodes: dict[tuple[int, str], tuple[int, list[str]]] = {}
    for ue in below.entries():
        p = ue.entry.path
        if not inside(p) or top.get(p) is not None:
            continue
        e = ue.entry
        size = entry_size(ue, below)
        rows[p] = TreeRow(p, 0, e.type, size, 0, REMOVED, ue.layer, e.mode, e.uid, e.gid, e.link)
        key = _inode(ue, below)
        if key is not None:
            removed_inodes.setdefault(key, (size, []))[1].append(p)

    # directory sizes: each inode once per directory that holds any of its paths
    for table, only_removed in ((inodes, False), (removed_inodes, True)):
        for size, paths in table.values():
            dirs = {d for p in paths for d in _ancestors(p, root)}
            for d in dirs:
                r = rows.get(d)
                if r is not None and (not only_removed or r.change == REMOVED):
                    r.dir_size += size

    # a directory is modified when anything below it changed (dive merges its children's marks)
    for p in sorted(rows, key=len, reverse=True):
        r = rows[p]
        if r.change:
            parent = rows.get(posixpath.dirname(p))
            while parent is not None and not parent.change:
                parent.change = MODIFIED
                parent = rows.get(posixpath.dirname(parent.path))

    kids: dict[str, list[str]] = {}
    for p in rows:
        kids.setdefault(posixpath.dirname(p), []).append(p)
    out: list[TreeRow] = []
    stack = [(root, iter(sorted(kids.get(root, ()))), 0)]
    while stack:
        _, it, depth = stack[-1]
        p = next(it, None)
        if p is None:
            stack.pop()
            continue
        r = rows[p]
        r.depth = depth
        if r.type != "dir":
            r.dir_size = r.size
        out.append(r)
        if p in kids:
            stack.append((p, iter(sorted(kids[p])), depth + 1))
    return out


def only_changes(rows: list[TreeRow]) -> list[TreeRow]:
    """The changed rows with the directories that lead to them (a directory is marked when anything
    below it changed, so this is the marked rows)."""
    return [r for r in rows if r.change]
