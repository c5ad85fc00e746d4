"""Extraction of hostile layers never reaches outside its destination (issue 11 items 1 and 5).

Each case is a layer crafted byte by byte whose entries aim at files of a host directory made for the
test (symlinks to it, swaps of a directory or file for a symlink after its metadata was recorded, ``..``,
hardlinks through links, whiteouts of ``.``/``..`` or through a symlinked parent). Every test hashes the
host directory before and after; extraction either succeeds inside its destination or fails with one
line naming the entry. Where it succeeds, the extracted tree is compared with the layer's index read in
tar order: the same reader decides both, so they must agree on every path and type.

Cases run through :func:`~layerkit.engine.extract.extract_layer` directly (each compression), and the
loadable ones also end to end with ``layerkit load`` and ``layerkit run``. umoci (Go's ``archive/tar``)
judges the header rules on a layer where the tar formats differ.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from realtools import require, run

from layerkit.cli import main
from layerkit.engine.extract import extract_layer
from layerkit.engine.image import Layer
from layerkit.engine.layer import index_blob
from layerkit.engine.layerindex import marker_target
from layerkit.engine.store import Store
from layerkit.engine.upper import OPAQUE_XATTR
from layerkit.errors import LayerkitError
from layerkit.examples import busybox_layer

from .tarcraft import (
    EPOCH,
    GNU,
    MEDIA,
    b256,
    compress,
    dir_,
    gnu_long,
    hardlink,
    header,
    member,
    pax,
    symlink,
    tar,
    tree_digest,
    write_layout,
)

COMPRESSIONS = ["tar", "gzip", "zstd"]


@pytest.fixture
def host(tmp_path: Path):
    """A host directory that the cases aim at: a root-owned 0600 file and a directory with a file.
    The test fails if anything in it changes."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_bytes(b"host secret\n")
    os.chmod(h / "secret", 0o600)
    (h / "dir").mkdir()
    (h / "dir" / "inner").write_bytes(b"inner\n")
    before = tree_digest(h)
    yield h
    assert tree_digest(h) == before, "a host file outside the destination changed"


def store_layer(store: Store, data: bytes, compression: str = "tar") -> Layer:
    """Put a layer blob straight into the store (no load, so what load would refuse reaches extraction)."""
    blob = compress(data, compression)
    digest = store.blobs.put_bytes(blob)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    return Layer(store, 0, diff_id, digest, MEDIA[compression], len(blob), diff_id)


def extract(tmp_path: Path, data: bytes, compression: str = "tar") -> tuple[Path, Layer, Store]:
    store = Store(tmp_path / "store")
    layer = store_layer(store, data, compression)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_layer(store, layer, dest)
    return dest, layer, store


def refused(tmp_path: Path, data: bytes, *words: str, compression: str = "tar") -> str:
    with pytest.raises(LayerkitError) as ei:
        extract(tmp_path, data, compression)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("layer sha256:"), msg
    for w in words:
        assert w in msg, msg
    return msg


