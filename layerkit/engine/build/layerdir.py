"""A new layer written as an overlayfs upper directory over an image: what COPY, ADD and WORKDIR add.

The directory is private to the build (under the store's ``layerkit/tmp``) and holds only what the step
writes, so nothing in it is followed: paths are resolved in the image's union view (symlinks of the image
followed as a chroot would), directories of the image on the way are copied up with their metadata (as
overlayfs copies them up under a container), missing ones are created. The result becomes a layer with
:func:`layerkit.engine.commit.freeze_upper`, exactly as a container's writable layer does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import FileOpError
from ..private import private_dir
from ..symlinks import resolve_in_root

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..store import Store
    from ..union import UnionView



def remove_stale(tmp: Path) -> list[str]:
    """Remove the step directories of builds that were killed (their lock file is free); their names."""
    removed = []
    for lock in tmp.glob("build-*.lock"):
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live build's
            shutil.rmtree(str(lock)[:-len(".lock")], ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            removed.append(lock.name[:-len(".lock")])
        finally:
            os.close(fd)
    return removed


class LayerDir:
    """The upper directory of one build step over ``base`` (None: ``FROM scratch``)."""

    def __init__(self, store: Store, base: Image | None) -> None:
        store.blobs.ensure()
        tmp = private_dir(store.blobs.tmp_dir, parents=True)
        remove_stale(tmp)
        # the lock file is held for as long as the directory lives: a build killed half way leaves it
        # unlocked, and the next build removes both (as the store's cleaner removes a killed writer's blob);
        # locked before the directory is made, and made again if a cleaner took it in between
        for _ in range(100):
            self._lock, name = tempfile.mkstemp(dir=tmp, prefix="build-", suffix=".lock")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            if os.fstat(self._lock).st_nlink > 0:
                break
            os.close(self._lock)
        else:
            raise OSError(f"{tmp}: cannot create a build directory (removed as soon as made)")
        self.dir = Path(name[:-len(".lock")])
        self.dir.mkdir(mode=0o700)
        self.upper = self.dir / "upper"
        self.upper.mkdir()
        os.chmod(self.upper, 0o755)
        self.view: UnionView | None = store.image_view(base) if base is not None and base.diff_ids else None

    def close(self) -> None:
        """Remove the directory."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.dir}.lock")
        os.close(self._lock)

    def __enter__(self) -> LayerDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- paths ----------------------------------------------------------------------------------------

    def host(self, path: str) -> str:
        """Where a resolved image path lives in the upper directory."""
        rel = posixpath.normpath("/" + path).lstrip("/")
        return os.path.join(self.upper, rel) if rel else str(self.upper)

    def _lower(self, path: str):
        return self.view.get(path) if self.view is not None else None

    def _upper_lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(self.host(path))
        except FileNotFoundError:
            return None

    def resolve(self, path: str) -> str:
        """``path`` with the image's symlinks followed (inside the image), components that do not exist kept;
        a symlink this step wrote is not followed (its parents are refused: :meth:`_check_parents`)."""

        def step(cand: str, more: bool) -> str | None:
            ue = self._lower(cand)
            if self._upper_lstat(cand) is None and ue is not None and ue.entry.type == "symlink":
                return ue.entry.link
            return None

        return resolve_in_root(path, step, FileOpError)

    def is_dir(self, path: str) -> bool:
        """True when the resolved ``path`` is a directory, in this layer or in the image."""
        if path == "/":
            return True
        st = self._upper_lstat(path)
        if st is not None:
            return stat.S_ISDIR(st.st_mode)
        ue = self._lower(path)
        return ue is not None and ue.entry.type == "dir"

    def ensure_dir(self, path: str, uid: int = 0, gid: int = 0) -> str:
        """Make the directory ``path`` exist in this layer: the image's directories on the way are copied
        up with their mode, owner and mtime, missing ones created 0755 owned ``uid:gid`` (as Docker's
        ``MkdirAllAndChownNew``); returns the resolved path."""
        target = self.resolve(path)
        cur = "/"
        for name in [p for p in target.split("/") if p]:
            cur = posixpath.join(cur, name)
            st = self._upper_lstat(cur)
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    raise FileOpError(f"{path}: {cur} is not a directory (an earlier step of this build made it a "
                                      "file or a link): choose another destination")
                continue
            host = self.host(cur)
            ue = self._lower(cur)
            if ue is not None:
                if ue.entry.type != "dir":
                    raise FileOpError(f"{path}: {cur} is a {ue.entry.type} in the image, not a directory: choose "
                                      "another destination")
                os.mkdir(host)
                e = ue.entry
                os.chown(host, e.uid, e.gid)
                os.chmod(host, e.mode)
                os.utime(host, (e.mtime, e.mtime))
            else:
                os.mkdir(host)
                os.chown(host, uid, gid)
                os.chmod(host, 0o755)
        return target

    def _check_parents(self, path: str) -> None:
        """Refuse ``path`` when a directory on its way in this layer is a symlink (or not a directory): the
        host would follow it out of the upper directory (a symlink an earlier source of the same step
        wrote). Components that do not exist end the check: nothing below them can be followed."""
        cur = str(self.upper)
        for name in [p for p in posixpath.normpath("/" + path).split("/") if p][:-1]:
            cur = os.path.join(cur, name)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(st.st_mode):
                raise FileOpError(f"{path}: cannot write through {os.path.relpath(cur, self.upper)}: "
                                  "not a directory in this layer (a symlink is not followed)")

    def _clear(self, path: str, keep_dir: bool) -> str:
        """The host path of ``path``, with what this layer held there removed (a directory kept when
        ``keep_dir``)."""
        self._check_parents(path)
        host = self.host(path)
        st = self._upper_lstat(path)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                if keep_dir:
                    return host
                shutil.rmtree(host)
            else:
                os.unlink(host)
        return host

    # ---- writing ----------------------------------------------------------------------------------------

    def put_file(self, path: str, chunks: Iterable[bytes], mode: int, uid: int, gid: int,
                 mtime: float | None) -> None:
        """Write a regular file at the resolved ``path`` (its directory exists)."""
        host = self._clear(path, keep_dir=False)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        self._meta(host, mode, uid, gid, mtime)

    def put_dir(self, path: str, mode: int, uid: int, gid: int, mtime: float | None) -> None:
        """Make the resolved ``path`` a directory with this metadata (merged with one already there)."""
        host = self._clear(path, keep_dir=True)
        if not os.path.isdir(host):
            os.mkdir(host)
        self._meta(host, mode, uid, gid, mtime)

    def put_symlink(self, path: str, target: str, uid: int, gid: int, mtime: float | None) -> None:
        """Make the resolved ``path`` a symlink to ``target`` (never followed)."""
        host = self._clear(path, keep_dir=False)
        os.symlink(target, host)
        os.chown(host, uid, gid, follow_symlinks=False)
        if mtime is not None:
            os.utime(host, (mtime, mtime), follow_symlinks=False)

    def put_hardlink(self, path: str, existing: str) -> None:
        """Make the resolved ``path`` a second name of the file this layer wrote at ``existing``."""
        host = self._clear(path, keep_dir=False)
        self._check_parents(existing)
        os.link(self.host(existing), host, follow_symlinks=False)

    @staticmethod
    def _meta(host: str, mode: int, uid: int, gid: int, mtime: float | None) -> None:
        os.chown(host, uid, gid, follow_symlinks=False)
        os.chmod(host, mode)
        if mtime is not None:
            os.utime(host, (mtime, mtime), follow_symlinks=False)
