"""Small real images built from files on this machine, for the demo, the tour and tests.

``busybox_archive`` turns Debian's busybox-static binary into a one-layer image (``/bin/busybox`` plus a
symlink per applet, ``/etc/passwd``, ``/tmp``), written as a classic docker-archive that Docker, Podman
and skopeo load. Timestamps are fixed so the image ID is the same on every machine with the same binary.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
EPOCH = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"


class MissingTool(RuntimeError):
    """A program from a Debian package is needed and missing."""


def find_busybox() -> str:
    """Path of a statically linked busybox, or :class:`MissingTool` naming the package."""
    for cand in (BUSYBOX, shutil.which("busybox") or ""):
        if cand and os.path.isfile(cand):
            return cand
    raise MissingTool("busybox is not installed: apt-get install busybox-static")


def _dir(tf: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = EPOCH
    tf.addfile(ti)


def _file(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = EPOCH
    tf.addfile(ti, io.BytesIO(data))


def busybox_layer(path: Path, binary: str | None = None) -> None:
    """Write the busybox root filesystem as an uncompressed layer tar."""
    binary = binary or find_busybox()
    applets = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "root", "home", "var", "usr"):
            _dir(tf, d)
        _dir(tf, "tmp", 0o1777)
        ti = tf.gettarinfo(binary, arcname="bin/busybox")
        ti.mtime = EPOCH
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        with open(binary, "rb") as f:
            tf.addfile(ti, f)
        for a in sorted(set(applets) - {"busybox"}):
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            ti.mode = 0o777
            ti.mtime = EPOCH
            tf.addfile(ti)
        _file(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        _file(tf, "etc/group", b"root:x:0:\nnobody:x:65534:\n")


def busybox_config(diff_id: str) -> bytes:
    """The image config for the busybox layer: ``sh`` as command, one layer entry and one empty CMD entry."""
    cfg = {
        "architecture": _arch(),
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": CREATED, "created_by": "/bin/sh -c #(nop) ADD file:busybox-static in / "},
            {"created": CREATED, "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "empty_layer": True},
        ],
    }
    return json.dumps(cfg, separators=(",", ":")).encode()


def _arch() -> str:
    import platform

    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def busybox_archive(out: str | os.PathLike, tag: str = "busybox:latest", binary: str | None = None) -> Path:
    """Write a docker-archive holding the busybox image tagged ``tag``; returns its path."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        busybox_layer(layer, binary)
        h = hashlib.sha256()
        with open(layer, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        diff_id = "sha256:" + h.hexdigest()
        config = busybox_config(diff_id)
        config_hex = hashlib.sha256(config).hexdigest()
        manifest = [{"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": [f"{h.hexdigest()}/layer.tar"]}]
        with tarfile.open(out, "w") as tf:
            _file(tf, f"{config_hex}.json", config)
            _dir(tf, h.hexdigest())
            tf.add(layer, arcname=f"{h.hexdigest()}/layer.tar")
            _file(tf, "manifest.json", json.dumps(manifest).encode())
    return out