def kind_of(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISCHR(m):
        return "w" if st.st_rdev == 0 else "c"
    return {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFBLK: "b",
            stat.S_IFIFO: "p"}[stat.S_IFMT(m)]


def extracted_types(dest: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out["/" + os.path.relpath(p, dest)] = kind_of(os.lstat(p))
    return out


def index_in_order(store: Store, layer: Layer) -> dict[str, str]:
    """What applying the layer's index entries in tar order leaves: path -> type code. Independent of the
    extraction code: a non-directory replaces a path and everything below it, a missing or non-directory
    parent becomes a directory, a whiteout is a 0/0 device only where the layer has nothing."""
    cols = index_blob(store.blobs, layer.digest, "test").columns
    state: dict[str, str] = {}

    def drop(p: str) -> None:
        for k in [k for k in state if k == p or k.startswith(p + "/")]:
            del state[k]

    def parents(p: str) -> None:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            a = "/" + "/".join(parts[:i])
            if state.get(a) != "d":
                drop(a)
                state[a] = "d"

    for k in range(len(cols)):
        e = cols.entry(k)
        code = cols.types[k]
        raw = cols.paths[k]
        parents(raw)
        if code == "o":
            continue
        if code == "w":
            t = marker_target(raw, "w")
            state.setdefault(t, "w")
            continue
        if code == "d":
            if state.get(e.path) != "d":
                drop(e.path)
                state[e.path] = "d"
            continue
        kind = code
        if code == "h":
            kind = state.get(e.link, "f")
        drop(e.path)
        state[e.path] = kind
    return state


def agree(store: Store, layer: Layer, dest: Path) -> None:
    assert extracted_types(dest) == index_in_order(store, layer)


# ---- the cases ---------------------------------------------------------------------------------------

def case_dir_swap(h: Path) -> bytes:
    """Issue 11 item 1: ``x/`` (setuid, owner 1234) is recorded, then replaced by ``x -> host file``.
    The old extraction chmodded and chowned the host file after the loop (mode 04777)."""
    return tar(dir_("x", mode=0o4777, uid=1234, gid=1234), member("x/inside", b"i"),
               symlink("x", str(h / "secret")))


def case_file_swap(h: Path) -> bytes:
    return tar(member("y", b"data", mode=0o4777, uid=1234), symlink("y", str(h / "secret")),
               dir_("z", mode=0o777), symlink("z", str(h / "dir")))


def case_dir_swap_deep(h: Path) -> bytes:
    """The swapped directory is a parent of other recorded directories."""
    return tar(dir_("a", mode=0o777), dir_("a/b", mode=0o4777, uid=7), dir_("a/b/c", mode=0o777),
               symlink("a", str(h)), symlink("a2", str(h / "dir")))


def case_hardlink_to_outward_symlink(h: Path) -> bytes:
    """A hardlink to a symlink that points out is a second name of the symlink, never of its target;
    writing the name later replaces it."""
    return tar(symlink("s", str(h / "secret")), hardlink("hs", "s"), hardlink("hw", "s"),
               member("hw", b"replaced"))


def case_whiteouts_of_this_layer(h: Path) -> bytes:
    """Whiteouts act only on the layers below: this layer's ``a/b`` survives ``a/.wh.b``, its ``d/`` becomes
    opaque, ``a/.wh.c`` makes a whiteout, and a directory made over a whiteout is opaque."""
    return tar(dir_("a"), member("a/b", b"kept"), member("a/.wh.b"), member("a/.wh.c"),
               dir_("d"), member("d/x", b"x"), member(".wh.d"),
               member(".wh.e"), dir_("e"), member("e/new", b"n"), member("f/.wh..wh..opq"))


def case_gnu_prefix_root(h: Path) -> bytes:
    """GNU magic, name ``.``, times where ustar keeps its prefix: the root directory, which extraction
    skips as the index does."""
    return tar(dir_(".", prefix=(b"%011o\x00" % EPOCH) * 2, fmt=GNU, mode=0o777), member("ok", b"ok"))


def case_devices_and_setuid(h: Path) -> bytes:
    """Docker keeps device nodes and setuid bits (the store keeps them private); so does extraction."""
    return tar(header("dev/null", type=b"3", devmajor=1, devminor=3, mode=0o666),
               header("dev/sda", type=b"4", devmajor=8, devminor=0, mode=0o660),
               header("fifo", type=b"6", mode=0o640, uid=5),
               member("bin/su", b"#!", mode=0o4755, uid=0, gid=0))


def case_dotdot_inside(h: Path) -> bytes:
    """``..`` that stays inside the root is normalised, as Docker does."""
    return tar(member("a/../b", b"b"), member("./c/./d", b"d"), member("/abs/e", b"e"))


def case_long_names(h: Path) -> bytes:
    """Long names through PAX and GNU records, within the kernel's limits, and names that are not UTF-8."""
    deep = "/".join(["d" * 200] * 15) + "/file"
    return tar(pax({"path": deep}), member("short", b"deep"), gnu_long("l" * 255), member("x", b"long"),
               member(b"caf\xe9", b"latin-1"), symlink("lnk", "caf\udce9"),
               pax({"path": "e/" * 255 + "bottom"}), member("y", b"deep"))


def case_base256_and_pax_numbers(h: Path) -> bytes:
    return tar(member("big-owner", b"o", uid=b256(70000, 8), gid=b256(70001, 8)),
               pax({"uid": "4000000000", "mtime": "1704067200.5"}), member("pax-owner", b"p"))


OK_CASES: dict[str, Callable[[Path], bytes]] = {
    "dir-swap": case_dir_swap, "file-swap": case_file_swap, "dir-swap-deep": case_dir_swap_deep,
    "hardlink-to-outward-symlink": case_hardlink_to_outward_symlink,
    "whiteouts-of-this-layer": case_whiteouts_of_this_layer, "gnu-prefix-root": case_gnu_prefix_root,
    "devices-and-setuid": case_devices_and_setuid, "dotdot-inside": case_dotdot_inside,
    "long-names": case_long_names, "base256-and-pax-numbers": case_base256_and_pax_numbers,
}

REFUSED_CASES: dict[str, tuple[Callable[[Path], bytes], list[str]]] = {
    "write-through-symlink": (lambda h: tar(symlink("s", str(h / "dir")), member("s/inner", b"pwned")),
                              ["tar entry 's/inner' writes through the symlink /s"]),
    "symlink-chain": (lambda h: tar(symlink("a", "b"), symlink("b", str(h / "dir")), member("a/new", b"x")),
                      ["'a/new'", "symlink /a"]),
    "absolute-symlink-parent": (lambda h: tar(symlink("r", "/"), member("r" + str(h / "secret"), b"x")),
                                ["symlink /r"]),
    "climbing-symlink-parent": (lambda h: tar(symlink("up", "../../../../.."), member("up/x", b"x")),
                                ["symlink /up"]),
    "dir-through-symlink": (lambda h: tar(symlink("s", str(h)), dir_("s/dir", mode=0o777)), ["symlink /s"]),
    "dotdot-escape": (lambda h: tar(member("a/../../escape", b"x")), ["'a/../../escape' points outside"]),
    "whiteout-of-dotdot": (lambda h: tar(member("sub/.wh...")), ["malformed whiteout entry 'sub/.wh...'"]),
    "whiteout-of-dot": (lambda h: tar(member(".wh..")), ["malformed whiteout entry '.wh..'"]),
    "posix-prefix-whiteout-of-dotdot": (lambda h: tar(dir_(".", prefix=".wh...")), ["malformed whiteout"]),
    # issue 11 item 5: with GNU magic too (Go reads the field as a prefix when it holds no times)
    "gnu-prefix-whiteout-of-dotdot": (lambda h: tar(dir_(".", prefix=".wh...", fmt=GNU)),
                                      ["malformed whiteout entry '.wh.../.'"]),
    "whiteout-through-symlink": (lambda h: tar(symlink("s", str(h / "dir")), member("s/.wh.inner")),
                                 ["'s/.wh.inner'", "symlink /s"]),
    "opaque-through-symlink": (lambda h: tar(symlink("s", str(h / "dir")), member("s/.wh..wh..opq")),
                               ["symlink /s"]),
    "hardlink-named-through-symlink": (lambda h: tar(member("f", b"f"), symlink("s", str(h / "dir")),
                                                     hardlink("s/link", "f")), ["'s/link'", "symlink /s"]),
    "hardlink-through-symlink-target": (lambda h: tar(symlink("s", str(h / "dir")), hardlink("l", "s/inner")),
                                        ["hardlink 'l' points to 's/inner'"]),
    "hardlink-to-directory": (lambda h: tar(dir_("d"), hardlink("l", "d")), ["points to directory"]),
    "hardlink-to-itself": (lambda h: tar(hardlink("l", "l")), ["points to itself"]),
    "name-over-255-bytes": (lambda h: tar(pax({"path": "n" * 300}), member("x", b"x")),
                            ["cannot extract tar entry '" + "n" * 300 + "'", "longer than 255 bytes"]),
    "path-over-path-max": (lambda h: tar(pax({"path": "p/" * 2100}), member("x", b"x")), ["more than 4096"]),
    "path-too-deep": (lambda h: tar(pax({"path": "d/" * 300 + "f"}), member("x", b"x")),
                      ["more than 256 directories deep"]),
    "negative-size": (lambda h: tar(member("n", size=b256(-512, 12))), ["tar entry 'n'", "negative size -512"]),
    "pax-negative-size": (lambda h: tar(pax({"size": "-512"}), member("n", b"x")), ["PAX size=-512"]),
    "pax-mtime-inf": (lambda h: tar(pax({"mtime": "inf"}), member("n", b"x")), ["PAX mtime='inf'"]),
    "symlink-empty-target": (lambda h: tar(symlink("e", "")), ["'e'"]),
}


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("name", sorted(OK_CASES))
def test_extraction_stays_inside_and_agrees_with_the_index(tmp_path: Path, host: Path, name: str,
                                                            compression: str) -> None:
    data = OK_CASES[name](host)
    dest, layer, store = extract(tmp_path, data, compression)
    agree(store, layer, dest)
    check = CHECKS.get(name)
    if check:
        check(dest, host)


@pytest.mark.parametrize("name", sorted(REFUSED_CASES))
def test_hostile_layers_are_refused_with_one_line(tmp_path: Path, host: Path, name: str) -> None:
    make, words = REFUSED_CASES[name]
    refused(tmp_path, make(host), *words)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_refusals_are_the_same_compressed(tmp_path: Path, host: Path, compression: str) -> None:
    make, words = REFUSED_CASES["write-through-symlink"]
    refused(tmp_path, make(host), *words, compression=compression)


# ---- what each successful case must leave ------------------------------------------------------------

def _check_dir_swap(dest: Path, host: Path) -> None:
    assert os.readlink(dest / "x") == str(host / "secret")
    st = os.stat(host / "secret")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, os.getuid())


def _check_file_swap(dest: Path, host: Path) -> None:
    assert os.readlink(dest / "y") == str(host / "secret") and os.readlink(dest / "z") == str(host / "dir")
    assert stat.S_IMODE(os.stat(host / "dir").st_mode) != 0o777


def _check_hardlink_symlink(dest: Path, host: Path) -> None:
    s, hs = os.lstat(dest / "s"), os.lstat(dest / "hs")
    assert stat.S_ISLNK(hs.st_mode) and (s.st_ino, s.st_nlink) == (hs.st_ino, 2)
    assert (dest / "hw").read_bytes() == b"replaced" and not (dest / "hw").is_symlink()


def _check_whiteouts(dest: Path, host: Path) -> None:
    assert (dest / "a" / "b").read_bytes() == b"kept"
    assert kind_of(os.lstat(dest / "a" / "c")) == "w"
    assert os.getxattr(dest / "d", OPAQUE_XATTR) == b"y" and (dest / "d" / "x").exists()
    assert os.getxattr(dest / "e", OPAQUE_XATTR) == b"y" and (dest / "e" / "new").exists()
    assert os.getxattr(dest / "f", OPAQUE_XATTR) == b"y"
    with pytest.raises(OSError):
        os.getxattr(dest / "a", OPAQUE_XATTR)


def _check_gnu_root(dest: Path, host: Path) -> None:
    assert sorted(os.listdir(dest)) == ["ok"]
    assert stat.S_IMODE(os.stat(dest).st_mode) != 0o777


def _check_devices(dest: Path, host: Path) -> None:
    null, sda, fifo, su = (os.lstat(dest / p) for p in ("dev/null", "dev/sda", "fifo", "bin/su"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3) and stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(sda.st_mode) and sda.st_rdev == os.makedev(8, 0) and stat.S_IMODE(sda.st_mode) == 0o660
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640 and fifo.st_uid == 5
    assert stat.S_IMODE(su.st_mode) == 0o4755


def _check_dotdot(dest: Path, host: Path) -> None:
    assert sorted(os.listdir(dest)) == ["abs", "b", "c"]
    assert (dest / "abs" / "e").read_bytes() == b"e"


def _check_long(dest: Path, host: Path) -> None:
    deep = dest.joinpath(*(["d" * 200] * 15), "file")
    assert deep.read_bytes() == b"deep" and (dest / ("l" * 255)).read_bytes() == b"long"
    assert os.path.exists(os.fsencode(dest) + b"/caf\xe9") and os.readlink(os.fsencode(dest) + b"/lnk") == b"caf\xe9"


def _check_numbers(dest: Path, host: Path) -> None:
    st = os.lstat(dest / "big-owner")
    assert (st.st_uid, st.st_gid) == (70000, 70001)
    st = os.lstat(dest / "pax-owner")
    assert st.st_uid == 4000000000 and st.st_mtime == 1704067200.5


CHECKS = {"dir-swap": _check_dir_swap, "file-swap": _check_file_swap,
          "hardlink-to-outward-symlink": _check_hardlink_symlink, "whiteouts-of-this-layer": _check_whiteouts,
          "gnu-prefix-root": _check_gnu_root, "devices-and-setuid": _check_devices,
          "dotdot-inside": _check_dotdot, "long-names": _check_long, "base256-and-pax-numbers": _check_numbers}


def test_dir_swap_leaves_directory_metadata_on_the_directory(tmp_path: Path, host: Path) -> None:
    """The recorded directory's times and mode go to the directory itself when it survives, and to
    nothing when a later entry replaced it."""
    data = tar(dir_("keep", mode=0o750, uid=3, mtime=1000), member("keep/f", b"f", mtime=2000),
               dir_("gone", mode=0o4777, mtime=3000), member("gone", b"now a file", mode=0o644, mtime=4000),
               dir_("ro", mode=0o500, mtime=5000), member("ro/inside", b"written after its directory"))
    dest, layer, store = extract(tmp_path, data)
    st = os.lstat(dest / "ro")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o500, 5000) and (dest / "ro" / "inside").exists()
    st = os.lstat(dest / "keep")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o750, 3, 1000)
    st = os.lstat(dest / "gone")
    assert stat.S_ISREG(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o644, 4000)


