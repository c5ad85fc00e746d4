"""Helpers for tests that drive the real container tools (podman, buildah, skopeo, umoci, GNU tar).

Every engine gets private storage under a test's temporary directory (``--root``/``--runroot`` with the
vfs driver), so the tests neither see nor touch the machine's images, and two test sessions never share
state. Podman runs containers with exactly the flags DESIGN.md section 4 says this machine needs.

A tool that is missing makes the test fail (never skip) with the Debian package to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

# program -> the Debian package that provides it
PACKAGES = {
    "podman": "podman",
    "buildah": "buildah",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "runc": "runc",
    "busybox": "busybox-static",
    "tar": "tar",
}
RUNC = "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
# what `podman run` needs on these machines (crun and raised rlimits are refused)
RUN_FLAGS = ["--runtime", RUNC, "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=1024:1024"]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require(*programs: str) -> None:
    """Fail the test (not skip) naming the Debian packages when any of ``programs`` is missing."""
    missing = []
    for prog in programs:
        if prog == "runc":
            found = os.access(RUNC, os.X_OK) or shutil.which("runc")
        elif prog == "busybox":
            found = os.path.isfile(BUSYBOX)
        else:
            found = shutil.which(prog)
        if not found:
            missing.append(prog)
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(p, p) for p in missing}))
        pytest.fail(f"{', '.join(missing)} not installed: apt-get install -y {pkgs}", pytrace=False)


def run(cmd: list[str], *, timeout: float = 180, cwd: str | os.PathLike | None = None) -> str:
    """Run ``cmd``; return its stdout, or fail with the command, exit status and stderr."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(str(c) for c in cmd)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}")
    return proc.stdout


