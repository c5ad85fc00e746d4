"""Small real images built from files on this machine, for the demo, the tour, the fleet notebook and tests,
and a real registry on 127.0.0.1 to push them to.

``busybox_archive`` turns Debian's busybox-static binary into a one-layer image (``/bin/busybox`` plus a
symlink per applet, ``/etc/passwd``, ``/tmp``), written as a classic docker-archive that Docker, Podman
and skopeo load. Timestamps are fixed so the image ID is the same on every machine with the same binary.

``fleet_contexts`` writes the build contexts (Dockerfiles and files) of a small fleet of images that share
bases and copy the same files into different layers; ``start_registry`` runs Debian's ``docker-registry``
on a free 127.0.0.1 port with private storage, stopped by its PID (and at the latest when Python exits).
Nothing here imports the rest of layerkit.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
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


# ---- a fleet of images sharing bases, as build contexts ----------------------------------------------

def _payload(seed: str, size: int) -> bytes:
    """``size`` bytes that look like a compiled file (incompressible), the same for the same seed."""
    return hashlib.shake_256(seed.encode()).digest(size)


# what each image of the fleet copies: (tag, FROM, [(context file, destination)]); the contents are shared
# on purpose: "runtime" and "vendor" are copied under other paths onto other bases, which layer sharing
# cannot see, and etl overwrites its data file in a second layer (dive's waste)
FLEET_FILES = {
    "runtime/libcore.so": 180_000, "runtime/libnet.so": 120_000, "runtime/libssl.so": 150_000,
    "vendor/requests.whl": 90_000, "vendor/numpy.whl": 160_000, "vendor/yaml.whl": 40_000,
    "data-v1.bin": 100_000, "data-v2.bin": 100_000,
}
FLEET_IMAGES = (
    ("runtime:1", "busybox", [("runtime", "/usr/lib/runtime/")]),
    ("shop/web:1", "runtime:1", [("vendor", "/app/vendor/"), ("web-1.py", "/app/main.py")]),
    ("shop/web:2", "runtime:1", [("vendor", "/app/vendor/"), ("web-2.py", "/app/main.py")]),
    ("shop/api:1", "runtime:1", [("vendor", "/srv/lib/"), ("api.py", "/srv/main.py")]),
    ("data/etl:1", "busybox", [("runtime", "/opt/runtime/"), ("data-v1.bin", "/var/data.bin"),
                               ("data-v2.bin", "/var/data.bin"), ("etl.py", "/opt/etl.py")]),
)


def fleet_contexts(dest: str | os.PathLike) -> list[tuple[str, Path]]:
    """Write one build context per image of a small fleet under ``dest``; returns ``(tag, context)`` in
    build order (``runtime:1`` before the images built FROM it). Every image builds on the ``busybox``
    image (:func:`busybox_archive`) with COPY steps only, so no container runs. Contents are fixed, so
    the same layers come out on every run: ``shop/web:1`` and ``:2`` share ``runtime:1`` and their vendor
    layer, ``shop/api:1`` copies the same vendor files to another path, ``data/etl:1`` copies the runtime
    onto busybox directly and overwrites a data file in a later layer."""
    dest = Path(dest)
    files = {name: _payload(name, size) for name, size in FLEET_FILES.items()}
    for name in ("web-1.py", "web-2.py", "api.py", "etl.py"):
        files[name] = f"print({name!r})\n".encode()
    out = []
    for tag, base, copies in FLEET_IMAGES:
        ctx = dest / tag.replace("/", "_").replace(":", "_")
        ctx.mkdir(parents=True, exist_ok=True)
        lines = [f"FROM {base}"]
        for src, to in copies:
            for name, data in files.items():
                if name == src or name.startswith(src + "/"):
                    p = ctx / name
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data)
                    os.utime(p, (EPOCH, EPOCH))
            lines.append(f"COPY {src} {to}")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        out.append((tag, ctx))
    return out


# ---- a real registry on 127.0.0.1 ---------------------------------------------------------------------

_LOG_RE = re.compile(r'"(GET|HEAD|POST|PATCH|PUT|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


class ServiceError(RuntimeError):
    """A service is not installed or did not start (the message names the Debian package or the log)."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc: subprocess.Popen) -> None:
    """Stop a child by its PID: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class Registry:
    """A running docker-registry: its address, its log, and how to stop it (also a context manager)."""

    proc: subprocess.Popen
    port: int
    log: Path
    root: Path

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def mark(self) -> int:
        """The current end of the log (requests after it are those of the next operation)."""
        time.sleep(0.05)  # the access log line is written just after the response
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of every request served since ``since``."""
        time.sleep(0.05)
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in _LOG_RE.finditer(text)]

    def stop(self) -> None:
        """Stop the registry by its PID (again is a no-op)."""
        stop_pid(self.proc)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_registry(root: str | os.PathLike, auth_config: str = "", access_log: bool = True) -> Registry:
    """Start ``docker-registry serve`` on a free 127.0.0.1 port with storage under ``root``; it is stopped
    by :meth:`Registry.stop`, on leaving a ``with`` block, and at the latest when this Python exits (a
    notebook's kernel included).

    ``auth_config`` is YAML appended to the config (an ``auth:`` section); ``access_log=False`` keeps the
    log to errors (a benchmark does not want a line written per request)."""
    exe = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                              if os.path.exists("/usr/bin/docker-registry") else None)
    if not exe:
        raise ServiceError("docker-registry is not installed: apt-get install docker-registry")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    logging = ("  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n" if access_log
               else "  level: error\n  accesslog:\n    disabled: true\n")
    config.write_text(f"""version: 0.1
log:
{logging}storage:
  filesystem:
    rootdirectory: {root / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: layerkit-example-secret
{auth_config}""")
    log = root / "registry.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    reg = Registry(proc, port, log, root)
    atexit.register(reg.stop)  # a kernel shut down (or a script ending) never leaves it running
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never through a proxy
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            direct.open(f"http://{reg.host}/v2/", timeout=1).close()
            return reg
        except urllib.error.HTTPError:  # 401 with auth: it answers
            return reg
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    reg.stop()
    raise ServiceError(f"docker-registry did not start in 15 s: {log.read_text()[-2000:]}")