def test_hardlinks_to_a_lower_layer_copy_the_bytes_once(tmp_path: Path, host: Path) -> None:
    """A hardlink to a file of a lower layer gets that file's bytes (never a host file's), once: later
    links to the same file share the copy."""
    base = tar(member("lib/f", b"lower bytes", mode=0o640, uid=9), symlink("s", str(host / "dir")))
    top = tar(hardlink("h1", "lib/f"), hardlink("h2", "lib/f"), hardlink("h3", "s/inner"))
    layout = write_layout(tmp_path / "layout", [base, top], "links:1")
    store = Store(tmp_path / "store")
    assert main(["--store", str(tmp_path / "store"), "load", str(layout)]) == 0
    img = store.image("links:1")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(LayerkitError, match=r"hardlink 'h3' points to 's/inner'.*not a file of the image"):
        extract_layer(store, img.layers[1], dest, img)
    layout2 = write_layout(tmp_path / "layout2", [base, tar(hardlink("h1", "lib/f"), hardlink("h2", "lib/f"))],
                           "links:2")
    assert main(["--store", str(tmp_path / "store"), "load", str(layout2)]) == 0
    img = store.image("links:2")
    dest = tmp_path / "dest2"
    dest.mkdir()
    extract_layer(store, img.layers[1], dest, img)
    a, b = os.lstat(dest / "h1"), os.lstat(dest / "h2")
    assert a.st_ino == b.st_ino and (dest / "h1").read_bytes() == b"lower bytes"
    assert (stat.S_IMODE(a.st_mode), a.st_uid) == (0o640, 9)


