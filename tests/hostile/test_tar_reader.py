"""layerkit's one tar reader (``layerkit.engine.tarstream``) on tars crafted byte by byte.

What it must refuse (negative and absurd numbers, oversized or malformed PAX and GNU extended headers,
sparse members), which prefix rule it follows (Go's, checked against GNU tar where both agree), and its
data API. Each hostile input fails fast with a one-line :class:`TarFormatError`, which is a
:class:`~layerkit.errors.LayerkitError`.
"""

from __future__ import annotations

import io
import subprocess
import time

import pytest

from layerkit.engine.layer import LayerFormatError, classify, index_tar_columns
from layerkit.engine.tarstream import ChunkReader, FileReader, Header, TarFormatError, TarReader, iter_headers
from layerkit.errors import InvalidArchive, LayerkitError

from .tarcraft import (
    BLOCK,
    EPOCH,
    GNU,
    POSIX,
    V7,
    b256,
    dir_,
    end,
    gnu_long,
    header,
    member,
    pad,
    pax,
    pax_record,
    symlink,
    tar,
)


def chunked(data: bytes, size: int = 700) -> ChunkReader:
    return ChunkReader(iter([data[i:i + size] for i in range(0, len(data), size)]))


def readers(data: bytes) -> list:
    """The same bytes through both reader kinds (a chunk stream and a seekable file)."""
    return [chunked(data), FileReader(io.BytesIO(data))]


def headers(data: bytes) -> list[Header]:
    """All headers, through both reader kinds, which must agree."""
    a, b = ([h for h in iter_headers(r)] for r in readers(data))
    assert a == b
    return a


def refused(data: bytes, *words: str) -> TarFormatError:
    """The error both readers raise for ``data``; it is one line and names what is wrong."""
    excs = []
    for r in readers(data):
        t = time.monotonic()
        with pytest.raises(TarFormatError) as ei:
            for _ in iter_headers(r):
                pass
        assert time.monotonic() - t < 5
        excs.append(ei.value)
    msg = str(excs[0])
    assert isinstance(excs[0], LayerkitError) and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return excs[0]


# ---- sizes and numbers ------------------------------------------------------------------------------

def test_negative_base256_size_is_an_error_not_a_loop() -> None:
    """Issue 11 item 6: a base-256 size of -512 stepped the old reader back onto the same header forever."""
    data = member("evil", size=b256(-512, 12)) + tar(member("next", b"x"))
    refused(data, "tar entry 'evil' (header at byte 0) has a negative size -512")


@pytest.mark.parametrize("field", [b"-0000001000\x00", b"+0000001000\x00", b" 1_000\x00", b"12 34\x00",
                                   b"0009\x00", b"\x00\x00\x00zz"])
def test_octal_fields_are_digits_only(field: bytes) -> None:
    """Python's int() accepts a sign, spaces and underscores; Go's octal parser (and this one) does not:
    ``-0000001000`` would otherwise be a size of -512."""
    refused(tar(member("f", size=field)), "invalid number field")


def test_octal_fields_as_go_reads_them() -> None:
    """Leading spaces, trailing NULs and spaces, and anything after a NUL are tolerated, as Go does."""
    data = tar(header("a", size=b"   12\x00  ", mode=b"0000644\x00") + pad(b"x" * 10),
               header("b", size=b"0000000003\x00\x00", mode=b"644 \x00\x00\x00\x00") + pad(b"abc"),
               header("c", size=b"1\x009999", mtime=b"\x00" * 12))
    hs = headers(data)
    assert [(h.name, h.size, h.mode) for h in hs] == [("a", 10, 0o644), ("b", 3, 0o644), ("c", 1, 0o644)]
    assert hs[2].mtime == 0


