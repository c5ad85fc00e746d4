"""The Docker Engine API side of issue 6, against Podman's Docker-compatible service.

The module starts ``podman system service`` on a unix socket with private vfs storage under pytest's
temporary directory (the flags DESIGN.md section 4 gives, plus ``--runtime /usr/sbin/runc``), started in its
own session and stopped by its PID. The docker SDK then talks to it through :mod:`layerkit.formats.engine_api`:
images go both ways with the same IDs as ``podman inspect`` reports, a container's changes come back as
layerkit's diff rows matching ``podman diff``, and a commit through the engine loads into layerkit with
the change. Needs the Debian packages ``podman`` and ``runc`` and the ``docker`` Python package.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import builders
import pytest
from realtools import RUNC, Engine, require

from layerkit.engine.analysis import files, layer_files
from layerkit.engine.store import Store
from layerkit.errors import ContainerNotFound, ImageNotFound
from layerkit.examples import busybox_archive
from layerkit.formats import engine_api
from layerkit.formats.engine_api import (
    EngineUnavailable,
    connect,
    engine_commit,
    engine_containers,
    engine_diff,
    load_from_engine,
    save_to_engine,
)
from layerkit.formats.load import load_path

BUSYBOX = "lk.test/busybox:1"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
EXTRA = b"extra:x:1:1::/:/bin/sh\n"
# what the test container does: add, modify, delete (a file and a symlink), a new directory tree, a symlink
SCRIPT = ("dd if=/dev/zero of=/new.bin bs=1234 count=1 2>/dev/null && echo 'extra:x:1:1::/:/bin/sh' >> /etc/passwd"
          " && rm /etc/group /bin/ls && mkdir -p /data/sub && printf hello > /data/sub/f"
          " && for n in 1 22 333 4444; do printf $n > /data/n$n; done && ln -s /new.bin /link")


def _ping(sock: Path) -> bool:
    """True when the socket answers ``GET /_ping`` with ``OK``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.") and data.rstrip().endswith(b"OK")
    except OSError:
        return False


class PodmanService:
    """``podman system service`` on a private storage, and the podman CLI on the same storage."""

    def __init__(self, base: Path) -> None:
        require("podman", "runc")
        self.engine = Engine.create(base)
        self.sockdir = Path(tempfile.mkdtemp(prefix="lksock-"))  # short: unix socket paths are limited
        self.sock = self.sockdir / "api.sock"
        self.endpoint = f"unix://{self.sock}"
        self.log = base / "service.log"
        e = self.engine
        cmd = ["podman", "--root", e.root, "--runroot", e.runroot, "--storage-driver", "vfs",
               "--cgroup-manager", "cgroupfs", "--tmpdir", e.runroot / "tmp", "--events-backend", "none",
               "--runtime", RUNC, "system", "service", "--time=0", self.endpoint]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen([str(c) for c in cmd], stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "TMPDIR": str(e.runroot / "tmp")})
        deadline = time.time() + 30
        while not _ping(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"podman system service did not answer /_ping: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def podman(self, *args) -> str:
        """The podman CLI on the service's storage."""
        return self.engine.podman(*args)

    def stop(self) -> None:
        """Remove the containers (their shm mounts), then stop the service by its PID."""
        if self.proc.poll() is None:
            try:
                client = connect(self.endpoint)
                for c in client.containers.list(all=True):
                    c.remove(force=True)
                client.close()
            except Exception:  # noqa: BLE001 - best effort before stopping
                pass
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        self.engine.close()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    """The running service, with the busybox image loaded by ``podman load``."""
    base = tmp_path_factory.mktemp("engine")
    s = PodmanService(base)
    try:
        s.podman("load", "-i", busybox_archive(base / "busybox.tar", tag=BUSYBOX))
        yield s
    finally:
        s.stop()


def _inspect(svc: PodmanService, name: str) -> dict:
    return json.loads(svc.podman("image", "inspect", name))[0]


def _id(podman_id: str) -> str:
    return podman_id if podman_id.startswith("sha256:") else "sha256:" + podman_id


# ---- endpoints ------------------------------------------------------------------------------------

def test_unreachable_endpoint_is_one_clear_line(tmp_path, monkeypatch):
    missing = tmp_path / "none.sock"
    with pytest.raises(EngineUnavailable) as exc:
        connect(f"unix://{missing}")
    assert f"unix://{missing}" in str(exc.value) and "no such socket" in str(exc.value)
    # a socket file nobody listens on
    dead = Path(tempfile.mkdtemp(prefix="lkdead-")) / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    try:
        with pytest.raises(EngineUnavailable, match="connection refused"):
            connect(f"unix://{dead}")
    finally:
        shutil.rmtree(dead.parent)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EngineUnavailable) as exc:
        connect(f"tcp://127.0.0.1:{port}")
    assert f"tcp://127.0.0.1:{port}" in str(exc.value) and "\n" not in str(exc.value)
    # DOCKER_HOST is the default endpoint, and every entry point reports it the same way
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    assert engine_api.resolve_endpoint() == f"unix://{missing}"
    with pytest.raises(EngineUnavailable, match=str(missing)):
        load_from_engine(Store(tmp_path / "s"), "busybox")
    with pytest.raises(EngineUnavailable, match=str(missing)):
        engine_containers()


