"""The union view: read-only layers stacked bottom to top, upper entries hiding lower ones.

Built from the per-layer indexes alone (tar headers and data offsets), so no layer is extracted. Lookup
semantics follow the OCI image spec's layer.md and overlayfs:

- a whiteout ``.wh.NAME`` deletes NAME (and everything below it) from the layers *below*; an opaque
  marker ``.wh..wh..opq`` hides everything below in its directory. Both act only on lower layers,
  wherever they stand in the tar: what the same layer adds survives them;
- a non-directory hides a lower directory of the same path with all its children; a directory over a
  directory merges;
- a path missing its parent directories gets implicit ones (as tar extraction would create them).
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import NotFound
from .layer import Entry, LayerIndex

MAX_SYMLINKS = 40  # Linux's limit on symlinks followed during one lookup


class NotADirectory(NotFound):
    """A path component is not a directory."""


@dataclass(slots=True)
class UnionEntry:
    """One path in the union view and the layer that provides it (``layer`` is its position, bottom 0).

    For a hardlink, ``source`` is the entry it linked to when its layer was applied: that file keeps
    the link's bytes even when a later layer deletes or replaces the path the link names.
    """

    entry: Entry
    layer: int
    source: UnionEntry | None = None

    @property
    def path(self) -> str:
        return self.entry.path

    @property
    def type(self) -> str:
        return self.entry.type


@dataclass(slots=True)
class Change:
    """What one layer does relative to the layers below.

    ``kind`` is ``added`` (nothing at the path below), ``modified`` (overrides a lower entry) or
    ``deleted`` (a lower entry hidden by a whiteout, an opaque directory, or a non-directory over a
    lower directory). ``below`` is the lower entry it replaces or hides, if any.
    """

    kind: str
    path: str
    entry: Entry | None
    below: UnionEntry | None
    layer: int


def _implicit_dir(path: str) -> Entry:
    return Entry(path, "dir", 0, 0o755, 0, 0, 0, "", -1)


class UnionView:
    """The merged tree of ``layers`` (bottom first). ``diff_ids`` name the layers for output."""

    def __init__(self, layers: list[LayerIndex]) -> None:
        self.layers = list(layers)
        self.diff_ids = [li.diff_id for li in layers]
        self.base: UnionView | None = None
        self._entries: dict[str, UnionEntry] = {}
        self._children: dict[str, set[str]] = {"/": set()}
        self._owned: set[str] | None = None  # None: every children set is this view's own
        self._changes: list[list[Change]] = []
        for i, li in enumerate(layers):
            self._changes.append(self._apply(i, li.entries))

    def stacked(self, top: LayerIndex) -> UnionView:
        """A new view with ``top`` on this one, sharing this view's tables until they change.

        This is what keeps a container's ``diff`` cheap: the image's view is built once, and stacking
        the writable layer costs a dict copy plus the work for the entries the writable layer holds.
        """
        v = UnionView.__new__(UnionView)
        v.layers = self.layers + [top]
        v.diff_ids = self.diff_ids + [top.diff_id]
        v.base = self
        v._entries = dict(self._entries)
        v._children = dict(self._children)
        v._owned = set()
        v._changes = list(self._changes)
        v._changes.append(v._apply(len(self.layers), top.entries))
        return v

    def _kids(self, path: str) -> set[str]:
        """The children set of ``path``, copied first if it is shared with a base view."""
        kids = self._children.get(path)
        if kids is None:
            kids = self._children[path] = set()
            if self._owned is not None:
                self._owned.add(path)
        elif self._owned is not None and path not in self._owned:
            kids = self._children[path] = set(kids)
            self._owned.add(path)
        return kids

    # ---- building --------------------------------------------------------------------------

    def _remove_tree(self, path: str, layer: int, out: list[Change]) -> None:
        """Remove ``path`` and its descendants, recording each as deleted."""
        old = self._entries.pop(path, None)
        if old is None:
            return
        out.append(Change("deleted", path, None, old, layer))
        for name in list(self._children.pop(path, ())):
            self._remove_tree(posixpath.join(path, name), layer, out)
        if self._owned is not None:
            self._owned.discard(path)
        parent = posixpath.dirname(path)
        if parent in self._children:
            self._kids(parent).discard(posixpath.basename(path))

    def _ensure_parents(self, path: str, layer: int, changes: dict[str, Change]) -> None:
        """Create implicit directories for ``path``'s missing parents, recorded as this layer's changes."""
        parent = _parent(path)
        if parent == "/" or parent in self._entries:
            below = self._entries.get(parent)
            if below is not None and below.entry.type != "dir":
                # a lower non-directory sits where this layer needs a directory: the tar replaces it
                self._remove_tree(parent, layer, [])
                self._set(_implicit_dir(parent), layer)
                _record(changes, self._entries[parent].entry, below, layer)
            return
        self._ensure_parents(parent, layer, changes)
        self._set(_implicit_dir(parent), layer)
        _record(changes, self._entries[parent].entry, None, layer)

    def _set(self, entry: Entry, layer: int) -> None:
        path = entry.path
        source = None
        if entry.type == "hardlink":
            source = self._entries.get(entry.link)
            if source is not None and source.entry.type == "hardlink":
                source = source.source
            if source is not None and source.entry.type != "file":
                source = None
        self._entries[path] = UnionEntry(entry, layer, source)
        i = path.rfind("/")
        self._kids(path[:i] or "/").add(path[i + 1:])
        if entry.type == "dir":
            self._kids(entry.path)

    def _apply(self, i: int, entries: list[Entry]) -> list[Change]:
        changes: dict[str, Change] = {}
        hidden: list[Change] = []
        # 1. deletions act on the lower layers only, so they go first
        for e in entries:
            if e.type == "whiteout":
                self._remove_tree(e.path, i, hidden)
            elif e.type == "opaque":
                for name in list(self._children.get(e.path, ())):
                    self._remove_tree(posixpath.join(e.path, name), i, hidden)
        for c in hidden:
            changes[c.path] = c
        # 2. this layer's own entries; a later entry for the same path in the tar wins
        for e in entries:
            if e.type in ("whiteout", "opaque"):
                continue
            below = self._entries.get(e.path)
            both_dirs = below is not None and below.entry.type == "dir" and e.type == "dir"
            if below is not None and not both_dirs:
                sink: list[Change] = []
                self._remove_tree(e.path, i, sink)
                if below.layer != i:
                    for c in sink:
                        changes.setdefault(c.path, c)
            self._ensure_parents(e.path, i, changes)
            self._set(e, i)
            _record(changes, e, below, i)
        return list(changes.values())

    # ---- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> UnionEntry | None:
        """The entry at exactly ``path`` (no symlink resolution), or None."""
        return self._entries.get(_norm(path))

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """Resolve symlinks inside the view, as a chroot would: ``..`` never climbs above ``/`` and
        absolute link targets are taken from the view's root. Returns the resolved path, which may
        not exist (its parent does)."""
        parts = [p for p in _norm(path).split("/") if p]
        resolved = "/"
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                resolved = posixpath.dirname(resolved)
                continue
            cand = posixpath.join(resolved, name)
            ue = self._entries.get(cand)
            if ue is not None and ue.entry.type == "symlink" and (parts or follow_last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise NotFound(f"{path}: too many levels of symbolic links")
                target = ue.entry.link
                new = [p for p in target.split("/") if p and p != "."]
                if target.startswith("/"):
                    resolved = "/"
                parts = new + parts
                continue
            if parts and ue is not None and ue.entry.type != "dir":
                raise NotADirectory(f"{path}: not a directory")
            if parts and ue is None:
                raise NotFound(f"{path}: no such file or directory")
            resolved = cand
        return resolved

    def lookup(self, path: str, follow: bool = True) -> UnionEntry:
        """The entry a path names, following symlinks inside the view; :class:`NotFound` if none."""
        p = self.resolve(path, follow_last=follow)
        if p == "/":
            return UnionEntry(_implicit_dir("/"), -1)
        ue = self._entries.get(p)
        if ue is None:
            raise NotFound(f"{path}: no such file or directory")
        return ue

    def listdir(self, path: str = "/") -> list[UnionEntry]:
        """Entries directly in a directory, sorted by name."""
        p = self.resolve(path)
        if p != "/":
            ue = self._entries.get(p)
            if ue is None:
                raise NotFound(f"{path}: no such file or directory")
            if ue.entry.type != "dir":
                return [ue]
        names = sorted(self._children.get(p, ()))
        return [self._entries[posixpath.join(p, n)] for n in names]

    def walk(self, path: str = "/") -> Iterator[UnionEntry]:
        """Every entry below ``path`` (not ``path`` itself), parents before children, sorted by name."""
        stack = [(self.resolve(path), None)]
        while stack:
            d, it = stack[-1]
            if it is None:
                it = iter(sorted(self._children.get(d, ())))
                stack[-1] = (d, it)
            name = next(it, None)
            if name is None:
                stack.pop()
                continue
            ue = self._entries[posixpath.join(d, name)]
            yield ue
            if ue.entry.type == "dir":
                stack.append((ue.entry.path, None))

    def data_entry(self, ue: UnionEntry) -> UnionEntry:
        """The entry whose bytes ``ue`` reads: itself, or for a hardlink the file it was linked to."""
        if ue.entry.type != "hardlink":
            return ue
        if ue.source is not None:
            return ue.source
        return self.lookup(ue.entry.link, follow=False)

    def entries(self) -> Iterable[UnionEntry]:
        """All entries, in no particular order (fast)."""
        return self._entries.values()

    def changes(self, layer: int) -> list[Change]:
        """What layer ``layer`` adds, modifies and deletes relative to the layers below."""
        return list(self._changes[layer])


def _record(changes: dict[str, Change], e: Entry, below: UnionEntry | None, i: int) -> None:
    """Record that layer ``i`` sets ``e`` where ``below`` was (None: nothing, or hidden already)."""
    if below is not None and below.layer == i:
        prior = changes.get(e.path)
        if prior is not None:
            changes[e.path] = Change(prior.kind, e.path, e, prior.below, i)
    elif below is not None:
        changes[e.path] = Change("modified", e.path, e, below, i)
    elif e.path in changes and changes[e.path].kind == "deleted":
        # a whiteout and a re-add of the same name in one layer: the lower entry is replaced
        changes[e.path] = Change("modified", e.path, e, changes[e.path].below, i)
    else:
        changes[e.path] = Change("added", e.path, e, None, i)


def _parent(path: str) -> str:
    """posixpath.dirname for clean absolute paths, without its overhead (it dominated view building)."""
    return path[: path.rfind("/")] or "/"


def _norm(path: str) -> str:
    p = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if p in ("/", "//") else p.replace("//", "/")


def mode_string(e: Entry) -> str:
    """``drwxr-xr-x`` style mode for text listings."""
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR, "block": stat.S_IFBLK,
            "fifo": stat.S_IFIFO}.get(e.type, stat.S_IFREG)
    return stat.filemode(kind | e.mode)
