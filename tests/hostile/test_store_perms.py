"""Store permissions as Docker's (issue 11, item 4): the store's private directories are 0700, so another
user of the machine cannot reach an image's setuid binaries and device nodes in the extracted layers, nor
what containers wrote; a store made by an older layerkit (0755) is narrowed the next time it is opened for
writing; extracted layers go when the last image using them goes.

"Another user" is ``nobody``, through ``runuser`` (util-linux; ``setpriv --reuid`` keeps root's
capabilities for its own exec, so it would walk through any directory), trying what the issue's attacker
did: run an image's setuid-root binary straight from the extracted layer. A control case first opens the
directories as an older layerkit left them and shows that the attempt then gives euid 0 (with a setuid copy
of coreutils' ``id``: busybox drops its setuid privileges by itself), so the test can tell a hole from a
closed door.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import EPOCH, D, F, H, S, layer_tar, write_layout
from realtools import BUSYBOX, require

from layerkit.cli import main
from layerkit.engine.container import find_container
from layerkit.engine.image import chain_ids
from layerkit.engine.store import PRIVATE_DIRS, Store

NOBODY = pwd.getpwnam("nobody")


def as_nobody(*cmd: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` as user nobody (its groups only, no capability left)."""
    return subprocess.run(["runuser", "-u", NOBODY.pw_name, "--", *cmd], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's own temporary directories are 0700, which would keep
    nobody out whatever the store does)."""
    d = Path(tempfile.mkdtemp(prefix="lk-perms-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _busybox_members(setuid: bool = False) -> list[tarfile.TarInfo]:
    require("busybox")
    data = Path(BUSYBOX).read_bytes()
    members = [D("bin"), F("bin/busybox", data, mode=0o4755 if setuid else 0o755)]
    members += [S(f"bin/{a}", "busybox") for a in ("sh", "id", "true", "cat", "ls")]
    members += [D("etc"), F("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"), D("tmp", mode=0o1777)]
    return members


def _char_device(name: str, major: int, minor: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.CHRTYPE
    ti.devmajor, ti.devminor, ti.mode, ti.mtime = major, minor, 0o666, EPOCH
    return ti


def _load(store: Path, work: Path, layers: list[bytes], tag: str) -> None:
    layout = write_layout(work / tag.replace(":", "-"), layers, tag, cmd=["/bin/sh"])
    assert main(["--store", str(store), "load", f"{layout}:{tag}"]) == 0


def _run(store: Path, *argv: str) -> None:
    assert main(["--store", str(store), "run", *argv]) == 0


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _private_paths(store: Path) -> list[Path]:
    meta = store / "layerkit"
    return [meta, *(meta / d for d in PRIVATE_DIRS)]


# ---- 0700, whatever the umask -------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o000, 0o022, 0o177])
def test_private_dirs_are_0700_whatever_the_umask(tmp_path, umask):
    """A umask of 0 must not widen them, one of 0177 (no x bit) must not make them unusable."""
    from layerkit.examples import busybox_archive

    archive = busybox_archive(tmp_path / "bb.tar")
    store = tmp_path / "store"
    old = os.umask(umask)
    try:
        assert main(["--store", str(store), "load", str(archive)]) == 0
        assert main(["--store", str(store), "create", "--name", "c", "busybox"]) == 0
        assert main(["--store", str(store), "diff", "c"]) == 0
    finally:
        os.umask(old)
    for p in _private_paths(store):
        assert _mode(p) == 0o700, f"{p}: {_mode(p):o}"
    c = find_container(Store(store), "c")
    assert _mode(c.dir) == 0o700
    # the OCI layout stays as other tools expect it: directories as the umask made them, files 0600
    assert (store / "blobs" / "sha256").is_dir() and _mode(store / "index.json") == 0o600 & ~umask


# ---- another user and the image's setuid binary ------------------------------------------------------------

def test_other_users_cannot_reach_extracted_layers_or_upper_dirs(open_dir, tmp_path, capsys):
    store = open_dir / "store"
    host_id = shutil.which("id")
    assert host_id, "coreutils' id is missing: apt-get install -y coreutils"
    layer = layer_tar([*_busybox_members(setuid=True), F("bin/id-suid", Path(host_id).read_bytes(), mode=0o4755),
                       D("dev"), _char_device("dev/lkmem", 1, 1)])
    _load(store, tmp_path, [layer], "suid:1")
    _run(store, "--rm", "suid:1", "/bin/busybox", "true")  # extracts the layer for the overlay mount
    extracted = store / "layerkit" / "rootfs" / _sha(layer)[7:]
    busybox, id_suid = extracted / "bin" / "busybox", extracted / "bin" / "id-suid"
    for binary in (busybox, id_suid):
        st = os.lstat(binary)
        assert st.st_uid == 0 and st.st_mode & stat.S_ISUID, f"{binary} should be setuid root"
    device = extracted / "dev" / "lkmem"  # /dev/mem's numbers, 0666 in the image
    # what a container wrote: its upper directory
    assert main(["--store", str(store), "create", "--name", "c", "suid:1"]) == 0
    c = find_container(Store(store), "c")
    c.write("/secret", b"a token the container wrote\n", 0o644)
    secret = c.upper / "secret"
    assert secret.read_bytes().startswith(b"a token")

    def nobody_is_kept_out() -> None:
        for p in _private_paths(store):
            assert _mode(p) == 0o700, f"{p}: {_mode(p):o}"
        for d in [*_private_paths(store), extracted, extracted / "bin", c.dir, c.upper]:
            r = as_nobody("ls", str(d))
            assert r.returncode != 0 and "Permission denied" in r.stderr, (d, r.stdout, r.stderr)
        for cmd in ([str(busybox), "id"], [str(id_suid)]):
            r = as_nobody(*cmd)
            assert r.returncode != 0 and "Permission denied" in r.stderr, (r.stdout, r.stderr)
            assert "uid=0" not in r.stdout
        r = as_nobody("cat", str(secret))
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        if device.exists():  # device nodes of a layer are the extraction's business; where kept, unreachable
            r = as_nobody("head", "-c1", str(device))
            assert r.returncode != 0 and "Permission denied" in r.stderr, r

    nobody_is_kept_out()

    # control: the directories as an older layerkit left them (0755): the attack of the issue works
    for p in [*_private_paths(store), c.dir]:
        os.chmod(p, 0o755)
    r = as_nobody(str(id_suid))
    assert r.returncode == 0 and "euid=0(root)" in r.stdout, (r.stdout, r.stderr)
    assert as_nobody(str(busybox), "true").returncode == 0
    assert as_nobody("cat", str(secret)).returncode == 0

    # opening the store for writing narrows them again; a reading verb does not need to
    assert main(["--store", str(store), "images"]) == 0
    assert main(["--store", str(store), "tag", "suid:1", "suid:2"]) == 0
    capsys.readouterr()
    nobody_is_kept_out()

    # and the store still works for root and for the tools that read the OCI layout in place
    _run(store, "--rm", "suid:2", "/bin/busybox", "true")
    require("skopeo", "umoci")
    out = subprocess.run(["skopeo", "inspect", f"oci:{store}:docker.io/library/suid:1"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["Layers"] == [la.digest for la in Store(store).image("suid:1").layers]
    out = subprocess.run(["umoci", "ls", "--layout", str(store)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert {"docker.io/library/suid:1", "docker.io/library/suid:2"} <= set(out), out


# ---- extracted layers go with the last image using them ------------------------------------------------

def test_rmi_removes_the_extracted_layers_no_image_uses(tmp_path, capsys):
    store = tmp_path / "store"
    base = layer_tar(_busybox_members())
    # a hardlink to a file of the layer below: this layer's extraction is keyed by its chain ID
    a1 = layer_tar([F("a.txt", b"a\n"), H("bin/busybox-a", "bin/busybox")])
    b1 = layer_tar([F("b.txt", b"b\n")])
    _load(store, tmp_path, [base, a1], "ta:1")
    _load(store, tmp_path, [base, b1], "tb:1")
    rootfs = store / "layerkit" / "rootfs"
    keys = {"base": _sha(base)[7:], "a1": chain_ids([_sha(base), _sha(a1)])[1][7:], "b1": _sha(b1)[7:]}

    _run(store, "--name", "ca", "ta:1", "/bin/busybox", "true")
    _run(store, "--rm", "tb:1", "/bin/busybox", "true")
    assert {k: (rootfs / v).is_dir() for k, v in keys.items()} == {"base": True, "a1": True, "b1": True}
    assert not (rootfs / _sha(a1)[7:]).exists()  # keyed by chain ID, not diff_id
    links = {p.name: os.readlink(p) for p in (rootfs / "l").iterdir()}
    assert {v[:16] for v in keys.values()} <= set(links)
    (rootfs / ".gc-leftover").mkdir()  # a removal cut short by a kill
    (rootfs / ".gc-leftover" / "f").write_text("x")
    (rootfs / ".x-under-way").mkdir()  # an extraction of another process, still running

    # a container holds ta:1: its layers stay
    assert main(["--store", str(store), "rmi", "ta:1"]) == 1
    assert (rootfs / keys["a1"]).is_dir()
    assert main(["--store", str(store), "rm", "ca"]) == 0
    assert main(["--store", str(store), "rmi", "ta:1"]) == 0
    assert not (rootfs / keys["a1"]).exists() and keys["a1"][:16] not in os.listdir(rootfs / "l")
    assert (rootfs / keys["base"]).is_dir() and (rootfs / keys["b1"]).is_dir(), "tb:1 still uses them"
    assert {keys["base"][:16], keys["b1"][:16], "init"} <= set(os.listdir(rootfs / "l"))
    assert not (rootfs / ".gc-leftover").exists() and (rootfs / ".x-under-way").is_dir()
    _run(store, "--rm", "tb:1", "/bin/busybox", "true")  # tb:1 runs from its kept extractions

    assert main(["--store", str(store), "rmi", "tb:1"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(rootfs)) == [".x-under-way", "init", "l"]
    assert os.listdir(rootfs / "l") == ["init"]
    assert Store(store).images() == []
