"""Read-only views of an archive or a directory, with member names checked for safety.

Both docker-archive and OCI archives are tars whose members name each other (``manifest.json`` names
``blobs/sha256/...``); an OCI layout or an extracted archive is the same tree on disk. A source answers
``open(name)`` for either, refusing names that are absolute or climb out with ``..``.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobNotFound, InvalidArchive, InvalidManifest


def _clean(name: str, where: str) -> str:
    if name.startswith("/") or ".." in name.split("/"):
        raise InvalidArchive(f"{where}: member {name!r} has an absolute path or '..'")
    norm = posixpath.normpath(name)
    return "" if norm == "." else norm


class Source:
    """Common interface of :class:`TarSource` and :class:`DirSource`."""

    label: str

    def has(self, name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def size(self, name: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        """Read a small member (JSON documents) whole; refuses absurdly large ones."""
        if self.size(name) > limit:
            raise InvalidManifest(f"{self.label}: {name} is too large for a JSON document")
        with self.open(name) as f:
            return f.read()

    def read_json(self, name: str, what: str) -> tuple[bytes, object]:
        """Read and parse a JSON member, naming it in the error when it is not JSON."""
        data = self.read(name)
        try:
            return data, json.loads(data)
        except ValueError as exc:
            raise InvalidManifest(f"{self.label}: {what} {name} is not valid JSON ({exc})") from None

    def close(self) -> None:
        """Release the underlying file."""


class TarSource(Source):
    """Members of a tar file (plain tar; compressed archives are expanded to a temp file first)."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or str(path)
        tf = None
        try:
            tf = self._tf = tarfile.open(self.path, "r:")
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            if tf is not None:
                tf.close()
            # tarfile says "unexpected end of data" when a member's data runs past the end of the file
            what = "truncated archive" if "unexpected end" in str(exc) else "not a readable tar archive"
            raise InvalidArchive(f"{self.label}: {what} ({exc})") from None
        try:
            self._index(members)
        except BaseException:
            self._tf.close()  # the caller never gets the source to close
            raise

    def _index(self, members: list[tarfile.TarInfo]) -> None:
        """Record the (cleaned) member names and refuse a truncated or corrupt archive."""
        self._members: dict[str, tarfile.TarInfo] = {}
        end = 0
        for m in members:
            name = _clean(m.name, self.label)
            if m.islnk():
                _clean(m.linkname, self.label)
            self._members[name] = m
            if m.isreg():
                end = max(end, m.offset_data + m.size)
        size = self.path.stat().st_size
        if end > size:
            raise InvalidArchive(f"{self.label}: truncated archive (data ends at byte {end}, file has {size})")
        self._check_tail(size)

    def _check_tail(self, size: int) -> None:
        """Refuse a cut or corrupt header after the first member.

        tarfile ends the member list quietly at a header it cannot read, unless it is the very first, so
        an archive cut in the middle of a header would look like a shorter, complete archive. What
        follows the last member must be the end-of-archive zero blocks (possibly cut short) or nothing,
        as Go's archive/tar (docker, skopeo) also requires.
        """
        pos = self._tf.offset
        if pos >= size:
            return
        with open(self.path, "rb") as f:
            f.seek(pos)
            block = f.read(tarfile.BLOCKSIZE)
        if block.count(0) == len(block):
            return
        if len(block) < tarfile.BLOCKSIZE:
            raise InvalidArchive(f"{self.label}: truncated archive (header at byte {pos} cut off, "
                                 f"file has {size} bytes)")
        raise InvalidArchive(f"{self.label}: corrupt tar header at byte {pos}")

    def names(self) -> list[str]:
        """All member names, cleaned."""
        return list(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo:
        name = _clean(name, self.label)
        for _ in range(16):
            m = self._members.get(name)
            if m is None:
                raise BlobNotFound(f"{self.label}: no member {name}")
            if m.issym():
                target = m.linkname
                if target.startswith("/"):
                    raise InvalidArchive(f"{self.label}: member {name!r} links to absolute path {target!r}")
                name = _clean(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)), self.label)
                continue
            if m.islnk():
                name = _clean(m.linkname, self.label)
                continue
            if not m.isreg():
                raise InvalidArchive(f"{self.label}: member {name!r} is not a regular file")
            return m
        raise InvalidArchive(f"{self.label}: too many levels of links at {name!r}")

    def has(self, name: str) -> bool:
        try:
            self._resolve(name)
            return True
        except BlobNotFound:
            return False

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str) -> BinaryIO:
        return self._tf.extractfile(self._resolve(name))

    def close(self) -> None:
        self._tf.close()


class DirSource(Source):
    """Files below a directory (an OCI layout or an extracted docker archive)."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.label = label or str(root)

    def _path(self, name: str) -> Path:
        p = (self.root / _clean(name, self.label)).resolve()
        if p != self.root and self.root not in p.parents:
            raise InvalidArchive(f"{self.label}: {name!r} resolves outside the layout")
        return p

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"{self.label}: missing {name}") from None

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(f"{self.label}: missing {name}") from None


def blob_name(digest: str) -> str:
    """The path of a blob inside an OCI layout."""
    alg, _, hexpart = digest.partition(":")
    return f"blobs/{alg}/{hexpart}"


def sniff_file(path: Path) -> bytes:
    """The first bytes of a file, to tell gzip from tar."""
    with open(path, "rb") as f:
        return f.read(512)


def exists_or_raise(path: str | os.PathLike) -> Path:
    """A Path, or :class:`~layerkit.errors.NotFound` naming the path."""
    from ..errors import NotFound

    p = Path(path)
    if not p.exists():
        raise NotFound(f"{path}: no such file or directory")
    return p