def run_bytes(cmd: list[str], *, timeout: float = 180) -> bytes:
    """Like :func:`run` but returns stdout as bytes (for raw configs whose digest matters)."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(str(c) for c in cmd)} exited {proc.returncode}\n"
                             f"stderr: {proc.stderr[-4000:].decode(errors='replace')}")
    return proc.stdout


@dataclass
class Engine:
    """A podman/buildah storage of its own (vfs driver), and the commands that use it.

    Podman refuses a ``--runroot`` longer than 50 characters (its sockets must fit ``sun_path``), and
    pytest's temporary paths are longer: the run root then lives under the test's directory and podman
    is given a short symlink to it in the system temporary directory, removed by :meth:`close`.
    """

    root: Path
    runroot: Path
    link_dir: Path | None = None

    @classmethod
    def create(cls, base: Path) -> Engine:
        """A fresh, empty storage under ``base``; call :meth:`close` when done."""
        require("podman", "buildah", "skopeo", "runc")
        base = Path(base)
        root, runroot = base / "root", base / "runroot"
        root.mkdir(parents=True, exist_ok=True)
        (runroot / "tmp").mkdir(parents=True, exist_ok=True)
        link_dir = None
        if len(str(runroot)) > 40:
            link_dir = Path(tempfile.mkdtemp(prefix="lkrr-"))
            (link_dir / "r").symlink_to(runroot)
            runroot = link_dir / "r"
        return cls(root, runroot, link_dir)

    def close(self) -> None:
        """Remove the short run-root symlink (the storage itself stays with the test's files)."""
        if self.link_dir is not None:
            (self.link_dir / "r").unlink(missing_ok=True)
            self.link_dir.rmdir()
            self.link_dir = None

    def podman(self, *args: str | os.PathLike, timeout: float = 180) -> str:
        """``podman ARGS`` against this storage; returns stdout."""
        return run(["podman", "--root", self.root, "--runroot", self.runroot, "--storage-driver", "vfs",
                    "--cgroup-manager", "cgroupfs", "--tmpdir", self.runroot / "tmp",
                    "--events-backend", "none", *args], timeout=timeout)

    def buildah(self, *args: str | os.PathLike, timeout: float = 180) -> str:
        """``buildah ARGS`` against this storage; returns stdout."""
        return run(["buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver", "vfs",
                    *args], timeout=timeout)

    def storage_ref(self, name: str) -> str:
        """The skopeo transport name of an image in this storage."""
        return f"containers-storage:[vfs@{self.root}+{self.runroot}]{name}"

    def run_container(self, image: str, *cmd: str) -> str:
        """``podman run --rm IMAGE CMD`` with this machine's flags; returns what it printed."""
        return self.podman("run", "--rm", *RUN_FLAGS, image, *cmd)

    def inspect(self, name: str) -> dict:
        """``podman image inspect NAME`` as a dict."""
        return json.loads(self.podman("image", "inspect", name))[0]

    def history(self, name: str) -> list[dict]:
        """``podman history --format json NAME`` (newest first)."""
        return json.loads(self.podman("history", "--no-trunc", "--format", "json", name))

    def load(self, path: str | os.PathLike) -> str:
        """``podman load -i PATH``; returns its output."""
        return self.podman("load", "-i", path)


def skopeo_raw(ref: str) -> bytes:
    """``skopeo inspect --raw REF``: the manifest bytes exactly as the source holds them."""
    require("skopeo")
    return run_bytes(["skopeo", "inspect", "--raw", ref])


def skopeo_manifest(ref: str) -> dict:
    """The manifest of ``ref`` as skopeo reads it."""
    return json.loads(skopeo_raw(ref))


def skopeo_config(ref: str) -> tuple[str, dict]:
    """(image ID, config) of ``ref``: the ID is the sha256 of the raw config bytes skopeo returns."""
    require("skopeo")
    raw = run_bytes(["skopeo", "inspect", "--config", "--raw", ref])
    return "sha256:" + hashlib.sha256(raw).hexdigest(), json.loads(raw)


def skopeo_copy(src: str, dst: str, *flags: str) -> None:
    """``skopeo copy [FLAGS] SRC DST``."""
    require("skopeo")
    run(["skopeo", "copy", "--quiet", *flags, src, dst])


def busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: /bin/busybox, a symlink per applet (``sh``, ``echo``, ``cat`` ...), /tmp."""
    require("busybox")
    bindir = dest / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    for applet in run([BUSYBOX, "--list"]).split():
        if applet != "busybox":
            (bindir / applet).symlink_to("busybox")
    (dest / "tmp").mkdir(mode=0o1777)
    return dest


def gnu_tar_docker_size(layer_tar: Path) -> int:
    """Docker's size of an uncompressed layer tar, read from GNU tar's verbose listing.

    Regular files count their size, a symlink the length of its target, a hardlink nothing (its inode is
    already counted); directories and whiteout markers count nothing. This is an independent reading of
    the tar (GNU tar, not Python's tarfile) to check layerkit's ``size`` against.
    """
    require("tar")
    out = run(["tar", "--numeric-owner", "--quoting-style=literal", "-tvf", layer_tar])
    total = 0
    for line in out.splitlines():
        perms, _owner, size, _date, _time, rest = line.split(None, 5)
        kind = perms[0]
        if kind == "-":
            total += int(size)
        elif kind == "l":
            total += len(rest.split(" -> ", 1)[1].encode())
    return total


def docker_archive_layers(archive: Path, dest: Path) -> dict[str, Path]:
    """Extract a docker-archive with GNU tar; map each image's diff_ids to its uncompressed layer tar."""
    require("tar")
    dest.mkdir(parents=True, exist_ok=True)
    run(["tar", "-xf", archive, "-C", dest])
    out: dict[str, Path] = {}
    for entry in json.loads((dest / "manifest.json").read_text()):
        config = json.loads((dest / entry["Config"]).read_text())
        for diff_id, name in zip(config["rootfs"]["diff_ids"], entry["Layers"], strict=True):
            out[diff_id] = (dest / name).resolve()
    return out


def archive_tags(path: Path) -> dict[str, list[str]]:
    """Image ID -> the names the tool wrote into a docker-archive (RepoTags) or OCI archive/layout
    (ref.name annotations; OCI sources name manifests, so the config is looked up)."""
    def docker(members) -> dict[str, list[str]]:
        out = {}
        for entry in json.loads(members("manifest.json")):
            out["sha256:" + entry["Config"].removesuffix(".json")] = list(entry.get("RepoTags") or [])
        return out

    def oci(members) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for desc in json.loads(members("index.json"))["manifests"]:
            manifest = json.loads(members("blobs/sha256/" + desc["digest"].split(":", 1)[1]))
            name = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            out.setdefault(manifest["config"]["digest"], [])
            if name:
                out[manifest["config"]["digest"]].append(name)
        return out

    if path.is_dir():
        return oci(lambda n: (path / n).read_bytes())
    with tarfile.open(path) as tf:
        def members(n: str) -> bytes:
            f = tf.extractfile(n)
            assert f is not None, f"{path}: {n} is not a file"
            return f.read()
        names = tf.getnames()
        return docker(members) if "manifest.json" in names else oci(members)


def familiar(name: str) -> str:
    """The short form Docker prints for a full name the tools wrote (``docker.io/library/x:1`` -> ``x:1``)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def parse_rfc3339(text: str) -> datetime:
    """A config time (nanoseconds allowed) as an aware UTC datetime, cut to microseconds."""
    s = text.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        s = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    return datetime.fromisoformat(s).astimezone(UTC)


def docker_human_size(n: int) -> str:
    """go-units ``HumanSizeWithPrecision(n, 3)`` as the docker CLI prints SIZE (``1.98MB``, ``0B``)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    size, i = float(n), 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def docker_ellipsis(text: str, width: int) -> str:
    """The docker CLI's ``stringutils.Ellipsis``: at most ``width`` runes, the last one ``…``."""
    return text if len(text) <= width else text[: width - 1] + "…"


def tree_listing(root: Path) -> dict[str, tuple]:
    """Path -> (type, size, sha256 or link target, mode) for every entry below ``root`` (not followed)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = "/" + str(p.relative_to(root))
            st = p.lstat()
            mode = st.st_mode & 0o7777
            if p.is_symlink():
                out[rel] = ("symlink", 0, os.readlink(p), mode)
            elif p.is_dir():
                out[rel] = ("dir", 0, "", mode)
            else:
                out[rel] = ("file", st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(), mode)
    return out


KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
         stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}


def rootfs_tree(rootfs: Path) -> dict[str, tuple]:
    """path -> (type, size as lstat gives it for a file or symlink (a symlink's is its target's length), mode,
    uid, gid, symlink target) of an unpacked rootfs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            kind = KINDS[stat.S_IFMT(st.st_mode)]
            out["/" + os.path.relpath(p, rootfs)] = (
                kind, st.st_size if kind in ("file", "symlink") else None, stat.S_IMODE(st.st_mode), st.st_uid,
                st.st_gid,
                os.readlink(p) if kind == "symlink" else None)
    return out


def ls_tree(rows: list[dict]) -> dict[str, tuple]:
    """The same from ``ls -R --format json``. A hardlink is the regular file it links to (followed through
    links to links): on disk both names are one inode, with that file's mode and owner; its ``size`` in
    the listing must already be that file's, as lstat says."""
    by_path = {r["path"]: r for r in rows}
    out = {}
    for r in rows:
        t = r
        while t["type"] == "hardlink":
            t = by_path[t["link"]]
        kind = t["type"]
        out[r["path"]] = (kind, r["size"] if kind in ("file", "symlink") else None, t["mode"], t["uid"], t["gid"],
                          t["link"] if kind == "symlink" else None)
    return out
