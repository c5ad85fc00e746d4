"""``tree``: dive's layer tree, checked against real unpacked root filesystems (issue 12, item 3).

A three-layer image with the awkward cases (hardlinks within and across directories, symlinks, a whiteout
of a directory, an opaque directory, a file turned into a directory, a chmod-only change) is written as an
OCI layout per layer count (bottom 1, 2 and 3 layers) and unpacked with ``umoci unpack``. For every layer N:

- every directory's ``dir_size`` equals the size of that directory in the rootfs of layers 0..N, counted
  as Docker counts size: file bytes, each inode once however many hardlinks name it, a symlink as its
  target's length;
- the marks equal the difference of the two rootfs (0..N-1 and 0..N): a path only above is ``added``, only
  below is ``removed``, a non-directory whose content or metadata differs is ``modified``, and a directory is
  ``modified`` when its own mode/owner or anything below it changed; unchanged paths carry no mark;
- with ``--aggregate`` the same holds against the rootfs of layer 0 alone.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import builders
import pytest
from builders import OPQ, WH, D, F, H, S, layer_tar
from realtools import require

from layerkit import commands
from layerkit.cli import main
from layerkit.engine.store import Store

LAYERS = [
    [D("etc"), F("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), F("etc/motd", b"hello\n" * 40),
     D("usr"), D("usr/bin"), F("usr/bin/tool", b"\x7fELF" + b"t" * 5000, 0o755),
     H("usr/bin/tool-alias", "usr/bin/tool"), S("usr/bin/sh", "tool"), D("opt"), D("opt/old"),
     F("opt/old/a", b"a" * 300), F("opt/old/b", b"b" * 700), D("var"), D("var/cache"),
     F("var/cache/blob", b"c" * 9000), F("var/thing", b"file first\n"), D("keep"), F("keep/x", b"x" * 10)],
    [D("etc"), F("etc/motd", b"changed motd\n"), WH("opt/old"), D("usr"), D("usr/bin"),
     H("usr/bin/third", "usr/bin/tool"), D("home"), D("home/user", 0o700, 1000, 1000),
     F("home/user/notes", b"n" * 1234, 0o600, 1000, 1000), D("var"), WH("var/thing"), D("var/thing"),
     F("var/thing/now-a-dir", b"d" * 55)],
    [D("var"), D("var/cache"), OPQ("var/cache"), F("var/cache/new", b"N" * 2222), D("etc"),
     F("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o600), D("keep", 0o750), S("etc/motd", "/keep/x"),
     D("srv"), H("srv/tool-copy", "usr/bin/tool")],
]


def _docker_du(rootfs: Path) -> dict[str, int]:
    """Every directory of a rootfs with its size as Docker counts size (inodes once, symlinks by target)."""
    seen: dict[str, set[tuple[int, int]]] = {}
    sizes: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        rel = "/" + os.path.relpath(dirpath, rootfs).lstrip(".")
        if rel != "/":
            sizes.setdefault(rel, 0)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                size = len(os.fsencode(os.readlink(p)))
            elif stat.S_ISREG(st.st_mode):
                size = st.st_size
            else:
                continue
            d = rel
            while d != "/":
                inodes = seen.setdefault(d, set())
                if (st.st_dev, st.st_ino) not in inodes:
                    inodes.add((st.st_dev, st.st_ino))
                    sizes[d] += size
                d = os.path.dirname(d)
    return sizes


def _paths(rootfs: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, content or link) of a rootfs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = "/" + os.path.relpath(p, rootfs)
            if stat.S_ISLNK(st.st_mode):
                what = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", None)
            else:
                what = ("file", Path(p).read_bytes())
            out[rel] = (what[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what[1])
    return out


def _expected_marks(below: dict[str, tuple], top: dict[str, tuple]) -> dict[str, str]:
    marks = {}
    for p, t in top.items():
        if p not in below:
            marks[p] = "added"
        elif t[0] != "dir" or below[p][0] != "dir":
            if t != below[p]:
                marks[p] = "modified"
        elif t[1:4] != below[p][1:4]:
            marks[p] = "modified"
    for p in below:
        if p not in top:
            marks[p] = "removed"
    for p in sorted(marks, key=len, reverse=True):  # a directory above a change is modified
        d = os.path.dirname(p)
        while d != "/" and d not in marks:
            marks[d] = "modified"
            d = os.path.dirname(d)
    return marks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require("umoci")
    tmp = tmp_path_factory.mktemp("tree")
    tars = [layer_tar(members) for members in LAYERS]
    rootfs = []
    for n in range(1, len(tars) + 1):
        layout = builders.write_layout(tmp / f"layout{n}", tars[:n], "t")
        bundle = tmp / f"bundle{n}"
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], check=True,
                       capture_output=True)
        rootfs.append(bundle / "rootfs")
    store = Store(tmp / "store")
    commands.load(store, str(tmp / f"layout{len(tars)}"))
    store_dir = str(store.root)
    return store, store_dir, rootfs


@pytest.mark.parametrize("n", [0, 1, 2])
def test_dir_sizes_equal_the_unpacked_rootfs(world, n):
    store, _, rootfs = world
    rows = commands.tree(store, "t", layer=n).rows
    got = {r["path"]: r["dir_size"] for r in rows if r["type"] == "dir" and r["change"] != "removed"}
    assert got == _docker_du(rootfs[n])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_marks_are_the_difference_of_the_rootfs(world, n):
    store, _, rootfs = world
    rows = commands.tree(store, "t", layer=n).rows
    below = _paths(rootfs[n - 1]) if n else {}
    assert {r["path"]: r["change"] for r in rows if r["change"]} == _expected_marks(below, _paths(rootfs[n]))
    # the tree holds the union up to N plus what was removed, nothing else
    assert {r["path"] for r in rows} == set(_paths(rootfs[n])) | set(below)


def test_aggregate_marks_against_the_base(world):
    store, _, rootfs = world
    rows = commands.tree(store, "t", aggregate=True).rows
    expected = _expected_marks(_paths(rootfs[0]), _paths(rootfs[2]))
    assert {r["path"]: r["change"] for r in rows if r["change"]} == expected


def test_removed_directory_keeps_its_removed_size(world):
    store, _, _ = world
    rows = {r["path"]: r for r in commands.tree(store, "t", layer=1).rows}
    assert rows["/opt/old"]["change"] == "removed" and rows["/opt/old"]["dir_size"] == 1000
    assert rows["/opt"]["change"] == "modified" and rows["/opt"]["dir_size"] == 0  # removed ones not counted


def test_cli_text_json_changes_and_depth(capsys, world):
    store, store_dir, _ = world
    assert main(["--store", store_dir, "tree", "t", "--layer", "1", "--changes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[Current layer contents: layer 1 (")
    assert out[1].split() == ["CHANGE", "PERMISSION", "UID:GID", "SIZE", "FILETREE"]
    body = out[2:]
    assert all(line[0] in "AMR" for line in body)  # --changes: only marked rows
    assert any(line.startswith("R") and line.endswith("└── old") for line in body)
    assert any(line.startswith("A") and "home" in line for line in body)
    assert "\033[" not in "".join(out)  # no colour when stdout is not a terminal

    assert main(["--store", store_dir, "tree", "t", "--max-depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["etc", "home", "keep", "opt", "srv", "usr", "var"]

    assert main(["--store", store_dir, "tree", "t", "/usr", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [n["path"] for n in doc] == ["/usr/bin"]
    kids = {n["path"]: n for n in doc[0]["children"]}
    assert kids["/usr/bin/sh"]["size"] == 4 and kids["/usr/bin/sh"]["link"] == "tool"
    assert doc[0]["dir_size"] == 5004 + 4  # tool and its hardlinks once, plus the symlink


def test_errors(capsys, world):
    _, store_dir, _ = world
    assert main(["--store", store_dir, "tree", "t", "--layer", "7"]) == 1
    assert "no layer 7" in capsys.readouterr().err
    assert main(["--store", store_dir, "tree", "nope:1"]) == 1


def test_whiteouts_are_entries_of_their_layer(capsys, world, tmp_path):
    store, store_dir, _ = world
    rows = {r["index"]: r for r in commands.layers(store, "t").to_json()}
    assert [rows[i]["whiteouts"] for i in range(3)] == [0, 2, 1]  # .wh.old and .wh.thing; the opaque marker
    # a layer whose only content is a whiteout: no files, one whiteout
    only = builders.write_layout(tmp_path / "only", [layer_tar(LAYERS[0]), layer_tar([WH("etc/motd")])], "only")
    commands.load(store, str(only))
    top = commands.layers(store, "only").to_json()[1]
    assert (top["files"], top["whiteouts"]) == (0, 1)

    assert main(["--store", store_dir, "ls", "t", "/opt", "--whiteouts", "--format", "json"]) == 0
    listed = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["/opt/.wh.old"]["type"] == "whiteout" and listed["/opt/.wh.old"]["layer"] == \
        store.image("t").diff_ids[1]
    assert main(["--store", store_dir, "ls", "t", "/opt", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # without --whiteouts the view alone: /opt is empty
    assert main(["--store", store_dir, "files", "t", "--whiteouts", "--format", "json"]) == 0
    markers = {r["path"]: r["type"] for r in json.loads(capsys.readouterr().out) if r["type"] in ("whiteout",
                                                                                                  "opaque")}
    assert markers == {"/opt/.wh.old": "whiteout", "/var/.wh.thing": "whiteout",
                       "/var/cache/.wh..wh..opq": "opaque"}