# ---- judged by Go's archive/tar (umoci) ---------------------------------------------------------------

def test_header_rules_match_umoci(tmp_path: Path) -> None:
    """umoci unpacks with Go's archive/tar, as Docker and containerd read layers: the same names and
    types come out of layerkit's index and extraction for prefixes under each magic, PAX and GNU
    precedence, and old-style directories. (umoci refuses PAX global headers, which Docker and
    containerd ignore, as layerkit does: see test_tar_reader.)"""
    require("umoci")
    data = tar(dir_("pfx"), member("a", b"a", prefix="pfx"),
               member("g", b"g", prefix="junk-times", fmt=GNU),
               member("g2", b"g", prefix=(b"%011o\x00" % EPOCH) * 2, fmt=GNU),
               pax({"path": "paxname"}), member("hdrname", b"p"),
               pax({"path": "lost"}), gnu_long("gnuwins"), member("short", b"l"),
               member("kept", b"k"),
               header("olddir/", type=b"\x00", mode=0o755), member("olddir/in", b"i"))
    layout = write_layout(tmp_path / "layout", [data], "rules:1")
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{layout}:rules:1", str(bundle)])
    want = extracted_types(bundle / "rootfs")
    dest, layer, store = extract(tmp_path, data)
    assert extracted_types(dest) == want
    assert index_in_order(store, layer) == want
    assert sorted(want) == ["/g2", "/gnuwins", "/junk-times", "/junk-times/g", "/kept", "/olddir", "/olddir/in",
                            "/paxname", "/pfx", "/pfx/a"]