def test_base256_numbers_are_read_and_bounded() -> None:
    """GNU base-256: large sizes and owners and negative times are fine; values beyond the ranges are not."""
    hs = headers(tar(member("big", b"x" * 5, size=b256(5, 12), uid=b256(70000, 8), mtime=b256(-86400, 12))))
    assert (hs[0].size, hs[0].uid, hs[0].mtime) == (5, 70000, -86400)
    refused(tar(member("u", uid=b256(1 << 40, 8))), "owner out of range")
    refused(tar(member("g", gid=b256(-1, 8))), "owner out of range")
    refused(tar(member("t", mtime=b256(1 << 60, 12))), "modification time out of range")
    refused(tar(member("m", mode=b256(-1, 8))), "negative mode")
    refused(tar(member("s", size=b"\xff" + b"\x00" * 11)), "out of range")


def test_truncated_data_and_truncated_padding() -> None:
    """Data cut short is an error; a stream cut inside the last member's padding ends it, as in Go."""
    whole = member("f", b"hello")
    refused(whole[:BLOCK + 3], "truncated data of 'f'")
    assert [h.name for h in headers(whole[:BLOCK + 5])] == ["f"]
    # a size far beyond the end of a seekable file: found by reading the last byte, not believed
    refused(member("huge", size=1 << 40)[:BLOCK], "truncated data of 'huge'")


def test_zero_block_then_header_is_refused() -> None:
    """Two zero blocks end the archive; one zero block followed by a header is an error, as in Go."""
    assert headers(member("a") + b"\x00" * BLOCK) and headers(member("a") + b"\x00" * BLOCK)[0].name == "a"
    refused(member("a") + b"\x00" * BLOCK + member("b"), "zero block followed by a header")
    # after the marker, nothing is parsed (the caller hashes it for the diff_id)
    assert [h.name for h in headers(tar(member("a")) + b"garbage" * 100)] == ["a"]


def test_checksums() -> None:
    """A wrong checksum is an error; the signed-byte sum of old tars is accepted (Go takes both)."""
    good = header("caf\xe9".encode("latin-1"))
    bad = good[:148] + b"0000001\x00" + good[156:]
    refused(bad + end(), "bad header checksum")
    signed = sum(b - 256 if b > 127 else b for b in good[:148] + b" " * 8 + good[156:])
    old = good[:148] + b"%06o\x00 " % signed + good[156:]
    assert headers(old + end())[0].name == "caf\udce9"


# ---- PAX and GNU extended headers -------------------------------------------------------------------

def test_pax_header_claiming_3_gib_is_never_read() -> None:
    """Issue 11 item 7: a PAX header claiming 3 GiB was read whole (6.3 GB RSS from 3 MB of input). Go
    caps a record set at 1 MiB; so does this reader, before reading any of it."""
    pulled = 0

    def source():
        nonlocal pulled
        yield header("././@PaxHeader", type=b"x", size=3 << 30)
        for _ in range(3000):
            pulled += 1024
            yield b"9" * 1024

    with pytest.raises(TarFormatError, match="extended header of 3221225472 bytes"):
        list(iter_headers(ChunkReader(source())))
    assert pulled <= 1024


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K"])
def test_extended_headers_over_1_mib_are_refused(kind: bytes) -> None:
    refused(header("././@LongLink", type=kind, size=(1 << 20) + 1) + pad(b"a" * ((1 << 20) + 1)) + end(),
            "more than 1048576")


@pytest.mark.parametrize("records, words", [
    ({"size": "-512"}, ["PAX size=-512 is out of range"]),
    ({"size": "1e3"}, ["is not an integer"]),
    ({"size": " 12"}, ["is not an integer"]),
    ({"size": "9" * 30}, ["is not an integer"]),
    ({"uid": str(10 ** 20)}, ["PAX uid"]),
    ({"uid": "4294967295"}, ["out of range"]),  # (uid_t)-1: chown would leave the owner as it is
    ({"gid": "-1"}, ["out of range"]),
    ({"gid": "1_000"}, ["is not an integer"]),
    ({"mtime": "inf"}, ["is not a time"]),
    ({"mtime": "nan"}, ["is not a time"]),
    ({"mtime": "1e400"}, ["is not a time"]),
    ({"mtime": "1" * 400}, ["is not a time"]),
    ({"mtime": "99999999999999"}, ["out of range"]),
    ({"mtime": "12.5e3"}, ["is not a time"]),
    ({"atime": "yesterday"}, ["PAX atime"]),
    ({"path": "a\x00b"}, ["PAX path holds a NUL"]),
    ({"linkpath": "/etc\x00x"}, ["PAX linkpath holds a NUL"]),
    ({"uname": "ro\x00ot"}, ["PAX uname holds a NUL"]),
    ({"path": "a/" * 2100}, ["more than 4096"]),
])
def test_pax_values_are_checked(records: dict, words: list[str]) -> None:
    """Issue 11 items 6 and 8: each of these reached the extraction (or a traceback) before."""
    refused(tar(pax(records), member("victim", b"data")), *words)


