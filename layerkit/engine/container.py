"""Containers: an image plus one writable layer, with copy-on-write file operations, diff and commit.

A container lives in ``STORE/layerkit/containers/ID/``: ``config.json`` (name, image, command, state),
``upper/`` (the writable layer in overlayfs upper-dir format, see :mod:`.upper`) and ``work/`` (the
overlay work dir used by ``run``). Stored layers are never modified: reading goes through the union
view; changing a lower file copies it up first; deleting a lower entry records a whiteout.

The containers of a store are found here (:func:`list_containers`, :func:`find_container`,
:func:`container_users`): the store knows images and layers only and never imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import (
    Conflict,
    ContainerNotFound,
    FileOpError,  # noqa: F401 - defined there, named here too
    LayerkitError,
    MaxDepthExceeded,
    NotFound,
)
from .atomic import atomic_write_json
from .content import iter_entry_bytes
from .humanize import rfc3339
from .image import MAX_LAYERS, Image
from .private import private_dir
from .union import UnionEntry, UnionView
from .upper import make_whiteout, set_opaque, upper_index

if TYPE_CHECKING:  # pragma: no cover
    from .layerindex import LayerIndex
    from .store import Store

# Mount points ``run`` needs; they live in a separate init layer (as Docker's -init layer) so that they
# never show in ``diff`` or in a committed layer.
RUNTIME_DIRS = ("/dev", "/proc", "/sys")
# The files Docker gives every container (bind mounts over its init layer's): what a process writes to them
# never reaches a layer, as in ``docker commit`` and a RUN step of ``docker build``.
RUNTIME_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
# what ``diff`` and ``commit`` leave out of a writable layer
RUNTIME_PATHS = frozenset(RUNTIME_DIRS + RUNTIME_FILES)
_NAME_WORDS = ("brave", "calm", "eager", "fond", "keen", "lucid", "quirky", "witty", "zen", "bold")
_NAME_NOUNS = ("turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "liskov", "torvalds")


@dataclass
class Container:
    """A container of a store; file operations keep Docker's copy-on-write semantics."""

    store: Store = field(repr=False)
    id: str
    name: str
    image_id: str
    image_name: str
    command: list[str]
    created: str
    state: str = "created"
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None

    # ---- paths and persistence ----------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The container's directory in the store."""
        return self.store.meta_dir / "containers" / self.id

    def writable_index(self) -> LayerIndex:
        """The index of the writable layer as ``diff`` and ``commit`` see it (without the runtime's paths)."""
        return upper_index(self.upper, RUNTIME_PATHS)

    @property
    def upper(self) -> Path:
        """The writable layer (overlayfs upper dir)."""
        return self.dir / "upper"

    @property
    def short_id(self) -> str:
        """12-hex ID as Docker prints it."""
        return self.id[:12]

    def to_json(self) -> dict:
        """The persisted record."""
        return {"id": self.id, "name": self.name, "image_id": self.image_id, "image_name": self.image_name,
                "command": self.command, "created": self.created, "state": self.state,
                "exit_code": self.exit_code, "started_at": self.started_at, "finished_at": self.finished_at}

    def save(self) -> None:
        """Write config.json atomically."""
        atomic_write_json(self.dir / "config.json", self.to_json(), fsync=False)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock on the writable layer (a run and a file operation must not interleave)."""
        with open(self.dir / "lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @property
    def image(self) -> Image:
        """The image the container was created from."""
        return self.store.image(self.image_id)

    @property
    def status(self) -> str:
        """``Created``, ``Up``, or ``Exited (0) 3 minutes ago`` as ``docker ps`` shows it."""
        from .humanize import ago, parse_time

        if self.state == "running":
            return "Up"
        if self.state == "exited":
            return f"Exited ({self.exit_code}) {ago(parse_time(self.finished_at))}"
        return "Created"

    # ---- the view -----------------------------------------------------------------------------

    def view(self) -> UnionView:
        """Union view of the image's layers plus the writable layer on top."""
        return self.store.image_view(self.image).stacked(self.writable_index())

    @property
    def top(self) -> int:
        """Position of the writable layer in :meth:`view`."""
        return len(self.image.diff_ids)

    def _host(self, path: str) -> str:
        """Where a container path lives in the upper dir (path already resolved and normalised)."""
        rel = path.lstrip("/")
        if ".." in rel.split("/"):
            raise FileOpError(f"{path}: invalid path")
        return os.path.join(self.upper, rel)

    def open(self, path: str) -> BinaryIO:
        """Open a file for reading (symlinks followed inside the container); never copies anything."""
        view = self.view()
        ue = view.lookup(path)
        return _EntryReader(self, view, ue)

    def read(self, path: str) -> bytes:
        """A file's content (small files; use :meth:`open` to stream)."""
        with self.open(path) as f:
            return f.read()

    def exists(self, path: str) -> bool:
        """True if the path exists in the container (symlinks followed)."""
        try:
            self.view().lookup(path)
            return True
        except NotFound:
            return False

    # ---- copy-on-write ------------------------------------------------------------------------

    def _copy_up_dirs(self, view: UnionView, dirpath: str) -> None:
        """Make every directory on the way to ``dirpath`` exist in the upper dir, with lower metadata."""
        if dirpath == "/":
            self.upper.mkdir(parents=True, exist_ok=True)
            return
        self._copy_up_dirs(view, posixpath.dirname(dirpath))
        host = self._host(dirpath)
        st = _lstat(host)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        ue = view.get(dirpath)
        if ue is None or ue.entry.type != "dir":
            raise FileOpError(f"{dirpath}: not a directory")
        with _parent_times_kept(host):  # overlayfs restores the parent's times after a copy-up
            if st is not None:  # a whiteout or leftover: replaced by the directory
                os.unlink(host)
            os.mkdir(host)
        _apply_meta(host, ue)

    def _copy_up(self, view: UnionView, path: str) -> str:
        """Bring a lower entry into the upper dir (data and metadata) before it is changed."""
        ue = view.get(path)
        if ue is None:
            raise FileOpError(f"{path}: no such file or directory")
        host = self._host(path)
        if ue.layer == self.top:
            return host
        e = ue.entry
        if e.type not in _COPYABLE:  # refuse before anything is copied up: a failure changes nothing
            raise FileOpError(f"{path}: cannot copy up a {e.type}")
        self._copy_up_dirs(view, posixpath.dirname(path))
        with _parent_times_kept(host):  # a copy-up is not a change of the directory (overlayfs)
            if e.type == "dir":
                os.mkdir(host)
            elif e.type == "symlink":
                os.symlink(e.link, host)
            elif e.type in ("file", "hardlink"):
                src = view.data_entry(ue)
                fd, tmp = _mkstemp_beside(host)
                try:
                    with os.fdopen(fd, "wb") as out:
                        for chunk in self._entry_bytes(view, src):
                            out.write(chunk)
                    os.replace(tmp, host)
                except BaseException:
                    _unlink_quiet(tmp)
                    raise
            elif e.type == "fifo":
                os.mkfifo(host)
            else:
                raise FileOpError(f"{path}: cannot copy up a {e.type}")
        _apply_meta(host, ue)
        return host

    def _entry_bytes(self, view: UnionView, ue: UnionEntry) -> Iterator[bytes]:
        ue = view.data_entry(ue)
        if ue.layer == self.top:
            with open(self._host(ue.entry.path), "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk
            return
        layer = self.image.layers[ue.layer]
        yield from iter_entry_bytes(self.store.blobs, layer.digest, ue.entry)

    def _target(self, view: UnionView, path: str, follow: bool = True) -> str:
        """Resolve ``path`` inside the container: the parent always, the last component if ``follow``."""
        return view.resolve(path, follow_last=follow)

    def write(self, path: str, data: bytes | BinaryIO, mode: int = 0o644) -> None:
        """Create or replace a file (an existing lower file is replaced, not copied: its bytes change).

        ``data`` may be bytes or an open binary file, which is streamed (``cp`` of a large host file)."""
        with self.locked():
            view = self.view()
            p = self._target(view, path)
            ue = view.get(p)
            if ue is not None and ue.entry.type == "dir":
                raise FileOpError(f"{path}: is a directory")
            self._copy_up_dirs(view, posixpath.dirname(p))
            host = self._host(p)
            # rewriting an existing file changes the file, not its directory (as ``>`` in a shell); the
            # temporary name beside it would otherwise touch the directory's times
            keep = _parent_times_kept(host) if ue is not None else contextlib.nullcontext()
            with keep:
                fd, tmp = _mkstemp_beside(host)
                try:
                    with os.fdopen(fd, "wb") as f:
                        if isinstance(data, (bytes, bytearray, memoryview)):
                            f.write(data)
                        else:
                            shutil.copyfileobj(data, f, 1 << 20)
                    if ue is not None:
                        os.chmod(tmp, ue.entry.mode)
                        os.chown(tmp, ue.entry.uid, ue.entry.gid)
                    else:
                        os.chmod(tmp, mode)
                    os.replace(tmp, host)
                except BaseException:
                    _unlink_quiet(tmp)
                    raise

    def append(self, path: str, data: bytes) -> None:
        """Append to a file, copying it up first when it lives in a lower layer."""
        with self.locked():
            view = self.view()
            p = self._target(view, path)
            ue = view.get(p)
            if ue is None:
                raise FileOpError(f"{path}: no such file or directory")
            if ue.entry.type not in ("file", "hardlink"):
                raise FileOpError(f"{path}: not a regular file")
            host = self._copy_up(view, p)
            with open(host, "ab") as f:
                f.write(data)

    def mkdir(self, path: str, mode: int = 0o755, parents: bool = False) -> None:
        """Create a directory; recreating a deleted lower directory makes it opaque. ``parents`` also
        creates the missing directories on the way (following links to directories), as ``mkdir -p``."""
        with self.locked():
            view = self.view()
            if parents:
                view = self._make_parents(view, path)
            p = self._target(view, path, follow=False)
            if view.get(p) is not None:
                if parents and _is_dir(view, p):
                    return
                raise FileOpError(f"{path}: file exists")
            self._mkdir_one(view, p, mode)

    def _make_parents(self, view: UnionView, path: str) -> UnionView:
        """Create the missing directories above ``path`` (mode 0755); all are checked before any is made."""
        parts = [x for x in posixpath.normpath("/" + path).split("/") if x][:-1]
        missing: list[str] = []
        cur = "/"
        for name in parts:
            if missing:  # below a missing directory, everything is missing
                cur = posixpath.join(cur, name)
                missing.append(cur)
                continue
            cur = view.resolve(posixpath.join(cur, name))
            ue = view.get(cur)
            if ue is None:
                missing.append(cur)
            elif ue.entry.type != "dir":
                raise FileOpError(f"{path}: {cur} is not a directory")
        for d in missing:
            view = self.view()
            self._mkdir_one(view, d, 0o755)
        return self.view() if missing else view

    def _mkdir_one(self, view: UnionView, p: str, mode: int) -> None:
        """Create directory ``p`` (resolved; its parent exists) in the upper dir."""
        self._copy_up_dirs(view, posixpath.dirname(p))
        host = self._host(p)
        whiteout = _lstat(host) is not None
        if whiteout:
            os.unlink(host)
        os.mkdir(host, mode)
        os.chmod(host, mode)
        if whiteout or _hidden_below(view, p):
            set_opaque(host)

    def remove(self, path: str, recursive: bool = False) -> None:
        """Delete a path; a lower entry is hidden by a whiteout, an upper one is simply removed."""
        with self.locked():
            view = self.view()
            p = self._target(view, path, follow=False)
            ue = view.get(p)
            if ue is None:
                raise FileOpError(f"{path}: no such file or directory")
            if ue.entry.type == "dir" and not recursive and view.listdir(p):
                raise FileOpError(f"{path}: directory not empty")
            self._remove(view, p)

    def _remove(self, view: UnionView, p: str) -> None:
        host = self._host(p)
        st = _lstat(host)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(host)
            else:
                os.unlink(host)
        if _in_lower(view, p, self.top):
            self._copy_up_dirs(view, posixpath.dirname(p))
            make_whiteout(host)

    def rename(self, src: str, dst: str) -> None:
        """Move a path: copy it (with everything below) to ``dst`` in the upper dir, then remove ``src``."""
        with self.locked():
            view = self.view()
            s = self._target(view, src, follow=False)
            d = self._target(view, dst, follow=False)
            if view.get(s) is None:
                raise FileOpError(f"{src}: no such file or directory")
            if d == s or d.startswith(s + "/"):
                raise FileOpError(f"{dst}: cannot move a directory into itself")
            for ue in [view.get(s), *(view.walk(s) if view.get(s).entry.type == "dir" else ())]:
                if ue.entry.type not in _COPYABLE:  # refuse before anything is changed
                    raise FileOpError(f"{src}: cannot move a {ue.entry.type} ({ue.entry.path})")
            existing = view.get(d)
            if existing is not None:
                if existing.entry.type == "dir" and view.listdir(d):
                    raise FileOpError(f"{dst}: directory not empty")
                self._remove(view, d)
                view = self.view()
            self._copy_up_dirs(view, posixpath.dirname(d))
            self._copy_tree(view, s, d)
            view = self.view()
            self._remove(view, s)

    def _copy_tree(self, view: UnionView, s: str, d: str) -> None:
        ue = view.get(s)
        host = self._host(d)
        e = ue.entry
        if e.type == "dir":
            was = _lstat(host) is not None
            if was:
                os.unlink(host)
            os.mkdir(host)
            if was or _hidden_below(view, d):
                set_opaque(host)
            _apply_meta(host, ue)
            for child in view.listdir(s):
                name = posixpath.basename(child.entry.path)
                self._copy_tree(view, child.entry.path, posixpath.join(d, name))
            _apply_meta(host, ue)
            return
        if _lstat(host) is not None:
            os.unlink(host)
        if e.type == "symlink":
            os.symlink(e.link, host)
        elif e.type in ("file", "hardlink"):
            with open(host, "wb") as out:
                for chunk in self._entry_bytes(view, ue):
                    out.write(chunk)
        elif e.type == "fifo":
            os.mkfifo(host)
        else:
            raise FileOpError(f"{s}: cannot move a {e.type}")
        _apply_meta(host, ue)

    def chmod(self, path: str, mode: int) -> None:
        """Change permission bits (copies a lower entry up first)."""
        with self.locked():
            view = self.view()
            p = self._target(view, path)
            host = self._copy_up(view, p)
            os.chmod(host, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Change owner (copies a lower entry up first; the link itself for a symlink)."""
        with self.locked():
            view = self.view()
            p = self._target(view, path, follow=False)
            host = self._copy_up(view, p)
            os.chown(host, uid, gid, follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        """Create a symlink ``path`` -> ``target`` (the target is not checked, as ``ln -s``)."""
        with self.locked():
            view = self.view()
            p = self._target(view, path, follow=False)
            if view.get(p) is not None:
                raise FileOpError(f"{path}: file exists")
            self._copy_up_dirs(view, posixpath.dirname(p))
            host = self._host(p)
            if _lstat(host) is not None:
                os.unlink(host)  # a whiteout
            os.symlink(target, host)

    def hardlink(self, target: str, path: str) -> None:
        """Create a hard link ``path`` to the file ``target`` (copied up first, as overlayfs does)."""
        with self.locked():
            view = self.view()
            t = self._target(view, target, follow=False)
            p = self._target(view, path, follow=False)
            tue = view.get(t)
            if tue is None or tue.entry.type not in ("file", "hardlink"):
                raise FileOpError(f"{target}: not a regular file")
            if view.get(p) is not None:
                raise FileOpError(f"{path}: file exists")
            src = self._copy_up(view, t)
            self._copy_up_dirs(self.view(), posixpath.dirname(p))
            host = self._host(p)
            if _lstat(host) is not None:
                os.unlink(host)
            os.link(src, host, follow_symlinks=False)

    # ---- diff ---------------------------------------------------------------------------------

    def diff(self) -> list[dict]:
        """What ``docker diff`` prints: ``kind`` A/C/D, ``path``, plus ``size`` of the change.

        The overlay walk of containers/storage (``pkg/archive`` ``changes`` with ``OverlayChanges``, what
        Podman's overlay driver runs; Docker's overlay2 walks the same way): every path of the writable
        layer in order; a whiteout is ``D``; an opaque directory that hides a lower one is ``D`` (what
        it now holds follows as ``A``/``C``); a path that exists below (a lower symlink counts only if it
        resolves) is ``C``, except a directory whose mode and mtime equal the lower one's (copied up
        only because something below it changed); anything else is ``A``. An ``A`` or ``D`` marks every
        directory above it ``C``; a modified file marks none. So ``chmod`` of /etc/motd to the mode it
        has gives ``C /etc/motd`` alone. Cost grows with the writable layer, not with the image.
        """
        from .upper import scan_upper

        lower = self.store.path_index(self.image)
        rows: list[dict] = []
        changed: set[str] = set()
        try:
            entries = scan_upper(self.upper, RUNTIME_PATHS)
            opaque = {e.path for e in entries if e.type == "opaque"}
            for e in entries:
                if e.type == "opaque":
                    continue
                below = lower.get(e.path)
                exists = below is not None and self._exists_below(below, e.path)
                if e.type == "whiteout":
                    if below is None:
                        continue  # a stale whiteout over nothing deletes nothing
                    row = {"kind": "D", "path": e.path, "size": below.size}
                elif e.type == "dir" and e.path in opaque and exists:
                    row = {"kind": "D", "path": e.path, "size": below.size}
                elif exists:
                    if e.type == "dir" and below.type == "dir" and self._same_dir(below, e):
                        continue
                    row = {"kind": "C", "path": e.path, "size": e.size}
                else:
                    row = {"kind": "A", "path": e.path, "size": e.size}
                if e.type == "dir":
                    changed.add(e.path)
                if row["kind"] != "C":
                    tail = []
                    parent = posixpath.dirname(e.path)
                    while parent != "/":
                        if parent not in changed:
                            tail.append({"kind": "C", "path": parent, "size": 0})
                            changed.add(parent)
                        parent = posixpath.dirname(parent)
                    rows += reversed(tail)
                rows.append(row)
        finally:
            lower.close()
        rows.sort(key=lambda r: r["path"])
        return rows

    def _lower_entry(self, found, path: str):
        """The index entry of ``path`` in the layer the path index names (None for an implicit directory)."""
        li = self.image.layers[found.layer].index()
        k = li.columns.position().get(path)
        return li.entry(k) if k is not None else None

    def _same_dir(self, found, e) -> bool:
        """A directory of the writable layer with the lower one's mode and mtime (containers/storage compares
        size, mode and mtime on disk; a directory's size on disk says nothing the index holds)."""
        low = self._lower_entry(found, e.path)
        return low is not None and (low.mode, int(low.mtime)) == (e.mode, int(e.mtime))

    def _exists_below(self, found, path: str) -> bool:
        """True when ``path`` exists in the image: a symlink only when it resolves (the overlay walk stats
        the lower path, following links), inside the image."""
        if found.type != "symlink":
            return True
        try:
            self.store.image_view(self.image).lookup(path)
            return True
        except NotFound:
            return False

    def inspect(self) -> dict:
        """The record ``inspect CONTAINER`` prints."""
        return {"Id": self.id, "Name": "/" + self.name, "Image": self.image_id, "ImageName": self.image_name,
                "Created": self.created, "Path": self.command[0] if self.command else "",
                "Args": self.command[1:], "State": {"Status": self.state, "ExitCode": self.exit_code,
                                                     "StartedAt": self.started_at,
                                                     "FinishedAt": self.finished_at},
                "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": str(self.upper)}}}


