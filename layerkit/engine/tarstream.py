"""A tar header reader for indexing layers in one pass.

Python's ``tarfile`` in stream mode re-copies its whole read-ahead buffer on every header it reads, which
made indexing a 100-layer, 100,000-entry image take 6.4 s against 0.21 s for GNU ``tar -t`` (measured with
``benchmarks/union_bench.py``). This reader only parses headers (ustar, PAX ``x``/``g``, GNU ``L``/``K``
long names, base-256 numbers) and skips data without copying it: over a seekable file it seeks, over a
chunk stream it advances an offset into the current chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512


class TarFormatError(Exception):
    """The bytes are not a valid tar stream (bad checksum, truncated header or data)."""


@dataclass(slots=True)
class Header:
    """One member's header, with the offset of its data in the uncompressed stream."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    linkname: str
    devmajor: int
    devminor: int
    offset_data: int


class ChunkReader:
    """Exact reads and skips over an iterator of byte chunks, without re-copying what is buffered."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer at the end of the stream."""
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos:end]
            self._pos = end
            self.offset += n
            return data
        parts = [self._buf[self._pos:]]
        got = len(parts[0])
        while got < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        joined = b"".join(parts)
        data = joined[:n]
        self._buf = joined
        self._pos = len(data)
        self.offset += len(data)
        return data

    def skip(self, n: int) -> int:
        """Skip ``n`` bytes; returns how many were skipped."""
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            self.offset += n
            return n
        done = avail
        self._buf, self._pos = b"", 0
        while done < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            if done + len(chunk) > n:
                self._buf = chunk
                self._pos = n - done
                done = n
                break
            done += len(chunk)
        self.offset += done
        return done

    def drain(self) -> None:
        """Consume the rest of the stream (trailing zero blocks still count for the digest)."""
        self._buf, self._pos = b"", 0
        for chunk in self._chunks:
            self.offset += len(chunk)


class FileReader:
    """Exact reads and seeking skips over a seekable file."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.offset = f.tell()

    def read(self, n: int) -> bytes:
        data = self._f.read(n)
        self.offset += len(data)
        return data

    def skip(self, n: int) -> int:
        self._f.seek(n, 1)
        self.offset += n
        return n

    def drain(self) -> None:
        pass


_HDR = struct.Struct("100s8s8s8s12s12s8sc100s6s2x32x32x8s8s155s")


def _num(field: bytes) -> int:
    try:  # the common case, octal digits ended by NUL or space: one C call (a fifth of header parsing before)
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    if field[0] & 0x80:  # GNU base-256
        v = int.from_bytes(field[1:], "big")
        return -((1 << (8 * (len(field) - 1))) - v) if field[:1] == b"\xff" else v
    s = field.split(b"\0", 1)[0]
    try:
        return int(s, 8) if s.strip() else 0
    except ValueError:
        raise TarFormatError(f"invalid number field {field!r} in tar header") from None


def _str(field: bytes) -> str:
    i = field.find(0)
    return (field if i < 0 else field[:i]).decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarFormatError("invalid PAX header record") from None
        if length <= 0:
            raise TarFormatError("invalid PAX header record")
        rec = data[sp + 1:pos + length - 1]
        k, _, v = rec.partition(b"=")
        out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _padded(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def iter_headers(r: ChunkReader | FileReader, verify: bool = True) -> Iterator[Header]:
    """Yield the members of a tar stream; stops at the end-of-archive marker or a clean EOF.

    ``verify=False`` skips header checksums: only for blobs already verified by their digest, where a
    checksum can tell nothing new (it is a third of the parsing cost).
    """
    pax_global: dict[str, str] = {}
    pax: dict[str, str] = {}
    longname: str | None = None
    longlink: str | None = None
    while True:
        block = r.read(BLOCK)
        if not block:
            return
        if len(block) < BLOCK:
            raise TarFormatError("truncated tar header")
        if block.count(0) == BLOCK:
            return  # end-of-archive marker
        (f_name, f_mode, f_uid, f_gid, f_size, f_mtime, f_chk, typ, f_link, magic, f_dmaj, f_dmin,
         f_prefix) = _HDR.unpack_from(block)
        if verify:
            chksum = _num(f_chk)
            # the checksum counts the checksum field as spaces; some old tars summed signed bytes
            calc = sum(block) - sum(f_chk) + 256
            if chksum != calc and chksum != calc - 256 * sum(1 for b in block if b > 127):
                raise TarFormatError(f"bad header checksum at offset {r.offset - BLOCK}")
        size = _num(f_size)
        if typ in (b"x", b"g", b"L", b"K"):
            data = r.read(size)
            if len(data) < size:
                raise TarFormatError("truncated extended header")
            r.skip(_padded(size) - size)
            if typ == b"x":
                pax = _pax(data)
            elif typ == b"g":
                pax_global.update(_pax(data))
            elif typ == b"L":
                longname = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                longlink = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            continue
        name = _str(f_name)
        # only POSIX ustar has a prefix field; GNU's "ustar  " keeps times there
        if magic == b"ustar\x00" and f_prefix[0]:
            name = _str(f_prefix) + "/" + name
        linkname = _str(f_link) if f_link[0] else ""
        if longname is not None:
            name = longname
        if longlink is not None:
            linkname = longlink
        uid = _num(f_uid)
        gid = _num(f_gid)
        mtime: float = _num(f_mtime)
        if pax or pax_global:
            fields = {**pax_global, **pax}
            name = fields.get("path", name)
            linkname = fields.get("linkpath", linkname)
            size = int(fields.get("size", size))
            uid = int(fields.get("uid", uid))
            gid = int(fields.get("gid", gid))
            mtime = float(fields.get("mtime", mtime))
        typ = b"0" if typ == b"\0" else typ
        dev = typ in (b"3", b"4")
        h = Header(name, typ, _num(f_mode), uid, gid, size, mtime, linkname,
                   _num(f_dmaj) if dev else 0, _num(f_dmin) if dev else 0, r.offset)
        pax = {}
        longname = longlink = None
        # hardlinks, symlinks, dirs and devices carry no data, whatever their size field says
        data_len = 0 if h.type in (b"1", b"2", b"3", b"4", b"5", b"6") else size
        yield h
        if data_len:
            want = _padded(data_len)
            if r.skip(want) < want:
                raise TarFormatError(f"truncated data of {name!r}")