@pytest.mark.parametrize("raw", [
    b"30 path=no newline at the end!!",  # the last byte must be a newline
    b"7 a=\nxy",  # its length takes in bytes of the next record
    b"99 path=x\n",  # longer than the header
    b"4 \n",  # below Go's minimum of 5
    b"x2 path=a\n",  # not a number
    b"12 noequals\n",
    b"9 =value\n",  # an empty key
    b"10 k\x00ey=v\n",  # a NUL in a key
    b"15 path=abc\n" + b"garbage",
])
def test_malformed_pax_records_are_refused(raw: bytes) -> None:
    refused(tar(pax({}, raw=raw), member("victim")), "PAX record")


def test_pax_overrides_and_go_precedence() -> None:
    """PAX path/linkpath/size/uid/gid/mtime override the header; an empty value keeps the header's; a GNU
    long name overrides a PAX path (Go applies the long name last)."""
    hs = headers(tar(
        pax({"path": "pax/name", "size": "3", "uid": "4294967294", "gid": "7", "mtime": "1704067200.25"}),
        member("ustar-name", b"abc", size=0),
        pax({"path": ""}),
        member("kept"),
        pax({"path": "from-pax", "mtime": "-1.5"}),
        gnu_long("from-gnu"),
        member("short"),
        pax({"linkpath": "long/target"}),
        symlink("l", "short-target"),
    ))
    assert [(h.name, h.size, h.uid, h.gid) for h in hs[:2]] == [("pax/name", 3, 4294967294, 7), ("kept", 0, 0, 0)]
    assert hs[0].mtime == 1704067200.25
    assert (hs[2].name, hs[2].mtime) == ("from-gnu", -1.5)
    assert hs[3].linkname == "long/target"


def test_global_pax_records_are_checked_and_not_applied() -> None:
    """Docker and containerd ignore PAX global headers: a ``g`` naming a path must not rename later members."""
    hs = headers(tar(pax({"path": "etc/passwd", "uid": "0"}, kind=b"g"), member("a", uid=5), member("b")))
    assert [(h.name, h.uid) for h in hs] == [("a", 5), ("b", 0)]
    # Go returns the global header as a member of its own: what was pending before it is dropped, and
    # its values are not checked (Go ignores mergePAX's error there), but its records' syntax is
    hs = headers(tar(pax({"path": "dropped"}), gnu_long("dropped-too"), pax({"mtime": "nan"}, kind=b"g"),
                     member("c")))
    assert [h.name for h in hs] == ["c"]
    refused(tar(pax({}, raw=b"12 noequals\n", kind=b"g"), member("a")), "PAX record without '='")


def test_gnu_long_names() -> None:
    """GNU ``L``/``K`` records name the next member (up to PATH_MAX); a NUL ends them."""
    name = "d/" * 100 + "file"
    hs = headers(tar(gnu_long(name), member("short", fmt=GNU), gnu_long("t" * 300, b"K"),
                     symlink("s", "x", fmt=GNU), gnu_long(b"cut\x00hidden"), member("z")))
    assert [h.name for h in hs] == [name, "s", "cut"]
    assert hs[1].linkname == "t" * 300
    refused(tar(gnu_long("n" * 5000), member("x")), "GNU long name of 5000 bytes")