class _EntryReader:
    """A read-only file object over an entry's bytes (from the upper dir or a layer blob)."""

    def __init__(self, c: Container, view: UnionView, ue: UnionEntry) -> None:
        if ue.entry.type == "dir":
            raise FileOpError(f"{ue.entry.path}: is a directory")
        if ue.entry.type not in ("file", "hardlink"):
            raise FileOpError(f"{ue.entry.path}: not a regular file")
        # resolve a hardlink now: an error must come from open(), not from the middle of a stream
        ue = view.data_entry(ue)
        self._it = c._entry_bytes(view, ue)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._buf + b"".join(self._it)
            self._buf = b""
            return data
        while len(self._buf) < n:
            chunk = next(self._it, b"")
            if not chunk:
                break
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def close(self) -> None:
        self._it = iter(())

    def __enter__(self) -> _EntryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_COPYABLE = ("dir", "symlink", "file", "hardlink", "fifo")


def _mkstemp_beside(host: str) -> tuple[int, str]:
    """A new temporary file next to ``host``: created exclusively under a random name, so a link that a
    process in the container left in the upper dir is never followed to the host."""
    d, name = os.path.split(host)
    return tempfile.mkstemp(dir=d, prefix=f".{name}.lk-")


@contextlib.contextmanager
def _parent_times_kept(host: str) -> Iterator[None]:
    """Restore the times of ``host``'s directory after the body, as overlayfs does after a copy-up: the
    directory's mtime is what the diff walk compares."""
    parent = os.path.dirname(host)
    st = os.lstat(parent)
    try:
        yield
    finally:
        os.utime(parent, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _apply_meta(host: str, ue: UnionEntry) -> None:
    e = ue.entry
    os.chown(host, e.uid, e.gid, follow_symlinks=False)
    if e.type != "symlink":
        os.chmod(host, e.mode)
    with contextlib.suppress(OSError):
        os.utime(host, (e.mtime, e.mtime), follow_symlinks=False)


def _in_lower(view: UnionView, path: str, top: int) -> bool:
    """True when some lower layer (below the writable one) provides ``path``."""
    ue = view.get(path)
    if ue is not None and ue.layer != top:
        return True
    return _lower_has(view, path, top)


def _lower_has(view: UnionView, path: str, top: int) -> bool:
    """True when the image below the writable layer has ``path``."""
    base = view.base
    return base is not None and base.get(path) is not None


def _hidden_below(view: UnionView, path: str) -> bool:
    """True when a deleted lower directory sits at ``path`` (recreating it must be opaque)."""
    top = len(view.layers) - 1
    return _lower_has(view, path, top)


def _is_dir(view: UnionView, path: str) -> bool:
    """True when ``path`` is a directory or a symlink to one (inside the view)."""
    try:
        return view.lookup(path).entry.type == "dir"
    except LayerkitError:
        return False


def _random_name(taken: set[str]) -> str:
    for _ in range(100):
        name = f"{secrets.choice(_NAME_WORDS)}_{secrets.choice(_NAME_NOUNS)}"
        if name not in taken:
            return name
    return "c_" + secrets.token_hex(4)


# ---- the container registry of a store ------------------------------------------------------------

def containers_dir(store: Store) -> Path:
    """Where a store keeps its containers."""
    return store.meta_dir / "containers"


def list_containers(store: Store) -> list[Container]:
    """Every container, newest first."""
    store.check_root()
    d = containers_dir(store)
    out = []
    if d.is_dir():
        for sub in d.iterdir():
            cfg = sub / "config.json"
            if len(sub.name) != 64 or not cfg.is_file():
                continue
            try:
                data = json.loads(cfg.read_text())
            except ValueError:
                continue
            out.append(Container(store, **data))
    out.sort(key=lambda c: c.created, reverse=True)
    return out


def find_container(store: Store, name: str, missing_ok: bool = False) -> Container | None:
    """A container by name, full ID or unique ID prefix; :class:`ContainerNotFound` naming ``name`` when
    there is none (None with ``missing_ok``)."""
    cs = list_containers(store)
    for c in cs:
        if c.name == name or c.id == name:
            return c
    if len(name) >= 1 and all(ch in "0123456789abcdef" for ch in name):
        hits = [c for c in cs if c.id.startswith(name)]
        if len(hits) == 1:
            return hits[0]
    if missing_ok:
        return None
    raise ContainerNotFound(f"No such container: {name}")


def container_users(store: Store) -> dict[str, list[str]]:
    """image ID -> names of the containers created from it."""
    out: dict[str, list[str]] = {}
    for c in list_containers(store):
        out.setdefault(c.image_id, []).append(c.name)
    return out


def container_counts(store: Store) -> dict[str, int]:
    """image ID -> number of containers using it."""
    return {k: len(v) for k, v in container_users(store).items()}


def create_container(store: Store, image_name: str, command: list[str] | None = None,
                     name: str | None = None) -> Container:
    """``create``: a new container with an empty writable layer. The name must be unique."""
    img = store.image(image_name)
    # a container of a 127-layer image is allowed (the image is valid and runs); committing it would
    # make a 128th layer, which commit refuses
    if len(img.diff_ids) > MAX_LAYERS:
        raise MaxDepthExceeded(f"max depth exceeded: {image_name} has {len(img.diff_ids)} layers, at most "
                               f"{MAX_LAYERS} are allowed")
    cfg = img.config.get("config") or {}
    cmd = list(command) if command else list(cfg.get("Cmd") or [])
    entry = list(cfg.get("Entrypoint") or [])
    full = entry + cmd
    if not full:
        raise LayerkitError(f"no command specified and {image_name} has no Cmd or Entrypoint")
    with store.locked():
        existing = list_containers(store)
        taken = {c.name for c in existing}
        if name is None:
            name = _random_name(taken)
        elif name in taken:
            other = next(c for c in existing if c.name == name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                           f'"{other.id}". You have to remove (or rename) that container to be able to reuse '
                           f"that name.")
        import re

        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise LayerkitError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        cid = secrets.token_hex(32)
        root = private_dir(containers_dir(store), parents=True)
        tmp = private_dir(tempfile.mkdtemp(dir=root, prefix=".new-"))  # 0700 whatever the umask
        (tmp / "upper").mkdir()
        (tmp / "work").mkdir()
        c = Container(store, cid, name, img.id, img.tags[0].familiar if img.tags else img.short_id, full,
                      rfc3339_now())
        (tmp / "config.json").write_text(json.dumps(c.to_json(), indent=2))
        os.replace(tmp, root / cid)
    return c


def remove_container(store: Store, name: str, force: bool = False) -> Container:
    """``rm``: delete a container and its writable layer."""
    c = find_container(store, name)
    if c.state == "running" and not force:
        raise Conflict(f"cannot remove container {c.name}: container is running: stop it first or use -f")
    with store.locked():
        trash = containers_dir(store) / (".rm-" + c.id)
        os.replace(c.dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return c


def rfc3339_now() -> str:
    """Now, RFC 3339 UTC with microseconds."""
    from datetime import datetime

    return rfc3339(datetime.now(UTC))

