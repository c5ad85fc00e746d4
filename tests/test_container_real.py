"""Containers, diff and commit against the real tools: buildah, skopeo, umoci and Podman (issue 3).

One module-scoped world holds a private Podman/buildah storage (overlay driver, as Docker's overlay2;
``--root``/``--runroot`` under the test's temporary directory) and a layerkit store. busybox (built from
/bin/busybox) is loaded into both. buildah builds ``multi`` on top of it, three layers made through ``buildah
mount`` (nothing runs): files added with odd modes and owners, symlinks, a hardlink pair, a fifo, a long name;
then a file modified, one chmod-ed and one chown-ed, a file and directories deleted, a directory emptied and
recreated, a file turned into a directory and back, a symlink retargeted; then a whole subtree deleted, a
busybox applet deleted and nested directories added. skopeo copies it to an OCI layout, which ``umoci unpack``
extracts and layerkit loads.

- (a) ``ls -R`` equals the umoci rootfs path by path (also for a synthesized layout with the awkward
  cases of layer.md), and every regular file's bytes equal what layerkit reads;
- (b) a table of operations run as shell scripts in a layerkit container and in a Podman container of the
  same image gives the same ``diff``; (c) the same operations through the Python API give it too;
- (d) the story of the issue (run, ps, diff, commit, history, rm, rmi, busybox still runs);
- (e) a committed image saved by layerkit loads and runs in Podman with its change and ``-c`` config;
  ``rmi`` refuses an image that a container uses, naming it, unless ``-f``;
- (f) 127 layers at most in what mounts an image: a commit making the 128th fails with ``max depth exceeded``,
  and so does a container of a 128-layer image, which loads and is analysed as other tools do.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import builders
import pytest
from realtools import ls_tree, rootfs_tree

from layerkit.cli import main
from layerkit.engine.container import Container, create_container, find_container, remove_container
from layerkit.engine.store import Store
from layerkit.errors import MaxDepthExceeded
from layerkit.examples import busybox_archive

pytestmark = pytest.mark.tools

TOOLS = {"podman": "podman", "buildah": "buildah", "skopeo": "skopeo", "umoci": "umoci",
         "/usr/sbin/runc": "runc", "unshare": "util-linux"}
PODMAN_RUN = ["--runtime", "/usr/sbin/runc", "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024"]
LONG = "l" * 130
EPOCH = 1704067200


def _run(argv: list[str], input: str | None = None, check: bool = True, timeout: float = 120
         ) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


class World:
    """The private Podman storage, the layerkit store and the images both hold."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proot = root / "podman-root"
        # podman refuses a runroot longer than 50 characters, so it lives in a short private directory
        self.prunroot = Path(tempfile.mkdtemp(prefix="lk-rr-", dir="/tmp"))
        self.store_dir = root / "store"
        self.store = Store(self.store_dir)
        self.podman_diffs: dict[str, set[tuple[str, str]]] = {}

    # ---- the tools --------------------------------------------------------------------------------
    def _storage(self) -> list[str]:
        # overlay, as Docker's overlay2: diff is then the overlay walk whose rules layerkit follows (vfs
        # compares whole trees: it misses a chmod to the same mode and marks every ancestor of a change)
        return ["--root", str(self.proot), "--runroot", str(self.prunroot), "--storage-driver", "overlay"]

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["podman", *self._storage(), "--cgroup-manager", "cgroupfs", *args], check=check)

    def podman_run(self, name: str, image: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.podman("run", *PODMAN_RUN, "--name", name, image, *cmd, check=check)

    def buildah(self, *args: str) -> str:
        return _run(["buildah", *self._storage(), *args]).stdout.strip()

    def containers_storage(self, image: str) -> str:
        return f"containers-storage:[overlay@{self.proot}+{self.prunroot}]{image}"

    def lk(self, capsys, *argv: str) -> tuple[int, str, str]:
        """layerkit in-process (process output of run/exec is relayed to the captured stdout)."""
        capsys.readouterr()
        rc = main(["--store", str(self.store_dir), *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    def build_layer(self, base: str, tag: str, change: Callable[[Path], None]) -> None:
        """One buildah layer: mount a working container of ``base``, change its files, commit."""
        ctr = self.buildah("from", "--pull-never", base)
        try:
            change(Path(self.buildah("mount", ctr)))
            self.buildah("commit", "-q", ctr, tag)
        finally:
            self.buildah("rm", ctr)


# ---- the layers of ``multi`` (run on the mounted root filesystem of a buildah working container) ------

def _w(path: Path, data: str, mode: int = 0o644) -> None:
    path.write_text(data)
    os.chmod(path, mode)


def multi_layer1(m: Path) -> None:
    a = m / "app"
    for d in ("sub/deep", "deldir/inner", "opq/od", "dir2file/z", "new/deep/er"):
        (a / d).mkdir(parents=True)
    _w(a / "a", "hello\n")
    _w(a / "b", "bee\n", 0o600)
    os.chown(a / "b", 1000, 1000)
    for name, data in (("sub/x", "x\n"), ("sub/deep/y", "y\n"), ("del", "del\n"), ("deldir/p", "p\n"),
                       ("deldir/inner/q", "q\n"), ("opq/o1", "o1\n"), ("opq/od/o2", "o2\n"),
                       ("file2dir", "f2d\n"), ("dir2file/z/zz", "zz\n"), ("chmodme", "c\n"), (LONG, "long\n"),
                       ("new/deep/er/f", "f\n"), ("h1", "hard\n"), ("plain", "plain\n")):
        _w(a / name, data)
    _w(a / "exec", "#!/bin/sh\necho hi\n", 0o755)
    _w(a / "suid", "s\n", 0o4755)
    os.link(a / "h1", a / "h2")
    os.symlink("a", a / "la")
    os.symlink("/app/a", a / "abs")
    os.symlink("../../../../etc/passwd", a / "up")
    os.symlink("nowhere", a / "dangling")
    os.mkfifo(a / "fifo")
    os.chmod(a / "sub", 0o750)
    os.chown(a / "sub" / "deep", 7, 8)


def multi_layer2(m: Path) -> None:
    a = m / "app"
    with open(a / "a", "a") as f:
        f.write("world\n")
    os.chmod(a / "chmodme", 0o700)
    os.chown(a / "sub" / "x", 1, 1)
    os.unlink(a / "del")
    shutil.rmtree(a / "deldir")
    shutil.rmtree(a / "opq")
    (a / "opq").mkdir()
    _w(a / "opq" / "new", "n\n")
    os.unlink(a / "file2dir")
    (a / "file2dir").mkdir()
    _w(a / "file2dir" / "child", "c\n")
    shutil.rmtree(a / "dir2file")
    _w(a / "dir2file", "now a file\n")
    os.unlink(a / "la")
    os.symlink("b", a / "la")
    os.link(a / "h1", a / "h3")


def multi_layer3(m: Path) -> None:
    shutil.rmtree(m / "app" / "sub")
    (m / "app" / "newtree" / "deep" / "tree").mkdir(parents=True)
    _w(m / "app" / "newtree" / "deep" / "tree" / "f", "f\n")
    _w(m / "etc" / "extra", "extra\n")
    # what Podman would otherwise create in every container's writable layer (its runtime's files)
    _w(m / "etc" / "hostname", "")
    _w(m / "etc" / "hosts", "127.0.0.1 localhost\n")
    os.symlink("../proc/self/mounts", m / "etc" / "mtab")
    os.unlink(m / "bin" / "vi")
    os.chmod(m / "etc", 0o750)


# ---- a synthesized layout with the awkward cases of layer.md ------------------------------------------

def _tar(members: list[tuple]) -> bytes:
    """("f", name, data[, mode]) ("d", name[, mode]) ("s", name, target) ("h", name, target) ("p", name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti = tarfile.TarInfo(m[1])
            ti.mtime = EPOCH
            data = None
            if m[0] == "f":
                data = m[2]
                ti.size, ti.mode = len(data), (m[3] if len(m) > 3 else 0o644)
            elif m[0] == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, (m[2] if len(m) > 2 else 0o755)
            elif m[0] == "s":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, m[2], 0o777
            elif m[0] == "h":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, m[2], 0o644
            elif m[0] == "p":
                ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


AWKWARD = [
    [("d", "a"), ("f", "a/x", b"old x"), ("f", "a/y", b"y"), ("f", "b", b"b"), ("d", "c"), ("f", "c/1", b"1"),
     ("d", "c/2"), ("f", "c/2/deep", b"deep"), ("d", "o"), ("f", "o/old", b"old"), ("d", "o/sub"),
     ("f", "o/sub/s", b"s"), ("f", "r", b"r as file"), ("d", "h"), ("f", "h/target", b"hard data", 0o640),
     ("d", "etc"), ("f", "etc/real", b"real"), ("s", "lnk", "etc"), ("s", "up", "../../etc/real"),
     ("d", "dir2sym"), ("f", "dir2sym/gone", b"g"), ("p", "fifo"), ("f", "in/plicit/file", b"implicit")],
    [("f", "a/x", b"new x!"), ("f", ".wh.b", b""), ("d", "b", 0o700), ("f", "b/inside", b"i"),
     ("f", "a/.wh.x", b""),                                      # whiteout after the re-add, same layer
     ("f", ".wh.c", b""), ("f", "c", b"c is a file"),             # directory replaced by a file
     ("f", "o/.wh..wh..opq", b""), ("d", "o", 0o750), ("f", "o/new", b"fresh"),  # opaque + new entries
     ("d", "r"), ("f", "r/in", b"in"),                            # file replaced by a directory
     ("h", "h/link", "h/target"), ("h", "hl", "h/target"),        # hardlinks to a lower file
     ("s", "dir2sym", "a"), ("f", f"{LONG}/{LONG}", b"long one"), ("s", "s" * 120, "/" + "t" * 150)],
    [("f", "r", b"r is a file again"), ("s", "lnk", "a"), ("f", "o/.wh.new", b""), ("f", "o/newer", b"nn"),
     ("h", "hl2", "hl")],
]


def write_layout(dest: Path, layers: list[bytes], tag: str, cmd: list[str] | None = None) -> Path:
    """An OCI image layout with one image of uncompressed ``layers``."""
    return builders.write_layout(dest, layers, tag, cmd, env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])


# ---- the world --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    missing = [f"{prog} is not installed: apt-get install {pkg}" for prog, pkg in TOOLS.items()
               if not (shutil.which(prog) or os.path.exists(prog))]
    if missing:
        pytest.fail("; ".join(missing))
    w = World(tmp_path_factory.mktemp("real"))
    archive = busybox_archive(w.root / "busybox.tar")
    w.podman("load", "-q", "-i", str(archive))
    assert main(["--store", str(w.store_dir), "load", str(archive)]) == 0
    w.build_layer("localhost/busybox:latest", "localhost/m1:latest", multi_layer1)
    w.build_layer("localhost/m1:latest", "localhost/m2:latest", multi_layer2)
    w.build_layer("localhost/m2:latest", "localhost/multi:latest", multi_layer3)
    _run(["skopeo", "copy", "-q", w.containers_storage("localhost/multi:latest"), f"oci:{w.root / 'oci'}:multi"])
    assert main(["--store", str(w.store_dir), "load", f"{w.root / 'oci'}:multi"]) == 0
    write_layout(w.root / "awkward", [_tar(m) for m in AWKWARD], "awkward:latest")
    assert main(["--store", str(w.store_dir), "load", str(w.root / "awkward")]) == 0
    yield w
    w.podman("rm", "-a", "-f", check=False)
    w.podman("rmi", "-a", "-f", check=False)
    shutil.rmtree(w.prunroot, ignore_errors=True)


# ---- (a) ls -R equals umoci unpack ---------------------------------------------------------------

def unpack(world: World, layout: str, name: str) -> Path:
    bundle = world.root / f"bundle-{name}"
    if not bundle.exists():
        _run(["umoci", "unpack", "--image", layout, str(bundle)])
    assert (bundle / "config.json").is_file()
    return bundle / "rootfs"


@pytest.mark.parametrize("image", ["multi", "awkward"])
def test_ls_recursive_equals_umoci_unpack(capsys, world: World, image: str) -> None:
    layout = f"{world.root / 'oci'}:multi" if image == "multi" else f"{world.root / 'awkward'}:awkward:latest"
    rootfs = unpack(world, layout, image)
    rc, out, err = world.lk(capsys, "ls", f"{image}:latest", "-R", "--format", "json")
    assert rc == 0, err
    got, want = ls_tree(json.loads(out)), rootfs_tree(rootfs)
    mismatched = {p: (want.get(p), got.get(p)) for p in sorted(set(got) | set(want)) if got.get(p) != want.get(p)}
    assert mismatched == {}, "path: (umoci, layerkit)"
    assert len(got) > (250 if image == "multi" else 20)
    # the cases the image was built to hold are really there
    if image == "multi":
        assert want["/app/suid"][2] == 0o4755 and want["/app/b"][3:5] == (1000, 1000)
        assert "/app/sub" not in want and "/app/opq/o1" not in want and want["/app/file2dir"][0] == "dir"
        assert any(r["type"] == "hardlink" for r in json.loads(out))
    # every regular file reads the same bytes through a layerkit container
    c = create_container(world.store, f"{image}:latest", ["sh"])
    try:
        for path, (kind, *_rest) in want.items():
            if kind == "file":
                assert c.read(path) == (rootfs / path.lstrip("/")).read_bytes(), path
    finally:
        remove_container(world.store, c.id, force=True)


def test_hardlink_to_file_replaced_later_matches_umoci(capsys, world: World) -> None:
    """A hardlink keeps the bytes of the file it was linked to, even when a later layer deletes or
    replaces that path (umoci shares the inode; layerkit reads the linked entry's bytes)."""
    layers = [_tar([("d", "h"), ("f", "h/target", b"hard data"), ("f", "h/t2", b"t2 data")]),
              _tar([("h", "hl", "h/target"), ("h", "hl2", "h/t2")]),
              _tar([("f", "h/.wh.target", b""), ("f", "h/t2", b"replaced")])]
    base = (world.root / "busybox-layer.tar")
    if not base.exists():
        from layerkit.examples import busybox_layer
        busybox_layer(base)
    layout = write_layout(world.root / "hl-layout", [base.read_bytes(), *layers], "hl:latest")
    rootfs = unpack(world, f"{layout}:hl:latest", "hl")
    assert main(["--store", str(world.store_dir), "load", str(layout)]) == 0
    c = create_container(world.store, "hl:latest", ["sh"])
    try:
        for p in ("/hl", "/hl2", "/h/t2"):
            assert c.read(p) == (rootfs / p.lstrip("/")).read_bytes(), p
        assert not (rootfs / "h" / "target").exists() and not c.exists("/h/target")
        rc, out, err = world.lk(capsys, "exec", c.name, "cat", "/hl", "/hl2", "/h/t2")
        assert (rc, out) == (0, "hard datat2 datareplaced"), err
    finally:
        remove_container(world.store, c.id, force=True)


# ---- (b) and (c): the same operations give the same diff as podman diff ---------------------------------

# name -> (shell script, the same through the Python API or None)
OPS: dict[str, tuple[str, Callable[[Container], None] | None]] = {
    "new-file": ("echo new > /app/newfile", lambda c: c.write("/app/newfile", b"new\n")),
    "modified-file": ("echo more >> /app/a", lambda c: c.append("/app/a", b"more\n")),
    "modified-busybox-file": ("echo x >> /etc/passwd", lambda c: c.append("/etc/passwd", b"x\n")),
    "chmod-only": ("chmod 600 /app/exec", lambda c: c.chmod("/app/exec", 0o600)),
    "chown-only": ("chown 5:6 /app/chmodme", lambda c: c.chown("/app/chmodme", 5, 6)),
    # a copy-up that changes nothing: C for the file, not for its directory (Docker's overlay walk)
    "chmod-same-mode": ("chmod 644 /app/a", lambda c: c.chmod("/app/a", 0o644)),
    "touch-hardlinked": ("touch /app/h1", None),
    "hardlink-to-lower-file": ("ln /app/plain /app/plainlink", None),
    "chmod-dir": ("chmod 700 /app/newtree", lambda c: c.chmod("/app/newtree", 0o700)),
    "touch-only": ("touch -d '2020-01-01 00:00:00' /app/plain", None),
    "deleted-file": ("rm /app/b", lambda c: c.remove("/app/b")),
    "deleted-lowest-layer-file": ("rm /bin/ls", lambda c: c.remove("/bin/ls")),
    "deleted-directory": ("rm -rf /app/newtree/deep", lambda c: c.remove("/app/newtree/deep", recursive=True)),
    "deleted-nested-directory": ("rm -rf /app/new", lambda c: c.remove("/app/new", recursive=True)),
    "replaced-directory": (
        "rm -rf /app/file2dir && mkdir /app/file2dir && echo r > /app/file2dir/r",
        lambda c: (c.remove("/app/file2dir", recursive=True), c.mkdir("/app/file2dir"),
                   c.write("/app/file2dir/r", b"r\n"))),
    "emptied-directory-recreated": ("rm -rf /app/new && mkdir /app/new",
                                    lambda c: (c.remove("/app/new", recursive=True), c.mkdir("/app/new"))),
    "directory-replaced-by-file": ("rm -rf /app/file2dir && echo f > /app/file2dir",
                                   lambda c: (c.remove("/app/file2dir", recursive=True),
                                              c.write("/app/file2dir", b"f\n"))),
    "file-replaced-by-directory": ("rm /app/dir2file && mkdir /app/dir2file",
                                   lambda c: (c.remove("/app/dir2file"), c.mkdir("/app/dir2file"))),
    "symlink-retargeted": ("rm /app/la && ln -s exec /app/la",
                           lambda c: (c.remove("/app/la"), c.symlink("exec", "/app/la"))),
    "new-symlink": ("ln -s /app/a /app/newlink", lambda c: c.symlink("/app/a", "/app/newlink")),
    "deleted-symlink": ("rm /app/abs", lambda c: c.remove("/app/abs")),
    "symlink-replaced-by-file": ("rm /app/dangling && echo d > /app/dangling",
                                 lambda c: (c.remove("/app/dangling"), c.write("/app/dangling", b"d\n"))),
    "nested-adds": ("mkdir -p /app/nest/a/b/c && echo n > /app/nest/a/b/c/n && mkdir -p /etc/nested/x",
                    lambda c: (c.mkdir("/app/nest/a/b/c", parents=True), c.write("/app/nest/a/b/c/n", b"n\n"),
                               c.mkdir("/etc/nested/x", parents=True))),
    "renamed-file": ("mv /app/suid /app/moved", lambda c: c.rename("/app/suid", "/app/moved")),
    "renamed-directory": ("mv /app/newtree /app/renamed", lambda c: c.rename("/app/newtree", "/app/renamed")),
    "added-then-removed": ("touch /etc/tmpfile && rm /etc/tmpfile && mkdir /app/opq/t && rmdir /app/opq/t",
                           lambda c: (c.write("/etc/tmpfile", b""), c.remove("/etc/tmpfile"),
                                      c.mkdir("/app/opq/t"), c.remove("/app/opq/t"))),
    "long-name": (f"echo x >> /app/{LONG}", lambda c: c.append(f"/app/{LONG}", b"x\n")),
    "new-fifo": ("mkfifo /app/newfifo", None),
}
# Podman 4.3's overlay diff fails on this one ("stat .../diff/app/file2dir/r: not a directory": a lower layer
# holds /app/file2dir as a file; containers/storage later treats ENOTDIR as "not there"), so its lines are
# written here by the same walk's rules: /app's mtime changed, the opaque /app/file2dir hides a lower
# directory (D), and what it now holds is new (A).
PODMAN_CANNOT = {"replaced-directory": {("C", "/app"), ("D", "/app/file2dir"), ("A", "/app/file2dir/r")}}
ALL_OPS = " && ".join(f"( {script} )" for name, (script, _) in OPS.items()
                      if name not in ("deleted-nested-directory", "emptied-directory-recreated",
                                      "directory-replaced-by-file", *PODMAN_CANNOT))


def podman_diff(world: World, name: str, script: str) -> set[tuple[str, str]]:
    """``podman diff`` of a container of ``multi`` that ran ``script`` (the image holds /etc/hostname,
    /etc/hosts and /etc/mtab, so Podman adds nothing of its own to the writable layer)."""
    if name in PODMAN_CANNOT:
        return PODMAN_CANNOT[name]
    if name not in world.podman_diffs:
        world.podman_run(f"ops-{name}", "localhost/multi:latest", "sh", "-c", script)
        lines = world.podman("diff", f"ops-{name}").stdout.split("\n")
        world.podman_diffs[name] = {tuple(x.split(" ", 1)) for x in lines if x.strip()}
    return world.podman_diffs[name]


def lk_diff(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["kind"], r["path"]) for r in rows}


def test_idle_podman_container_only_shows_runtime_files(world: World) -> None:
    """An idle Podman container changes nothing: the comparisons need no filter."""
    world.podman_run("idle", "localhost/multi:latest", "true")
    assert world.podman("diff", "idle").stdout.split() == []


@pytest.mark.parametrize("name", [*OPS, "all"])
def test_diff_of_run_equals_podman_diff(capsys, world: World, name: str) -> None:
    script = ALL_OPS if name == "all" else OPS[name][0]
    expected = podman_diff(world, name, script)
    assert expected or name == "added-then-removed", "the operation changed nothing in Podman"
    rc, out, err = world.lk(capsys, "run", "--name", f"ops-{name}", "multi", "sh", "-c", script)
    assert rc == 0, (out, err)
    rc, out, err = world.lk(capsys, "diff", f"ops-{name}", "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    got = lk_diff(rows)
    assert sorted(got) == sorted(expected), f"only layerkit: {sorted(got - expected)}; only podman: " \
                                            f"{sorted(expected - got)}"
    assert len(rows) == len(got), "one line per path"
    rc, text, _ = world.lk(capsys, "diff", f"ops-{name}")
    assert sorted(text.splitlines()) == sorted(f"{k} {p}" for k, p in got)
    assert all(isinstance(r["size"], int) for r in rows)
    world.lk(capsys, "rm", f"ops-{name}")


@pytest.mark.parametrize("name", [n for n, (_, api) in OPS.items() if api is not None])
def test_diff_of_python_api_equals_podman_diff(world: World, name: str) -> None:
    script, api = OPS[name]
    expected = podman_diff(world, name, script)
    c = create_container(world.store, "multi:latest", ["sh"])
    try:
        api(c)
        assert lk_diff(c.diff()) == expected
    finally:
        remove_container(world.store, c.id, force=True)


def test_diff_sizes(capsys, world: World) -> None:
    c = create_container(world.store, "multi:latest", ["sh"])
    try:
        c.write("/app/newfile", b"12345")
        c.remove("/app/b")
        sizes = {(r["kind"], r["path"]): r["size"] for r in c.diff()}
        assert sizes[("A", "/app/newfile")] == 5
        assert sizes[("D", "/app/b")] == 4  # the size of what was deleted
    finally:
        remove_container(world.store, c.id, force=True)


# ---- (d) the story ---------------------------------------------------------------------------------

def blobs(world: World) -> set[str]:
    return {p.name for p in (world.store_dir / "blobs" / "sha256").iterdir()}


def test_story(capsys, world: World) -> None:
    lk = lambda *a: world.lk(capsys, *a)  # noqa: E731
    rc, out, err = lk("run", "--name", "demo", "busybox", "sh", "-c", "touch file1 file2")
    assert rc == 0, err
    rc, out, _ = lk("ps", "-a")
    assert rc == 0
    line = next(x for x in out.splitlines() if x.rstrip().endswith("demo"))
    assert "busybox" in line and "Exited (0)" in line
    rc, out, _ = lk("ps", "-a", "--format", "json")
    demo = next(r for r in json.loads(out) if r["name"] == "demo")
    assert len(demo["id"]) == 64 and line.startswith(demo["id"][:12])
    rc, out, _ = lk("diff", "demo")
    assert (rc, out) == (0, "A /file1\nA /file2\n")

    before = blobs(world)
    rc, out, err = lk("commit", "-m", "add files", "demo", "demo:v1")
    assert rc == 0, err
    new_id = out.strip()
    assert new_id.startswith("sha256:") and len(new_id) == 71
    added = blobs(world) - before
    assert len(added) == 3  # the layer, the config and the manifest

    _, out, _ = lk("history", "busybox", "--format", "json")
    base_rows = json.loads(out)
    _, out, _ = lk("history", "demo:v1", "--format", "json")
    rows = json.loads(out)
    rc, busybox_id, _ = lk("inspect", "busybox")
    busybox_id = json.loads(busybox_id)["Id"]
    assert len(rows) == len(base_rows) + 1
    assert rows[0]["comment"] == "add files" and rows[0]["id"] == new_id
    assert rows[0]["created_by"] == "sh -c touch file1 file2" and rows[0]["size"] == 0
    assert rows[1]["id"] == busybox_id and base_rows[0]["id"] == busybox_id
    assert all(r["id"] == "<missing>" for r in rows[2:])  # as docker history --format json prints it
    _, table, _ = lk("history", "demo:v1")
    lines = table.splitlines()
    assert lines[0].split()[0] == "IMAGE"
    assert lines[1].startswith(new_id[7:19]) and "add files" in lines[1]
    assert lines[2].startswith(busybox_id[7:19])
    assert all(x.startswith("<missing>") for x in lines[3:])
    # the container is left as it was
    rc, out, _ = lk("diff", "demo")
    assert out == "A /file1\nA /file2\n"
    rc, out, _ = lk("ls", "demo:v1", "/file1", "--format", "json")
    assert rc == 0 and json.loads(out)[0]["path"] == "/file1"

    assert lk("rm", "demo")[0] == 0
    busybox_blobs = set(blobs(world))
    rc, out, err = lk("rmi", "demo:v1")
    assert rc == 0, err
    assert "Untagged: demo:v1" in out and f"Deleted: {new_id}" in out
    assert blobs(world) == busybox_blobs - added  # only what the commit added went
    assert added.isdisjoint(blobs(world))
    busybox_layer = world.store.image("busybox").layers[0]
    assert busybox_layer.digest.split(":")[1] in blobs(world)
    rc, out, err = lk("run", "--rm", "busybox", "echo", "still", "here")
    assert (rc, out) == (0, "still here\n"), err


# ---- (e) a committed image in Podman; -c changes; rmi refuses -----------------------------------------

@pytest.fixture(scope="module")
def committed(world: World) -> str:
    """multi + a change set holding an opaque directory, a whiteout and new files, committed with -c."""
    script = ("mkdir -p /srv && echo from-layerkit > /srv/msg && rm /app/a && "
              "rm -rf /app/opq && mkdir /app/opq && echo fresh > /app/opq/fresh")
    assert main(["--store", str(world.store_dir), "run", "--name", "e-src", "multi", "sh", "-c", script]) == 0
    assert main(["--store", str(world.store_dir), "commit", "-m", "e change", "-a", "tester",
                 "-c", 'CMD ["echo","hi"]', "-c", "ENV A=b", "e-src", "committed:v1"]) == 0
    return "committed:v1"


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_committed_image_runs_in_podman(capsys, world: World, committed: str, fmt: str) -> None:
    out_path = world.root / f"committed.{fmt}.tar"
    rc, _, err = world.lk(capsys, "save", committed, "-o", str(out_path), "--format", fmt)
    assert rc == 0, err
    tag = f"localhost/committed-{fmt}:v1"
    loaded = world.podman("load", "-q", "-i", str(out_path)).stdout
    image = loaded.strip().split()[-1]
    world.podman("tag", image, tag)
    p = world.podman_run(f"e-{fmt}", tag)
    assert p.stdout == "hi\n"
    p = world.podman_run(f"e2-{fmt}", tag, "sh", "-c",
                         "cat /srv/msg; ls /app/opq; echo A=$A; test -e /app/a || echo no-a")
    assert p.stdout == "from-layerkit\nfresh\nA=b\nno-a\n"
    cfg = json.loads(world.podman("image", "inspect", tag).stdout)[0]
    assert cfg["Config"]["Cmd"] == ["echo", "hi"]
    assert "A=b" in cfg["Config"]["Env"]
    assert cfg["Author"] == "tester"
    diff = {tuple(x.split(" ", 1)) for x in world.podman("diff", f"e2-{fmt}").stdout.splitlines()}
    assert diff <= {("C", "/etc")}


def test_commit_changes_apply_in_layerkit(capsys, world: World, committed: str) -> None:
    rc, out, _ = world.lk(capsys, "inspect", committed)
    data = json.loads(out)
    assert data["Config"]["Cmd"] == ["echo", "hi"] and "A=b" in data["Config"]["Env"]
    assert data["Author"] == "tester" and data["Comment"] == "e change"
    assert data["Parent"] == world.store.image("multi").id
    rc, out, err = world.lk(capsys, "run", "--rm", committed)
    assert (rc, out) == (0, "hi\n"), err
    rc, out, err = world.lk(capsys, "run", "--rm", committed, "sh", "-c", "echo $A; ls /app/opq")
    assert (rc, out) == (0, "b\nfresh\n"), err


def test_rmi_refuses_image_used_by_container(capsys, world: World, committed: str) -> None:
    rc, out, err = world.lk(capsys, "create", "--name", "holder", committed)
    assert rc == 0, err
    image_id = world.store.image(committed).id
    rc, out, err = world.lk(capsys, "rmi", committed)
    assert rc == 1
    assert err.startswith("layerkit: error: ") and "holder" in err
    assert world.store.image(committed).id == image_id
    rc, out, err = world.lk(capsys, "rmi", "-f", committed)
    assert rc == 0, err
    assert "Untagged: committed:v1" in out
    rc, out, _ = world.lk(capsys, "images", "--format", "json")
    assert not any(r["repository"] == "committed" for r in json.loads(out))
    # the container still has its image and still runs
    rc, out, err = world.lk(capsys, "start", "holder")
    assert (rc, out) == (0, "hi\n"), err
    world.lk(capsys, "rm", "holder")


# ---- (f) 127 layers at most ------------------------------------------------------------------------

def test_max_depth(capsys, world: World) -> None:
    from layerkit.examples import busybox_layer

    base = world.root / "busybox-layer.tar"
    if not base.exists():
        busybox_layer(base)
    layers = [base.read_bytes()] + [_tar([("f", f"layers/{i:03d}", f"{i}\n".encode())]) for i in range(1, 126)]
    assert len(layers) == 126
    layout = write_layout(world.root / "deep-layout", layers, "deep:126")
    rc, _, err = world.lk(capsys, "load", str(layout))
    assert rc == 0, err
    # a commit to 127 layers is allowed
    rc, out, err = world.lk(capsys, "run", "--name", "deep1", "deep:126", "sh", "-c", "echo 127 > /layers/127")
    assert rc == 0, err
    rc, out, err = world.lk(capsys, "commit", "deep1", "deep:127")
    assert rc == 0, err
    assert len(world.store.image("deep:127").diff_ids) == 127
    # a container of the 127-layer image runs (128 read-only layers with the init layer)...
    rc, out, err = world.lk(capsys, "run", "--name", "deep2", "deep:127", "sh", "-c",
                            "cat /layers/001 /layers/125 /layers/127; echo x > /layers/128")
    assert (rc, out) == (0, "1\n125\n127\n"), err
    # ... but committing it would make a 128th layer
    rc, out, err = world.lk(capsys, "commit", "deep2", "deep:128")
    assert rc == 1 and out == ""
    assert err.startswith("layerkit: error: max depth exceeded") and "127" in err and "128" in err
    with pytest.raises(MaxDepthExceeded, match="max depth exceeded"):
        from layerkit.engine.commit import commit
        commit(find_container(world.store, "deep2"), "deep:128")
    assert not any(t.familiar == "deep:128" for i in world.store.images() for t in i.tags)
    # an empty change set adds no layer, so it commits (as Docker's empty_layer history entry)
    rc, out, err = world.lk(capsys, "create", "--name", "deep3", "deep:127")
    assert rc == 0, err
    rc, out, err = world.lk(capsys, "commit", "-m", "nothing", "deep3", "deep:empty")
    assert rc == 0, err
    img = world.store.image("deep:empty")
    assert len(img.diff_ids) == 127 and img.history_entries[-1].get("empty_layer") is True
    # a 128-layer image loads and is analysed (Podman, skopeo and dive read one; the OCI spec sets no limit);
    # only what mounts it refuses, with Docker's words
    layout = write_layout(world.root / "deeper-layout", layers + [_tar([("f", f"x{i}", b"x")]) for i in (1, 2)],
                          "deep:128")
    rc, _, err = world.lk(capsys, "load", str(layout))
    assert rc == 0, err
    rc, out, err = world.lk(capsys, "layers", "deep:128", "--format", "json")
    assert rc == 0 and len(json.loads(out)) == 128
    rc, out, err = world.lk(capsys, "cat", "deep:128", "/x2")
    assert (rc, out) == (0, "x")
    rc, out, err = world.lk(capsys, "run", "--rm", "deep:128", "true")
    assert rc == 1 and err.startswith("layerkit: error: max depth exceeded") and "128" in err
    for name in ("deep1", "deep2", "deep3"):
        world.lk(capsys, "rm", name)


def test_the_runtime_files_of_docker_and_podman(capsys, world: World) -> None:
    """Every container gets /etc/hosts with localhost and /etc/hostname with its short ID, as in Docker and
    Podman, whatever the image holds (busybox has none of them), and an /etc/resolv.conf as in Docker; what a
    process writes to them reaches neither ``diff`` nor a committed layer, while its other changes in /etc
    do, as ``podman diff`` says."""
    script = ("grep -c localhost /etc/hosts; cat /etc/hostname; test -f /etc/resolv.conf && echo resolv; "
              "echo '10.0.0.1 db' >> /etc/hosts; echo renamed > /etc/hostname; "
              "echo 'x:x:7:7::/:/bin/sh' >> /etc/passwd")
    theirs = world.podman_run("runtime-files", "localhost/busybox:latest", "sh", "-c", script).stdout.split("\n")
    podman_diff = {tuple(x.split(" ", 1)) for x in world.podman("diff", "runtime-files").stdout.split("\n") if x}
    rc, out, err = world.lk(capsys, "run", "--name", "runtime-files", "busybox", "sh", "-c", script)
    assert rc == 0, err
    ours = out.split("\n")
    c = find_container(world.store, "runtime-files")
    assert int(ours[0]) == 2 and int(theirs[0]) >= 1  # Docker's lines name localhost twice (IPv4 and IPv6)
    assert ours[1] == c.id[:12] and len(theirs[1]) == 12  # the short ID, in Podman as in Docker
    assert ours[2] == "resolv"  # Docker's containers have one (Podman's without a network do not)
    rc, out, _ = world.lk(capsys, "diff", "runtime-files", "--format", "json")
    # Podman makes its mount points in the writable layer of an image without them, which changes /etc's
    # mtime (C /etc); Docker's and layerkit's are in the init layer, and /etc is copied up as the image has it
    assert lk_diff(json.loads(out)) == podman_diff - {("C", "/etc")} == {("C", "/etc/passwd")}
    rc, out, _ = world.lk(capsys, "commit", "runtime-files", "runtime-files:1")
    assert rc == 0
    rc, out, _ = world.lk(capsys, "ls", "runtime-files:1", "/etc", "--format", "json")
    by_path = {r["path"]: r for r in json.loads(out)}
    assert "/etc/hosts" not in by_path and "/etc/hostname" not in by_path and "/etc/passwd" in by_path
    world.lk(capsys, "rm", "runtime-files")
