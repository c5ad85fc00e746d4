"""Blobs written behind (``engine/blobs.py``): a thread of the writer writes and fsyncs a layer blob while
the ingesting thread hashes and indexes it, with direct I/O where the file system has it.

What must hold whatever the thread does: the file holds exactly the bytes that were hashed, in order; an
aborted blob leaves no file and no thread; a file system without direct I/O (ramfs, mounted in a private
mount namespace) gets every byte through the page cache; and a write that fails in the thread (a file
size limit, as a full disk would) fails the load with one line naming the layer, leaving the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from builders import F, layer_tar, write_layout

from layerkit.cli import main
from layerkit.engine.blobs import STAGE, BlobStore

ROOT = Path(__file__).resolve().parents[1]


def _writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("layerkit-write")]


def _blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store", tmp_path / "store" / "layerkit" / "tmp")


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page-cache"])
def test_written_behind_holds_every_byte_hashed(tmp_path, direct):
    """Chunks of every awkward size (a byte, around the 4096-byte block, across the direct-I/O stage, a
    memoryview) land in the file in order, the last partial block included."""
    blobs = _blobs(tmp_path)
    data = os.urandom(3 * STAGE + 12345)
    sizes = [1, 4095, 4096, 4097, 1 << 20, STAGE + 3, 7, STAGE - 1]
    w = blobs.writer(label="test blob", background=True, direct=direct)
    pos = 0
    for n in sizes:
        w.write(memoryview(data)[pos:pos + n] if n == 4097 else data[pos:pos + n])
        pos += n
    w.write(data[pos:])
    w.end()
    digest = w.commit()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blobs.path(digest).read_bytes() == data
    assert list(blobs.tmp_dir.iterdir()) == []
    assert _writer_threads() == []


def test_small_blob_written_behind(tmp_path):
    """Less than one block: nothing goes directly, all of it through the page cache at the end."""
    blobs = _blobs(tmp_path)
    w = blobs.writer(background=True)
    w.write(b"tiny")
    digest = w.commit()
    assert blobs.path(digest).read_bytes() == b"tiny"


def test_abort_drops_the_file_and_stops_the_thread(tmp_path):
    blobs = _blobs(tmp_path)
    w = blobs.writer(label="aborted", background=True)
    for _ in range(12):  # more than the queue holds
        w.write(os.urandom(1 << 20))
    assert _writer_threads() == ["layerkit-write aborted"]
    w.abort()
    assert list(blobs.tmp_dir.iterdir()) == []
    assert blobs.digests() == []
    assert _writer_threads() == []


def _layout(tmp_path: Path) -> Path:
    """An OCI layout of two layers: 9 MiB of random bytes (more than two direct-I/O stages) and a small one."""
    big = layer_tar([F("big.bin", os.urandom(9 << 20)), F("etc/hostname", b"x\n")])
    small = layer_tar([F("etc/motd", b"hello\n")])
    return write_layout(tmp_path / "layout", [big, small], "t:1")


def test_written_behind_on_a_file_system_without_direct_io(tmp_path):
    """ramfs refuses ``O_DIRECT``: a blob written behind there goes through the page cache, every byte."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("needs root and unshare (util-linux) to mount a ramfs in a private mount namespace")
    ram = tmp_path / "ram"
    ram.mkdir()
    child = f"""
import fcntl, hashlib, json, os
from pathlib import Path
from layerkit.engine.blobs import STAGE, BlobStore
probe = os.open({str(ram / 'probe')!r}, os.O_WRONLY | os.O_CREAT)
try:
    fcntl.fcntl(probe, fcntl.F_SETFL, fcntl.fcntl(probe, fcntl.F_GETFL) | os.O_DIRECT)
    direct = True
except OSError:
    direct = False
blobs = BlobStore(Path({str(ram / 'store')!r}), Path({str(ram / 'store' / 'tmp')!r}))
data = os.urandom(2 * STAGE + 4097)
w = blobs.writer(background=True)
for i in range(0, len(data), 1000003):
    w.write(data[i:i + 1000003])
w.end()
digest = w.commit()
print(json.dumps({{"direct": direct, "digest": digest, "want": "sha256:" + hashlib.sha256(data).hexdigest(),
                  "file": "sha256:" + hashlib.sha256(blobs.path(digest).read_bytes()).hexdigest(),
                  "tmp": os.listdir(blobs.tmp_dir)}}))
"""
    p = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t ramfs none "$1" && exec "$2" -c "$3"', "sh",
                        str(ram), sys.executable, child],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert got["direct"] is False, "ramfs accepted O_DIRECT: this test no longer covers the fallback"
    assert got["digest"] == got["want"] == got["file"]
    assert got["tmp"] == []


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel != "layerkit/lock":
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_a_write_failing_behind_fails_the_load_and_leaves_the_store(tmp_path):
    """A file size limit (``RLIMIT_FSIZE``; Python ignores ``SIGXFSZ``) makes the writer thread's write fail
    with EFBIG, as a full disk would with ENOSPC: one line naming the layer, exit 1, the store as it was."""
    store = tmp_path / "store"
    small = write_layout(tmp_path / "small", [layer_tar([F("a", b"a\n")])], "small:1")
    assert main(["--store", str(store), "load", str(small)]) == 0
    before = _snapshot(store)
    layout = _layout(tmp_path)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    p = subprocess.run([sys.executable, "-m", "layerkit", "--store", str(store), "load", str(layout)],
                       capture_output=True, text=True, timeout=120, preexec_fn=limit,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 1, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"layerkit: error: {layout}: layer "), p.stderr
    assert lines[0].endswith(": File too large"), p.stderr
    assert _snapshot(store) == before
    assert _writer_threads() == []