# ---- the prefix rule and header formats -------------------------------------------------------------

def gnu_tar_names(data: bytes, tmp_path) -> list[str]:
    p = tmp_path / "x.tar"
    p.write_bytes(data)
    return subprocess.run(["tar", "-tf", str(p)], capture_output=True, text=True, check=True).stdout.splitlines()


def test_prefix_rule_of_each_magic(tmp_path) -> None:
    """Issue 11 item 5: the index applied the ustar prefix only with the POSIX magic, ``tarfile`` always.
    The one rule now is Go's: the prefix is joined with ``ustar\\0``; V7 headers have none; GNU's
    ``ustar  `` keeps access and change times there, which GNU tar never reads as a name either."""
    times = (b"%011o\x00" % EPOCH) * 2
    data = tar(member("file", prefix="posix/dir"),
               member("file2", prefix=times, fmt=GNU),
               member("file3", prefix="v7-junk", fmt=V7))
    names = [h.name for h in headers(data)]
    assert names == ["posix/dir/file", "file2", "file3"]
    assert names == gnu_tar_names(data, tmp_path)


def test_gnu_magic_prefix_fallback_of_go() -> None:
    """Where a GNU header's time fields are not numbers, Go (so Docker, containerd, umoci) reads the field
    as a prefix when it is ASCII, for tars written by Go before 1.8; GNU tar does not. layerkit reads what
    Docker reads (umoci agrees: test_extract.test_header_rules_match_umoci)."""
    hs = headers(tar(member("a", prefix="not-times", fmt=GNU), member("b", prefix=b"\xffnot-ascii", fmt=GNU),
                     member("c", prefix=b"\x00" * 12 + b"junk", fmt=GNU)))
    assert [h.name for h in hs] == ["not-times/a", "b", "c"]


def test_gnu_magic_whiteout_prefix_is_refused_by_one_rule() -> None:
    """The reproduced attack: GNU magic, name ``.``, prefix ``.wh...``: invisible to the old index (no
    prefix), a whiteout of ``..`` for ``tarfile`` at extraction. With Go's rule it is ``.wh.../.``, a
    whiteout of ``..``, for the index and extraction alike, and both refuse it; with times in the field
    it is the root directory, skipped by both."""
    for fmt in (GNU, POSIX):
        h = headers(tar(dir_(".", prefix=".wh...", fmt=fmt)))[0]
        assert h.name == ".wh.../."
        with pytest.raises(LayerFormatError, match="malformed whiteout entry"):
            classify(h)
    with pytest.raises(LayerFormatError, match=r"^layer x: malformed whiteout entry '\.wh\.\.\./\.'$"):
        index_tar_columns(chunked(tar(dir_(".", prefix=".wh...", fmt=GNU))), "layer x")
    root = headers(tar(dir_(".", prefix=(b"%011o\x00" % EPOCH) * 2, fmt=GNU)))[0]
    assert root.name == "." and classify(root) is None


def test_star_prefix_is_131_bytes() -> None:
    """star's headers (POSIX magic and a ``tar\\0`` trailer) keep times after a 131-byte prefix."""
    h = bytearray(header("name", prefix="p" * 131 + "TIMES"))
    h[508:512] = b"tar\x00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    assert headers(bytes(h) + end())[0].name == "p" * 131 + "/name"


def test_old_directory_marker_and_types() -> None:
    """A type-NUL member named with a trailing slash is a directory (Go and tarfile); a ``0`` one is not."""
    hs = headers(tar(header("olddir/", type=b"\x00"), header("oldfile", type=b"\x00"), header("odd/", type=b"0")))
    assert [(h.name, h.type) for h in hs] == [("olddir/", b"5"), ("oldfile", b"0"), ("odd/", b"0")]


def test_device_fields_are_read_for_devices_only() -> None:
    hs = headers(tar(header("null", type=b"3", devmajor=1, devminor=3), header("f", devmajor=9, devminor=9),
                     header("v7dev", type=b"3", devmajor=1, devminor=3, fmt=V7)))
    assert [(h.devmajor, h.devminor) for h in hs] == [(1, 3), (0, 0), (0, 0)]
    refused(tar(header("d", type=b"4", devmajor=b256(1 << 33, 8))), "device number out of range")


