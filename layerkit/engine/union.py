"""The union view: read-only layers stacked bottom to top, upper entries hiding lower ones.

Built from the per-layer indexes alone (tar headers and data offsets), so no layer is extracted. Lookup
semantics follow the OCI image spec's layer.md and overlayfs:

- a whiteout ``.wh.NAME`` deletes NAME (and everything below it) from the layers *below*; an opaque
  marker ``.wh..wh..opq`` hides everything below in its directory. Both act only on lower layers,
  wherever they stand in the tar: what the same layer adds survives them;
- a non-directory hides a lower directory of the same path with all its children; a directory over a
  directory merges;
- a path missing its parent directories gets implicit ones (as tar extraction would create them).

The view is a dict from path to the providing layer, merged a layer at a time with dict and set
operations over the layer's index columns (:mod:`.layerindex`): what costs Python work per path is only
what a layer deletes or implies. Entry objects are made when a path is read. Per-layer change records
(:meth:`UnionView.changes`) need an object per entry, so they are computed on first request, by the same
merge run again with recording on.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import (
    NotADirectory,  # noqa: F401 - defined there, named here too
    NotFound,
)
from .layerindex import Columns, Entry, marker_target
from .symlinks import resolve_in_root


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
    """The merged tree of ``layers`` (bottom first, :class:`~.layerindex.LayerIndex` objects). ``diff_ids``
    name the layers for output."""

    def __init__(self, layers: list, *, record: bool = False) -> None:
        self.layers = list(layers)
        self.diff_ids = [li.diff_id for li in self.layers]
        self.base: UnionView | None = None
        self._at: dict[str, int] = {}  # path -> providing layer, or ~layer for an implicit directory
        self._dirs: set[str] = set()  # the paths that are directories
        self._sources: dict[tuple[int, int], tuple[int, int]] = {}  # hardlink -> the file it linked to
        self._kids: dict[str, list[str]] | None = None
        self._memo: dict[str, UnionEntry] = {}
        self._changes: list[list[Change]] | None = [] if record else None
        for i, li in enumerate(self.layers):
            self._apply(i, li.columns, self._changes)

    def stacked(self, top) -> UnionView:
        """A new view with the layer index ``top`` on this one.

        This is what keeps a container's operations cheap: the image's view is built once, and stacking
        the writable layer costs a dict copy plus the work for the entries the writable layer holds.
        """
        v = UnionView.__new__(UnionView)
        v.layers = self.layers + [top]
        v.diff_ids = self.diff_ids + [top.diff_id]
        v.base = self
        v._at = dict(self._at)
        v._dirs = set(self._dirs)
        v._sources = dict(self._sources)
        v._kids = None
        v._memo = {}
        v._changes = None
        v._apply(len(self.layers), top.columns, None)
        return v

    # ---- building --------------------------------------------------------------------------

    def _apply(self, i: int, c: Columns, record: list[list[Change]] | None) -> None:
        """Merge layer ``i`` (its index columns) into the view; with ``record``, append its changes."""
        at, dirs = self._at, self._dirs
        out: dict[str, Change] = {}
        paths, types = c.paths, c.types
        mine = dict.fromkeys(paths, i)  # this layer's entries; the markers are taken out below
        # 1. deletions act on the lower layers only, so they go first
        gone: list[str] = []
        prefixes: list[str] = []
        for k in c.markers:
            raw = paths[k]
            mine.pop(raw, None)
            target = marker_target(raw, types[k])
            if types[k] == "w":
                if target in at:
                    gone.append(target)
                    if target in dirs:
                        prefixes.append(target + "/")
            elif target == "/":
                prefixes.append("/")
            elif target in dirs:
                prefixes.append(target + "/")
        # a non-directory over a lower directory hides the directory's children
        over = (mine.keys() & dirs) - c.dirs if dirs else set()
        prefixes.extend(p + "/" for p in over)
        if prefixes:
            starts = tuple(prefixes)
            gone.extend([p for p in at if p.startswith(starts)])
        if record is not None:
            for p in gone:
                if p not in out:
                    out[p] = Change("deleted", p, None, self._make(p), i)
        for p in gone:
            at.pop(p, None)
        dirs.difference_update(gone)
        # 2. parent directories the layer needs but does not list
        odd: list[str] = []
        for p in c.implied:
            if p in mine:
                odd.append(p)  # the layer lists a non-directory where it also needs a directory
            elif p not in at or p not in dirs:
                if record is not None:
                    _record(out, p, _implicit_dir(p), self._make(p), i)
                at[p] = ~i
                dirs.add(p)
        # 3. this layer's own entries; a later entry for the same path in the tar wins
        if record is not None:
            pos = c.position()
            for p in mine:
                _record(out, p, c.entry(pos[p]), self._make(p), i)
        at.update(mine)
        dirs.update(c.dirs)
        dirs.difference_update(over)
        for p in odd:
            at[p] = ~i
            dirs.add(p)
        # 4. a hardlink keeps the file it linked to when its layer was applied
        for k in c.hardlinks:
            link = c.links[k]
            j = at.get(link)
            if j is None or j < 0:
                continue
            lc = self.layers[j].columns
            q = lc.position()[link]
            code = lc.types[q]
            if code == "h":
                src = self._sources.get((j, q))
                if src is not None:
                    self._sources[(i, k)] = src
            elif code == "f":
                self._sources[(i, k)] = (j, q)
        if record is not None:
            record.append(list(out.values()))

    # ---- reading ---------------------------------------------------------------------------

    def _make(self, path: str) -> UnionEntry | None:
        v = self._at.get(path)
        if v is None:
            return None
        if v < 0:
            return UnionEntry(_implicit_dir(path), ~v)
        li = self.layers[v]
        k = li.columns.position()[path]
        src = self._sources.get((v, k))
        source = UnionEntry(self.layers[src[0]].entry(src[1]), src[0]) if src is not None else None
        return UnionEntry(li.entry(k), v, source)

    def _get(self, path: str) -> UnionEntry | None:
        ue = self._memo.get(path)
        if ue is None:
            ue = self._make(path)
            if ue is not None:
                self._memo[path] = ue
        return ue

    def _children(self) -> dict[str, list[str]]:
        """directory -> names directly in it (made on first listing)."""
        if self._kids is None:
            kids: dict[str, list[str]] = {}
            for p in self._at:
                i = p.rfind("/")
                parent = p[:i] or "/"
                names = kids.get(parent)
                if names is None:
                    kids[parent] = [p[i + 1:]]
                else:
                    names.append(p[i + 1:])
            self._kids = kids
        return self._kids

    def __len__(self) -> int:
        return len(self._at)

    def get(self, path: str) -> UnionEntry | None:
        """The entry at exactly ``path`` (no symlink resolution), or None."""
        return self._get(_norm(path))

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """Resolve symlinks inside the view, as a chroot would: ``..`` never climbs above ``/`` and
        absolute link targets are taken from the view's root. Returns the resolved path, which may
        not exist (its parent does)."""

        def step(cand: str, more: bool) -> str | None:
            ue = self._get(cand)
            if ue is not None and ue.entry.type == "symlink" and (more or follow_last):
                return ue.entry.link
            if more and ue is not None and ue.entry.type != "dir":
                raise NotADirectory(f"{path}: not a directory")
            if more and ue is None:
                raise NotFound(f"{path}: no such file or directory")
            return None

        return resolve_in_root(_norm(path), step, NotFound)

    def lookup(self, path: str, follow: bool = True) -> UnionEntry:
        """The entry a path names, following symlinks inside the view; :class:`NotFound` if none."""
        p = self.resolve(path, follow_last=follow)
        if p == "/":
            return UnionEntry(_implicit_dir("/"), -1)
        ue = self._get(p)
        if ue is None:
            raise NotFound(f"{path}: no such file or directory")
        return ue

    def listdir(self, path: str = "/") -> list[UnionEntry]:
        """Entries directly in a directory, sorted by name."""
        p = self.resolve(path)
        if p != "/":
            ue = self._get(p)
            if ue is None:
                raise NotFound(f"{path}: no such file or directory")
            if ue.entry.type != "dir":
                return [ue]
        names = sorted(self._children().get(p, ()))
        return [self._get(posixpath.join(p, n)) for n in names]

    def walk(self, path: str = "/") -> Iterator[UnionEntry]:
        """Every entry below ``path`` (not ``path`` itself), parents before children, sorted by name."""
        kids = self._children()
        stack = [(self.resolve(path), None)]
        while stack:
            d, it = stack[-1]
            if it is None:
                it = iter(sorted(kids.get(d, ())))
                stack[-1] = (d, it)
            name = next(it, None)
            if name is None:
                stack.pop()
                continue
            ue = self._get(posixpath.join(d, name))
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
        """All entries, in no particular order."""
        return [self._get(p) for p in self._at]

    def changes(self, layer: int) -> list[Change]:
        """What layer ``layer`` adds, modifies and deletes relative to the layers below."""
        if self._changes is None:
            self._changes = UnionView(self.layers, record=True)._changes
        return list(self._changes[layer])


def _record(changes: dict[str, Change], path: str, e: Entry, below: UnionEntry | None, i: int) -> None:
    """Record that layer ``i`` sets ``e`` at ``path`` where ``below`` was (None: nothing, or hidden already)."""
    if below is not None and below.layer == i:
        prior = changes.get(path)
        if prior is not None:
            changes[path] = Change(prior.kind, path, e, prior.below, i)
    elif below is not None:
        changes[path] = Change("modified", path, e, below, i)
    elif path in changes and changes[path].kind == "deleted":
        # a whiteout and a re-add of the same name in one layer: the lower entry is replaced
        changes[path] = Change("modified", path, e, changes[path].below, i)
    else:
        changes[path] = Change("added", path, e, None, i)


def _norm(path: str) -> str:
    p = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if p in ("/", "//") else p.replace("//", "/")


def mode_string(e: Entry) -> str:
    """``drwxr-xr-x`` style mode for text listings."""
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR, "block": stat.S_IFBLK,
            "fifo": stat.S_IFIFO}.get(e.type, stat.S_IFREG)
    return stat.filemode(kind | e.mode)
