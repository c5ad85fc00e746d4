"""Hostile tars made byte by byte, and images holding them.

Python's ``tarfile`` refuses to write most of what these tests need (negative sizes, GNU magic with a
prefix, PAX records that lie), so headers are laid out here field by field (POSIX ustar offsets). Images
are OCI layouts with each layer stored plain, gzip or zstd, with a correct diff_id unless told otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

BLOCK = 512
EPOCH = 1704067200
POSIX = (b"ustar\x00", b"00")
GNU = (b"ustar ", b" \x00")
V7 = (b"\x00" * 6, b"\x00\x00")


def octal(value: int, width: int) -> bytes:
    """A NUL-terminated octal field of ``width`` bytes."""
    return b"%0*o\x00" % (width - 1, value)


def b256(value: int, width: int) -> bytes:
    """A GNU base-256 field (two's complement, top bit of the first byte set)."""
    raw = (value % (1 << (8 * width))).to_bytes(width, "big")
    return bytes([raw[0] | 0x80]) + raw[1:]


def enc(s: str | bytes) -> bytes:
    """A name as tar bytes (surrogate escapes back to the bytes they stand for)."""
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def _field(value: int | bytes, width: int) -> bytes:
    if isinstance(value, bytes):
        return value.ljust(width, b"\x00")[:width]
    return octal(value, width)


def header(name: str | bytes, *, type: bytes = b"0", size: int | bytes = 0, mode: int | bytes = 0o644,
           uid: int | bytes = 0, gid: int | bytes = 0, mtime: int | bytes = EPOCH, linkname: str | bytes = "",
           fmt: tuple[bytes, bytes] = POSIX, prefix: str | bytes = b"", devmajor: int | bytes = 0,
           devminor: int | bytes = 0, chksum: bytes | None = None) -> bytes:
    """One 512-byte header block. Integer fields are written in octal, ``bytes`` fields as given."""
    b = bytearray(BLOCK)
    b[0:100] = enc(name).ljust(100, b"\x00")[:100]
    b[100:108] = _field(mode, 8)
    b[108:116] = _field(uid, 8)
    b[116:124] = _field(gid, 8)
    b[124:136] = _field(size, 12)
    b[136:148] = _field(mtime, 12)
    b[156:157] = type
    b[157:257] = enc(linkname).ljust(100, b"\x00")[:100]
    b[257:263], b[263:265] = fmt
    if fmt != V7:
        b[265:269] = b"root"
        b[297:301] = b"root"
        b[329:337] = _field(devmajor, 8)
        b[337:345] = _field(devminor, 8)
        b[345:500] = enc(prefix).ljust(155, b"\x00")[:155]
    b[148:156] = b" " * 8
    b[148:156] = chksum if chksum is not None else b"%06o\x00 " % sum(b)
    return bytes(b)


def pad(data: bytes) -> bytes:
    """``data`` padded with zeros to a whole number of blocks."""
    return data + b"\x00" * (-len(data) % BLOCK)


def member(name: str | bytes, data: bytes = b"", **kw) -> bytes:
    """A header and its padded data (``size`` defaults to the data's length)."""
    kw.setdefault("size", len(data))
    return header(name, **kw) + pad(data)


def dir_(name: str, mode: int = 0o755, **kw) -> bytes:
    return header(name, type=b"5", mode=mode, **kw)


def symlink(name: str, target: str, **kw) -> bytes:
    return header(name, type=b"2", linkname=target, mode=0o777, **kw)


def hardlink(name: str, target: str, **kw) -> bytes:
    return header(name, type=b"1", linkname=target, **kw)


def pax_record(key: str | bytes, value: str | bytes) -> bytes:
    """One PAX record ``"%d key=value\\n"`` with a correct length."""
    k = key if isinstance(key, bytes) else key.encode()
    v = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    body = b" " + k + b"=" + v + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax(records: dict | Iterable[tuple], *, kind: bytes = b"x", raw: bytes | None = None,
        size: int | bytes | None = None) -> bytes:
    """A PAX extended header (``x``, or ``g`` for global) holding ``records`` (or ``raw`` bytes as they are)."""
    items = records.items() if isinstance(records, dict) else records
    data = raw if raw is not None else b"".join(pax_record(k, v) for k, v in items)
    return header("././@PaxHeader", type=kind, size=len(data) if size is None else size) + pad(data)


def gnu_long(name: str | bytes, kind: bytes = b"L") -> bytes:
    """A GNU long name (``L``) or long link name (``K``) header for the next member."""
    data = (name if isinstance(name, bytes) else name.encode()) + b"\x00"
    return header("././@LongLink", type=kind, size=len(data), fmt=GNU) + pad(data)


def end() -> bytes:
    """The end-of-archive marker: two zero blocks."""
    return b"\x00" * (2 * BLOCK)


def tar(*parts: bytes) -> bytes:
    """Members followed by the end-of-archive marker."""
    return b"".join(parts) + end()


# ---- compression -----------------------------------------------------------------------------------

def compress(data: bytes, kind: str) -> bytes:
    """``data`` as a ``tar``, ``gzip`` or ``zstd`` blob."""
    if kind == "tar":
        return data
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout
    raise ValueError(kind)


MEDIA = {"tar": "application/vnd.oci.image.layer.v1.tar",
         "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def write_layout(dest: Path, layers: list[bytes], tag: str, *, compression: str | list[str] = "tar",
                 diff_ids: list[str] | None = None, blobs: list[bytes] | None = None,
                 cmd: list[str] | None = None) -> Path:
    """An OCI layout holding one image of ``layers`` (uncompressed tars, bottom first), each stored with
    ``compression``. ``diff_ids`` overrides the config's claims, ``blobs`` the stored bytes."""
    kinds = [compression] * len(layers) if isinstance(compression, str) else compression
    d = dest / "blobs" / "sha256"
    d.mkdir(parents=True)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (d / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    stored = blobs if blobs is not None else [compress(x, k) for x, k in zip(layers, kinds, strict=True)]
    ids = diff_ids or ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": cmd or ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": ids},
              "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                          for i in range(len(layers))]}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **put(json.dumps(config).encode())},
                "layers": [{"mediaType": MEDIA[k], **put(b)} for b, k in zip(stored, kinds, strict=True)]}
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(json.dumps(manifest).encode()),
             "annotations": {"org.opencontainers.image.ref.name": tag}}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


def tree_digest(root: Path) -> dict[str, tuple]:
    """What is at and below ``root``, without following links: path -> (type, mode, uid, gid, content hash
    or link target). Used to show that nothing outside a destination changed."""
    out: dict[str, tuple] = {}

    def one(p: Path, rel: str) -> None:
        st = os.lstat(p)
        kind = st.st_mode & 0o170000
        if kind == 0o100000:
            out[rel] = ("f", st.st_mode, st.st_uid, st.st_gid, hashlib.sha256(p.read_bytes()).hexdigest())
        elif kind == 0o120000:
            out[rel] = ("l", st.st_uid, st.st_gid, os.readlink(p))
        elif kind == 0o040000:
            out[rel] = ("d", st.st_mode, st.st_uid, st.st_gid)
            for c in sorted(os.listdir(p)):
                one(p / c, f"{rel}/{c}")
        else:
            out[rel] = ("o", st.st_mode, st.st_uid, st.st_gid, st.st_rdev)

    one(Path(root), "")
    return out
