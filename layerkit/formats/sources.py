"""Read-only views of an archive or a directory, with member names checked for safety.

Both docker-archive and OCI archives are tars whose members name each other (``manifest.json`` names
``blobs/sha256/...``); an OCI layout or an extracted archive is the same tree on disk. A source answers
``open(name)`` for either, refusing names that are absolute or climb out with ``..``.

Outer archives are read with layerkit's own tar header reader (:mod:`layerkit.engine.tarstream`), the one
that indexes layers, so what ``load`` sees in an archive can never differ from what another tar parser
would make of the same headers. A member is a bounded slice of the file (``pread`` at its data offset).

A gzipped archive (``docker save | gzip``, a ``.tar.gz`` OCI archive) is never inflated to disk:
:class:`GzipTarSource` streams it twice at most. Pass 1 reads every header and keeps in memory only the
small members that look like JSON documents (``manifest.json``, ``index.json``, configs, manifests: each
under :data:`~layerkit.engine.shapes.DOC_LIMIT`, all together under :data:`RETAIN_LIMIT`); pass 2,
started when the first layer is opened, inflates again and hands each referenced member to the ingest as it
streams by; the loaders ask for layers in archive order (:class:`~layerkit.formats.importer.ImportBatch`
sorts them by offset), so one pass serves them all, and members nobody references are inflated and
dropped, never written. The alternative, keeping a snapshot of the inflater state at every member (zlib's
``Decompress.copy``, ~45 KB each), would save the second pass but cost memory per member, which an archive
of many members controls. Memory stays at the retained documents plus 1 MiB buffers; disk use is the
referenced layers only.
"""

from __future__ import annotations

import io
import os
import posixpath
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine.shapes import DOC_LIMIT, parse_json
from ..engine.tarstream import FileReader, TarFormatError, iter_headers
from ..errors import BlobNotFound, InvalidArchive, InvalidManifest, LayerkitError

try:  # isal's inflate is 2-3x faster than zlib's (see engine/layer.py): zeros inflate at 2 GB/s here
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _isal_error
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip

    _isal_error = zlib.error
_INFLATE_ERRORS = (OSError, EOFError, zlib.error, _isal_error)

BLOCK = 512
CHUNK = 1 << 20
MAX_MEMBERS = 200_000  # about 250 bytes of memory each; 2,000 images in the classic form are 6,000
HEADER_DATA_LIMIT = 8 << 20  # PAX and GNU long-name data read whole (Go's archive/tar: 1 MiB of PAX records)
RETAIN_LIMIT = 64 << 20  # JSON documents of a gzipped archive kept in memory, all together
MAX_PASSES = 16  # inflations of one gzipped archive (a backward open starts one more)
_TOP_DOCS = {"manifest.json", "index.json", "oci-layout", "repositories"}
_REGULAR = (b"0", b"7")
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")


def shown(name: str) -> str:
    """A member name as an error message shows it: as it is, or quoted with escapes when it holds a
    newline or another unprintable character (a PAX path may), so the message stays one line."""
    return name if name.isprintable() else repr(name)


def _clean(name: str, where: str) -> str:
    if name.startswith("/") or ".." in name.split("/"):
        raise InvalidArchive(f"{where}: member {name!r} has an absolute path or '..'")
    norm = posixpath.normpath(name)
    return "" if norm == "." else norm