def test_docker_host_is_used(svc, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", svc.endpoint)
    client = connect()
    try:
        assert client.ping()
    finally:
        client.close()


# ---- images ---------------------------------------------------------------------------------------

def test_load_from_engine_matches_podman_inspect(svc, tmp_path):
    store = Store(tmp_path / "store")
    seen = []
    loaded = load_from_engine(store, BUSYBOX, endpoint=svc.endpoint, progress=seen.append)
    assert len(loaded) == 1
    info = _inspect(svc, BUSYBOX)
    img = loaded[0].image
    assert img.id == _id(info["Id"])
    assert img.diff_ids == info["RootFS"]["Layers"]
    assert loaded[0].tags == [BUSYBOX]
    received = [e.done for e in seen if e.what == "archive"]
    assert received == sorted(received) and received[-1] > 2_000_000  # the archive's bytes, as they arrived
    assert not any(store.blobs.tmp_dir.iterdir())  # the streamed archive is gone
    # by image ID: untagged, as `docker save ID`
    by_id = load_from_engine(Store(tmp_path / "store2"), info["Id"][:12], endpoint=svc.endpoint)
    assert by_id[0].id == img.id and by_id[0].tags == []
    with pytest.raises(ImageNotFound, match="no such image: lk.test/absent:1"):
        load_from_engine(store, "lk.test/absent:1", endpoint=svc.endpoint)


def _layer(files_: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files_.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_save_to_engine_same_id(svc, tmp_path):
    store = Store(tmp_path / "store")
    ids = []
    for n in (1, 2):
        layout = builders.write_layout(tmp_path / f"layout{n}", [_layer({"hello.txt": b"hello %d\n" % n})],
                                       f"lk.test/fromlk{n}:1")
        ids.append(load_path(store, str(layout))[0].id)
    store.tag("lk.test/fromlk2:1", "lk.test/fromlk2:2")
    # several images, one of them under two names: podman answers "Loaded image: a,b,c" on one line
    got = save_to_engine(store, ["lk.test/fromlk1:1", "lk.test/fromlk2:1", "lk.test/fromlk2:2"],
                         endpoint=svc.endpoint)
    assert got == ids
    for name, image_id in [("lk.test/fromlk1:1", ids[0]), ("lk.test/fromlk2:1", ids[1]),
                           ("lk.test/fromlk2:2", ids[1])]:
        info = _inspect(svc, name)
        assert _id(info["Id"]) == image_id
        assert info["RootFS"]["Layers"] == store.image(image_id).diff_ids
    assert not any(store.blobs.tmp_dir.iterdir())


# ---- containers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def changed(svc):
    """A container of busybox that added, modified and deleted files, run through the SDK."""
    import docker

    client = connect(svc.endpoint)
    ulimits = [docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
               docker.types.Ulimit(name="nproc", soft=1024, hard=1024)]
    c = client.containers.create(BUSYBOX, ["sh", "-c", SCRIPT], name="lk-changed", network_mode="none",
                                 ulimits=ulimits)
    c.start()
    status = c.wait(timeout=60)
    assert status["StatusCode"] == 0, c.logs()
    client.close()
    return c.id


# /data is an added tree (sizes from one archive of it), the others are asked one by one
EXPECTED_SIZES = {"/new.bin": 1234, "/etc/passwd": len(PASSWD) + len(EXTRA), "/data/sub/f": 5, "/data/n1": 1,
                  "/data/n22": 2, "/data/n333": 3, "/data/n4444": 4}


def test_engine_containers_lists_it(svc, changed):
    rows = engine_containers(svc.endpoint)
    row = next(r for r in rows if r["id"] == changed)
    assert row["name"] == "lk-changed" and row["state"] == "exited"
    assert row["image"].endswith(BUSYBOX) and row["created"].endswith("Z")
    assert set(row) >= {"id", "name", "image", "status", "created"}


def test_engine_diff_matches_podman_diff(svc, changed):
    rows = engine_diff("lk-changed", svc.endpoint)
    podman = json.loads(svc.podman("diff", "--format", "json", changed))
    want = {("C", p) for p in podman.get("changed") or []} | {("A", p) for p in podman.get("added") or []} \
        | {("D", p) for p in podman.get("deleted") or []}
    assert {(r["kind"], r["path"]) for r in rows} == want
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    by_path = {r["path"]: r for r in rows}
    assert {"/new.bin", "/data", "/data/sub", "/data/sub/f", "/link"} <= {p for k, p in want if k == "A"}
    assert {("D", "/etc/group"), ("D", "/bin/ls"), ("C", "/etc/passwd")} <= want
    for path, size in EXPECTED_SIZES.items():
        assert by_path[path]["size"] == size, path
    for r in rows:
        if r["kind"] == "D" or r["path"] in ("/link", "/data", "/data/sub", "/etc", "/bin"):
            assert r["size"] == 0, r
    assert [root for root, _ in engine_api._added_trees(rows, engine_api.TREE_MIN_ROWS)] == ["/data"]
    # the fallback for engines without HEAD on the archive endpoint: only the first tar header is read
    client = connect(svc.endpoint)
    try:
        url = client.api._url("/containers/{0}/archive", changed)
        assert engine_api._size_from_archive(client.api, url, "/new.bin") == 1234
        assert engine_api._size_from_archive(client.api, url, "/data") == 0
    finally:
        client.close()
    with pytest.raises(ContainerNotFound, match="no such container: lk-absent"):
        engine_diff("lk-absent", svc.endpoint)


def test_engine_commit_loads_with_the_change(svc, changed, tmp_path):
    new_id = engine_commit("lk-changed", "lk.test/committed:1", message="through the engine", author="lk",
                           endpoint=svc.endpoint)
    info = _inspect(svc, "lk.test/committed:1")
    assert _id(info["Id"]) == new_id
    store = Store(tmp_path / "store")
    img = load_from_engine(store, "lk.test/committed:1", endpoint=svc.endpoint)[0].image
    assert img.id == new_id and len(img.diff_ids) == 2
    union = {r["path"]: r for r in files(store, img)}
    for path, size in EXPECTED_SIZES.items():
        assert union[path]["size"] == size, path
    assert "/etc/group" not in union and "/bin/ls" not in union and union["/link"]["link"] == "/new.bin"
    # the committed layer, read by layerkit, holds every change the engine's diff reported, with the same
    # sizes (it also holds the mount-point stubs podman creates, /dev, /etc/hosts..., which diff hides)
    kinds = {"added": "A", "modified": "C", "deleted": "D"}
    top = {(kinds[r["kind"]], r["path"]): (0 if r["kind"] == "deleted" else r["size"])
           for r in layer_files(store, img, 1)}
    diff = {(r["kind"], r["path"]): r["size"] for r in engine_diff("lk-changed", svc.endpoint)}
    assert {k: top.get(k) for k in diff} == diff
    # podman keeps the message in the config's top-level comment (its history entry says "FROM IMAGE")
    assert img.config.get("comment") == "through the engine" and img.history_entries[-1].get("author") == "lk"


# ---- copy docker-daemon: ------------------------------------------------------------------------------

def test_copy_to_and_from_the_daemon(svc, tmp_path):
    from layerkit.formats.copy import copy

    layout = builders.write_layout(tmp_path / "layout", [_layer({"daemon.txt": b"via copy\n"})], "x")
    store = Store(tmp_path / "store")
    res = copy(store, f"oci:{layout}", "docker-daemon:lk.test/daemon:1", endpoint=svc.endpoint)
    assert res["engine_ids"] == [res["id"]] and _id(_inspect(svc, "lk.test/daemon:1")["Id"]) == res["id"]
    fresh = Store(tmp_path / "fresh")
    out = tmp_path / "out"
    back = copy(fresh, "docker-daemon:lk.test/daemon:1", f"oci:{out}:d", endpoint=svc.endpoint)
    assert back["id"] == res["id"] and fresh.image("lk.test/daemon:1").id == res["id"]
    assert json.loads((out / "index.json").read_text())["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "d"}
    with pytest.raises(ImageNotFound, match="no such image"):
        copy(fresh, "docker-daemon:lk.test/absent:1", f"oci:{out}:e", endpoint=svc.endpoint)


def test_daemon_source_without_a_store(svc, tmp_path, monkeypatch):
    """``docker-daemon:`` read in place: the engine's archive goes to the system's temporary directory (gone
    when the source closes) and its image straight to an OCI layout, nothing stored."""
    import tempfile

    from layerkit.formats.pipeline import copy_image
    from layerkit.formats.transports import registry as table

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "direct"
    with table.open_source(f"docker-daemon:{BUSYBOX}", endpoint=svc.endpoint) as src:
        [(image_id, refs)] = copy_image(src, table.open_destination(f"oci:{out}:bb"))
        assert len(list((tmp_path / "tmp").iterdir())) == 1  # the engine's archive, while the source is open
    assert image_id == _id(_inspect(svc, BUSYBOX)["Id"]) and refs == ["bb"]
    assert json.loads((out / "index.json").read_text())["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "bb"}
    assert list((tmp_path / "tmp").iterdir()) == []