# ---- end to end: layerkit load and run ---------------------------------------------------------------

@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> bytes:
    require("busybox")
    p = tmp_path_factory.mktemp("bb") / "busybox.tar"
    busybox_layer(p)
    return p.read_bytes()


def cli(capsys, store: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--store", str(store), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", ["file-swap", "dir-swap-deep", "hardlink-to-outward-symlink",
                                  "whiteouts-of-this-layer", "gnu-prefix-root", "long-names"])
def test_run_of_loadable_cases(capsys, tmp_path: Path, host: Path, busybox: bytes, name: str) -> None:
    """Each successful case end to end: ``layerkit load``, then ``layerkit run --rm`` lists the layer's
    top directory inside the container; the host directory is unchanged (the fixture checks)."""
    layout = write_layout(tmp_path / "layout", [busybox, OK_CASES[name](host)], "case:1")
    store = tmp_path / "store"
    assert cli(capsys, store, "load", str(layout))[0] == 0
    rc, out, err = cli(capsys, store, "run", "--rm", "case:1", "sh", "-c", "ls -a / >/dev/null; echo end")
    assert (rc, out) == (0, "end\n"), err


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_run_of_swapped_directory_leaves_the_host_alone(capsys, tmp_path: Path, host: Path, busybox: bytes,
                                                         compression: str) -> None:
    """Issue 11 item 1 end to end: ``layerkit run --rm`` of the image; inside, /x is the symlink."""
    layout = write_layout(tmp_path / "layout", [busybox, case_dir_swap(host) + b""], "evil:1",
                          compression=["tar", compression])
    store = tmp_path / "store"
    assert cli(capsys, store, "load", str(layout))[0] == 0
    rc, out, err = cli(capsys, store, "run", "--rm", "evil:1", "sh", "-c", "readlink /x; echo end")
    assert (rc, out) == (0, f"{host / 'secret'}\nend\n"), err