# ---- sparse members ---------------------------------------------------------------------------------

@pytest.mark.parametrize("parts, fmt", [
    ([header("s", type=b"S", size=0, fmt=GNU)], "old GNU format"),
    ([pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s",
           "GNU.sparse.realsize": "9000"}), member("GNUSparseFile.0/s", b"x")], "format 1.0"),
    ([pax({"GNU.sparse.name": "s", "GNU.sparse.map": "0,1"}), member("s", b"x")], "format 0.1"),
    ([pax([("GNU.sparse.size", "9000"), ("GNU.sparse.offset", "0"), ("GNU.sparse.numbytes", "1")]),
      member("s", b"x")], "format 0.0"),
])
def test_sparse_members_are_refused(parts: list[bytes], fmt: str) -> None:
    """Neither the index nor extraction can place a sparse member's bytes: both refuse it (one reader)."""
    refused(tar(*parts), "sparse file", fmt)


def test_unknown_sparse_version_is_a_plain_file() -> None:
    """Go reads a member with an unknown GNU.sparse version as a regular file; so does this reader."""
    hs = headers(tar(pax({"GNU.sparse.major": "7", "GNU.sparse.minor": "1"}), member("s", b"abc")))
    assert (hs[0].name, hs[0].size) == ("s", 3)


# ---- the data API -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["chunks", "file"])
def test_member_data_is_read_in_bounded_pieces_and_the_rest_skipped(kind: str) -> None:
    blob = bytes(range(256)) * 40
    data = tar(member("a", blob), member("b", b"second"), dir_("d"), member("c", b"third"))
    r = chunked(data, 333) if kind == "chunks" else FileReader(io.BytesIO(data))
    tr = TarReader(r)
    got = {}
    for h in tr:
        if h.name == "a":
            first = tr.read(100)
            assert first == blob[:100]
            assert all(len(c) <= 1000 for c in tr.chunks(1000))
            assert tr.read(10) == b""
            got["a"] = True
        elif h.name == "b":
            got["b"] = tr.read(3)  # the rest is skipped by the iteration
        elif h.name == "c":
            got["c"] = b"".join(tr.chunks())
        else:
            assert tr.read(10) == b""  # a directory has no data
    assert got == {"a": True, "b": b"sec", "c": b"third"}


def test_truncated_member_data_through_the_data_api() -> None:
    tr = TarReader(chunked(member("f", b"0123456789")[:BLOCK + 4]))
    it = iter(tr)
    next(it)
    with pytest.raises(TarFormatError, match="truncated data of 'f'"):
        b"".join(tr.chunks())


def test_pax_record_lengths_are_self_consistent() -> None:
    """The helper that builds records for these tests gets the self-referential length right."""
    for k, v in [("path", "a"), ("path", "x" * 90), ("path", "y" * 995)]:
        rec = pax_record(k, v)
        assert int(rec.split(b" ", 1)[0]) == len(rec)


def test_tar_format_error_is_an_invalid_archive() -> None:
    assert issubclass(TarFormatError, InvalidArchive)


def test_truncation_in_a_plain_file_is_found_from_its_length(tmp_path) -> None:
    """Over a plain file the reader bounds skips by the file's length (no read); over any other seekable
    reader it reads the last byte skipped. Both find the same truncation."""
    p = tmp_path / "cut.tar"
    p.write_bytes(member("huge", size=1 << 40)[:BLOCK] + b"x" * 100)
    with open(p, "rb") as f, pytest.raises(TarFormatError, match="truncated data of 'huge'"):
        list(iter_headers(FileReader(f)))
    p.write_bytes(tar(member("a", b"x" * 700), member("b", b"y")))
    with open(p, "rb") as f:
        assert [h.name for h in iter_headers(FileReader(f))] == ["a", "b"]