class Source:
    """Common interface of :class:`TarSource`, :class:`GzipTarSource` and :class:`DirSource`."""

    label: str

    def has(self, name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def size(self, name: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError

    def offset(self, name: str) -> int | None:
        """Where the member's data starts in the archive (ingest reads layers in this order), if known."""
        return None

    def read(self, name: str, limit: int = DOC_LIMIT) -> bytes:
        """Read a small member (JSON documents) whole; refuses one larger than ``limit``."""
        size = self.size(name)
        if size > limit:
            raise InvalidManifest(f"{self.label}: {shown(name)} is too large for a JSON document ({size} bytes, "
                                  f"at most {limit})")
        with self.open(name) as f:
            return f.read(size)

    def read_json(self, name: str, what: str) -> tuple[bytes, object]:
        """Read and parse a JSON member, naming it in the error when it is not JSON (or too big, too deep)."""
        data = self.read(name)
        return data, parse_json(data, f"{self.label}: {what} {shown(name)}")

    def close(self) -> None:
        """Release the underlying file."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class _Member:
    """One member of an outer archive: its tar type, data offset, size and link target."""

    type: bytes
    offset: int
    size: int
    linkname: str


class _MemberReader(io.RawIOBase):
    """``size`` bytes of a file from ``offset`` on, read with ``pread`` (no shared file position, so
    several layers may be read at once from one descriptor)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # analysis in place seeks over file contents (layerkit.engine.inplace)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self._size
        elif whence != 0:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos  # past the end reads nothing, as in a file
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


class _Headers:
    """What :class:`~layerkit.engine.tarstream.FileReader` reads headers through: ``read`` refuses an
    extended header larger than :data:`HEADER_DATA_LIMIT` (a PAX header claiming 3 GiB was read whole);
    ``seek(n, 1)`` skips member data forward. Subclasses supply ``_read`` and ``_skip``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.pos = 0

    def tell(self) -> int:
        return self.pos

    def read(self, n: int) -> bytes:
        if n > HEADER_DATA_LIMIT:
            raise InvalidArchive(f"{self.label}: tar extended header at byte {self.pos} claims {n} bytes "
                                 f"(at most {HEADER_DATA_LIMIT})")
        data = self._read(n)
        self.pos += len(data)
        return data

    def seek(self, n: int, whence: int = 0) -> int:
        if whence == 2:  # where the stream ends: the reader asks to tell a cut member from a whole one
            return self._end()
        if whence != 1 or n < 0:
            raise InvalidArchive(f"{self.label}: tar member before byte {self.pos} has a negative size")
        self.pos += self._skip(n)
        return self.pos

    def _end(self) -> int:
        raise io.UnsupportedOperation("the end of a forward-only stream is not known")

    def _read(self, n: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def _skip(self, n: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class _FileHeaders(_Headers):
    """Headers of a plain tar file; skipping is a seek."""

    def __init__(self, fd: int, label: str) -> None:
        super().__init__(label)
        self._fd = fd

    def _read(self, n: int) -> bytes:
        return os.pread(self._fd, n, self.pos)

    def _skip(self, n: int) -> int:
        return n

    def _end(self) -> int:
        self.pos = os.fstat(self._fd).st_size
        return self.pos


class _Inflated(_Headers):
    """One pass over a gzipped tar: the inflated bytes as a forward-only stream, read at most 1 MiB per
    call (so a bomb never costs more memory than that). While ``capture`` is set, skipped bytes up to that
    many are kept in ``captured`` (how pass 1 keeps a small member that the header reader skips)."""

    def __init__(self, path: Path, label: str) -> None:
        super().__init__(label)
        self._gz = _gzip.open(path, "rb")
        self.short = False  # the stream ended inside a skip
        self.capture = 0
        self.captured: list[bytes] = []

    def _read(self, n: int) -> bytes:
        parts = []
        got = 0
        while got < n:
            data = self._gz.read(min(n - got, CHUNK))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _skip(self, n: int) -> int:
        done = 0
        while done < n:
            data = self._gz.read(min(n - done, CHUNK))
            if not data:
                self.short = True
                break
            if self.capture > 0:
                self.captured.append(data[:self.capture])
                self.capture -= min(len(data), self.capture)
            done += len(data)
        return done

    def take(self, n: int) -> bytes:
        """Read up to ``n`` bytes (member data; no extended-header limit)."""
        data = self._gz.read(min(n, CHUNK))
        self.pos += len(data)
        return data

    def close(self) -> None:
        self._gz.close()


def _decompress_error(label: str, exc: BaseException) -> InvalidArchive:
    if isinstance(exc, EOFError):
        return InvalidArchive(f"{label}: truncated archive (the gzip stream ends early: {exc})")
    return InvalidArchive(f"{label}: cannot decompress ({exc})")


class _TarMembers(Source):
    """The member table of an outer tar archive and the name resolution both tar sources share."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._members: dict[str, _Member] = {}
        self._end = 0  # where the last regular member's data ends

    def _scan(self, stream: _Headers, on_member=None) -> None:
        """Read every header through ``stream``, recording the members (names cleaned, links checked,
        duplicates and negative sizes refused). ``on_member(name, member)`` sees each regular member."""
        reader = FileReader(stream)
        seen = 0
        try:
            for h in iter_headers(reader):
                seen += 1
                if h.size < 0:
                    raise InvalidArchive(f"{self.label}: member {h.name!r} has a negative size ({h.size})")
                self._add(h.name, h.type, h.offset_data, h.size, h.linkname)
                if on_member is not None and h.type in _REGULAR and not h.name.endswith("/"):
                    on_member(_clean(h.name, self.label), h.offset_data, h.size)
        except TarFormatError as exc:
            raise self._format_error(exc, reader, stream, seen) from exc
        except (ValueError, OverflowError, UnicodeError) as exc:  # a PAX number that is not one, say
            at = max(0, (reader.offset - 1) // BLOCK * BLOCK)
            raise InvalidArchive(f"{self.label}: corrupt tar header at byte {at} ({exc})") from exc

    def _format_error(self, exc: TarFormatError, reader: FileReader, stream: _Headers, seen: int
                      ) -> InvalidArchive:
        """The one-line error for a header the reader refused: a cut-off header, a corrupt one, or no tar."""
        at = max(0, (reader.offset - 1) // BLOCK * BLOCK)
        if self._at_end(stream):
            return InvalidArchive(f"{self.label}: truncated archive (header at byte {at} cut off, "
                                  f"{self._length_text(stream)})")
        if seen == 0:
            return InvalidArchive(f"{self.label}: not a readable tar archive ({exc})")
        return InvalidArchive(f"{self.label}: corrupt tar header at byte {at} ({exc})")

    def _at_end(self, stream: _Headers) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _length_text(self, stream: _Headers) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def _add(self, raw_name: str, typ: bytes, offset: int, size: int, linkname: str) -> None:
        name = _clean(raw_name, self.label)
        if raw_name.endswith("/") and typ in _REGULAR:
            typ = b"5"  # old tars mark directories with a trailing slash only
        if not name:
            if typ == b"5":
                return  # the archive's root directory ("./")
            raise InvalidArchive(f"{self.label}: member {raw_name!r} has an empty name")
        if typ == b"1":
            _clean(linkname, self.label)
        old = self._members.get(name)
        if old is not None and not (old.type == b"5" and typ == b"5"):
            # tar extraction would keep the last, Go's archive/tar readers (skopeo) the first: refuse the ambiguity
            raise InvalidArchive(f"{self.label}: member {name!r} appears twice in the archive")
        if len(self._members) >= MAX_MEMBERS:
            raise InvalidArchive(f"{self.label}: more than {MAX_MEMBERS} members")
        self._members[name] = _Member(typ, offset, size, linkname)
        if typ in _REGULAR:
            self._end = max(self._end, offset + size)

    def names(self) -> list[str]:
        """All member names, cleaned."""
        return list(self._members)

    def _resolve(self, name: str) -> tuple[str, _Member]:
        name = _clean(name, self.label)
        for _ in range(16):
            m = self._members.get(name)
            if m is None:
                raise BlobNotFound(f"{self.label}: no member {shown(name)}")
            if m.type == b"2":
                target = m.linkname
                if target.startswith("/"):
                    raise InvalidArchive(f"{self.label}: member {name!r} links to absolute path {target!r}")
                name = _clean(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)), self.label)
                continue
            if m.type == b"1":
                name = _clean(m.linkname, self.label)
                continue
            if m.type not in _REGULAR:
                raise InvalidArchive(f"{self.label}: member {name!r} is not a regular file")
            return name, m
        raise InvalidArchive(f"{self.label}: too many levels of links at {name!r}")

    def has(self, name: str) -> bool:
        try:
            self._resolve(name)
            return True
        except BlobNotFound:
            return False

    def size(self, name: str) -> int:
        return self._resolve(name)[1].size

    def offset(self, name: str) -> int | None:
        return self._resolve(name)[1].offset


class TarSource(_TarMembers):
    """Members of a plain tar file, each a bounded slice of it."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        super().__init__(label or str(path))
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidArchive(f"{self.label}: not a readable tar archive ({exc.strerror})") from exc
        try:
            self._length = os.fstat(self._fd).st_size
            self._scan(_FileHeaders(self._fd, self.label))
            if self._end > self._length:
                raise InvalidArchive(f"{self.label}: truncated archive (data ends at byte {self._end}, file has "
                                     f"{self._length})")
        except BaseException:
            os.close(self._fd)  # the caller never gets the source to close
            raise

    def _at_end(self, stream: _Headers) -> bool:
        return stream.pos >= self._length

    def _length_text(self, stream: _Headers) -> str:
        return f"file has {self._length} bytes"

    def open(self, name: str) -> BinaryIO:
        _, m = self._resolve(name)
        return _MemberReader(self._fd, m.offset, m.size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _PassMember(io.RawIOBase):
    """A member of a gzipped archive read from the pass that is positioned at its data."""

    def __init__(self, owner: GzipTarSource, stream: _Inflated, size: int) -> None:
        super().__init__()
        self._owner = owner
        self._stream = stream
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._owner._reading is not self:
            raise InvalidArchive(f"{self._owner.label}: a member was read after another was opened")
        n = self._left if n is None or n < 0 else min(n, self._left)
        if n <= 0:
            return b""
        try:
            data = self._stream.take(n)
        except _INFLATE_ERRORS as exc:
            raise _decompress_error(self._owner.label, exc) from exc
        self._left -= len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


class GzipTarSource(_TarMembers):
    """Members of a gzipped tar, streamed: see the module docstring for the two passes."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        super().__init__(label or str(path))
        self.path = Path(path)
        self._docs: dict[str, bytes] = {}
        self._retained = 0
        self._passes = 0
        self._stream: _Inflated | None = None
        self._reading: _PassMember | None = None
        self._length = 0
        stream = self._new_pass()
        pending: list[tuple[str, int]] = []  # the member whose bytes the stream is capturing

        def on_member(name: str, offset: int, size: int) -> None:
            self._keep(pending, stream)
            if size <= DOC_LIMIT:
                stream.capture = size
                pending.append((name, size))

        try:
            try:
                self._scan(stream, on_member)
                self._keep(pending, stream)
            except _INFLATE_ERRORS as exc:
                raise _decompress_error(self.label, exc) from exc
            self._length = stream.pos
            if self._end > stream.pos:
                raise InvalidArchive(f"{self.label}: truncated archive (data ends at byte {self._end}, the "
                                     f"archive inflates to {stream.pos} bytes)")
        except BaseException:
            self.close()
            raise
        self.close()  # pass 1 done; pass 2 starts at the first open of a member not kept

    def _keep(self, pending: list[tuple[str, int]], stream: _Inflated) -> None:
        """Keep the member captured last if it is a JSON document (by name, or by its first byte)."""
        if not pending:
            return
        name, size = pending.pop()
        data = b"".join(stream.captured)
        stream.captured = []
        stream.capture = 0
        if len(data) < size:
            return  # cut off: the truncation is reported once the scan ends
        if name not in _TOP_DOCS and data.lstrip(b" \t\r\n")[:1] not in (b"{", b"["):
            return  # a layer or anything else: read from the stream if referenced
        self._retained += size
        if self._retained > RETAIN_LIMIT:
            raise InvalidArchive(f"{self.label}: more than {RETAIN_LIMIT >> 20} MiB of JSON documents in a "
                                 f"compressed archive; decompress it and load the .tar")
        self._docs[name] = data

    def _new_pass(self) -> _Inflated:
        self._passes += 1
        if self._passes > MAX_PASSES:
            raise InvalidArchive(f"{self.label}: members read too far out of archive order ({MAX_PASSES} passes "
                                 f"over the compressed archive); decompress it and load the .tar")
        try:
            self._stream = _Inflated(self.path, self.label)
        except OSError as exc:
            raise InvalidArchive(f"{self.label}: not a readable archive ({exc.strerror or exc})") from exc
        return self._stream

    def _at_end(self, stream: _Headers) -> bool:
        try:
            return not stream._gz.peek(1)
        except _INFLATE_ERRORS:
            return True

    def _length_text(self, stream: _Headers) -> str:
        return f"the archive inflates to {stream.pos} bytes"

    def open(self, name: str) -> BinaryIO:
        real, m = self._resolve(name)
        doc = self._docs.get(real)
        if doc is not None:
            return io.BytesIO(doc)
        stream = self._stream
        if stream is None or stream.pos > m.offset:
            self.close()
            stream = self._new_pass()
        try:
            stream.seek(m.offset - stream.pos, 1)
        except _INFLATE_ERRORS as exc:
            raise _decompress_error(self.label, exc) from exc
        if stream.short:
            raise InvalidArchive(f"{self.label}: truncated archive (member {shown(name)} not reached)")
        self._reading = _PassMember(self, stream, m.size)
        return self._reading

    def close(self) -> None:
        self._reading = None
        if self._stream is not None:
            try:
                self._stream.close()
            except (*_INFLATE_ERRORS, LayerkitError):
                pass
            self._stream = None


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
        except FileNotFoundError as exc:
            raise BlobNotFound(f"{self.label}: missing {shown(name)}") from exc

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise BlobNotFound(f"{self.label}: missing {shown(name)}") from exc


def open_archive(path: Path, label: str | None = None) -> Source:
    """A plain or gzipped tar archive as a source (by its first bytes)."""
    if sniff_file(path)[:2] == b"\x1f\x8b":
        return GzipTarSource(path, label)
    return TarSource(path, label)


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