def test_run_refuses_a_layer_writing_through_its_symlink(capsys, tmp_path: Path, host: Path,
                                                         busybox: bytes) -> None:
    make, words = REFUSED_CASES["write-through-symlink"]
    layout = write_layout(tmp_path / "layout", [busybox, make(host)], "evil:2")
    store = tmp_path / "store"
    assert cli(capsys, store, "load", str(layout))[0] == 0
    rc, out, err = cli(capsys, store, "run", "--rm", "evil:2", "true")
    assert rc == 1 and out == "" and err.startswith("layerkit: error: ") and err.count("\n") == 1, err
    assert "writes through the symlink /s" in err


@pytest.mark.parametrize("name", ["whiteout-of-dotdot", "gnu-prefix-whiteout-of-dotdot", "dotdot-escape",
                                  "negative-size", "pax-negative-size", "pax-mtime-inf", "path-over-path-max",
                                  "path-too-deep"])
def test_load_refuses_what_extraction_refuses(capsys, tmp_path: Path, host: Path, name: str) -> None:
    """The index (load) and extraction read with one reader: what one refuses, so does the other,
    with a one-line error, leaving the store as it was."""
    make, words = REFUSED_CASES[name]
    layout = write_layout(tmp_path / "layout", [make(host)], "evil:3")
    store = tmp_path / "store"
    good = write_layout(tmp_path / "good", [tar(member("f", b"f"))], "good:1")
    assert cli(capsys, store, "load", str(good))[0] == 0
    before = tree_digest(store)
    rc, out, err = cli(capsys, store, "load", str(layout))
    assert rc == 1 and err.startswith("layerkit: error: ") and err.count("\n") == 1, err
    assert words[-1] in err
    assert tree_digest(store) == before


def test_run_keeps_devices_and_setuid_inside(capsys, tmp_path: Path, host: Path, busybox: bytes) -> None:
    layout = write_layout(tmp_path / "layout", [busybox, case_devices_and_setuid(host)], "dev:1")
    store = tmp_path / "store"
    assert cli(capsys, store, "load", str(layout))[0] == 0
    rc, out, err = cli(capsys, store, "run", "--rm", "dev:1", "sh", "-c", "stat -c '%A %t,%T' /bin/su /fifo")
    assert rc == 0, err
    assert out.split("\n")[:2] == ["-rwsr-xr-x 0,0", "prw-r----- 0,0"]


def test_stored_plain_blob_index_and_extraction_accept_the_same(tmp_path: Path, host: Path) -> None:
    """A stored plain tar is read in place without header checksums (its digest rules out corruption);
    index and extraction follow the same setting, so a bad checksum is accepted or refused by both, and
    load (which reads every layer as a stream) refuses it."""
    good = tar(member("a", b"a"), member("b", b"b"))
    bad = bytearray(good)
    bad[1024 + 148:1024 + 156] = b"0000001\x00"  # the checksum of b's header (after a's header and data)
    bad = bytes(bad)
    dest, layer, store = extract(tmp_path, bad)
    agree(store, layer, dest)
    assert sorted(os.listdir(dest)) == ["a", "b"]
    layout = write_layout(tmp_path / "layout", [bad], "cksum:1")
    assert main(["--store", str(tmp_path / "store2"), "load", str(layout)]) == 1


def test_layer_writer_never_follows_a_file_swapped_for_a_symlink(tmp_path, monkeypatch):
    """A running container's process swaps a file of its writable layer for a symlink to a host secret
    between the writer's lstat and its open: the layer never carries the host file's bytes."""
    import io

    from layerkit.engine import upper as upper_mod
    from layerkit.errors import FileOpError

    secret = tmp_path / "host-secret"
    secret.write_bytes(b"TOPSECRET")
    up = tmp_path / "upper"
    up.mkdir()
    (up / "f").write_bytes(b"harmless!")  # the same length as the secret
    real_walk = upper_mod._walk

    def swap_after_lstat(upper, skip):  # the walk has measured "f"; the container swaps it now
        for item in real_walk(upper, skip):
            if item[0].path == "/f":
                os.unlink(up / "f")
                os.symlink(secret, up / "f")
            yield item

    monkeypatch.setattr(upper_mod, "_walk", swap_after_lstat)
    out = io.BytesIO()
    with pytest.raises(FileOpError, match="/f: changed while the layer was written"):
        upper_mod.write_layer_tar(up, out)
    assert b"TOPSECRET" not in out.getvalue()
