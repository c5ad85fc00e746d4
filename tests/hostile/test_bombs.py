"""Bombs: inputs that claim or inflate to far more than they weigh (issue 11 item 7).

Each runs in a child process (``layerkit load``, indexing a stored blob, extraction) whose own peak RSS is
what the child reports of itself (``VmHWM``, see :mod:`peak`); it must stay under the README's 200 MB and
finish in bounded time. Before this, a PAX header claiming 3 GiB cost 6.3 GB RSS, a 131 KB zstd layer 8.4 GB,
a truncated 65 KB one 4.2 GB, a 20 MB gzip one 1.1 GB, and a base-256 size of -512 looped forever. The valid
bombs here inflate to 512 MiB (every old path held all of it at once); the invalid ones must fail with one
line."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

import layerkit

from . import peak
from .tarcraft import BLOCK, b256, end, header, member, tar, write_layout

LIMIT_RSS = 200 << 20
LIMIT_SECONDS = 90  # generous: the machine may be busy; a loop or an unbounded inflate takes far longer
INFLATED = 512 << 20
SRC = str(Path(layerkit.__file__).resolve().parent.parent)


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    rss: int
    seconds: float


def measured(argv: list[str], tmp: Path, timeout: float = LIMIT_SECONDS) -> Outcome:
    """Run ``argv``; its exit status, output, own peak RSS (``VmHWM``, see :mod:`peak`) and wall time.
    Killed at ``timeout``."""
    out, err, hwm = tmp / "stdout", tmp / "stderr", tmp / "hwm"
    env = {**os.environ, "PYTHONPATH": SRC}
    t = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(peak.reporting(argv, hwm), stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            pytest.fail(f"{' '.join(argv)} still running after {timeout} s")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(proc.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
                   peak.peak_bytes(hwm), time.monotonic() - t)


def bounded(o: Outcome) -> None:
    assert o.rss < LIMIT_RSS, f"peak RSS {o.rss / 1e6:.0f} MB"
    assert o.seconds < LIMIT_SECONDS


def one_line_error(o: Outcome, *words: str) -> None:
    assert o.rc == 1, (o.rc, o.err[-2000:])
    assert o.err.startswith("layerkit: error: ") and o.err.count("\n") == 1, o.err[-2000:]
    for w in words:
        assert w in o.err, o.err


# ---- the bombs -------------------------------------------------------------------------------------

def zeros_tar(size: int, after_end: int = 0):
    """A tar holding one file of ``size`` zero bytes (``after_end`` zero bytes follow the end marker),
    chunk by chunk."""
    yield header("zeros", size=size)
    chunk = bytes(1 << 20)
    left = size + (-size % BLOCK)
    while left:
        n = min(left, len(chunk))
        yield chunk[:n]
        left -= n
    yield end()
    left = after_end
    while left:
        n = min(left, len(chunk))
        yield chunk[:n]
        left -= n


def compressed(chunks, kind: str) -> tuple[bytes, str]:
    """The blob and the diff_id of a tar given chunk by chunk (never whole in memory, even when the
    chunks are the same object repeated)."""
    h = hashlib.sha256()
    if kind == "gzip":
        from isal import isal_zlib
        c = isal_zlib.compressobj(1, zlib.DEFLATED, 31)
    else:
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd
        c = zstd.ZstdCompressor(level=1)
    parts = []
    for x in chunks:
        h.update(x)
        parts.append(c.compress(x))
    parts.append(c.flush())
    return b"".join(parts), "sha256:" + h.hexdigest()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, tuple[bytes, str, str]]:
    """name -> (stored blob, compression, diff_id claimed by the config)."""
    out: dict[str, tuple[bytes, str, str]] = {}
    for kind in ("gzip", "zstd"):
        blob, diff_id = compressed(zeros_tar(INFLATED), kind)
        out[f"{kind}-valid"] = (blob, kind, diff_id)
        out[f"{kind}-truncated"] = (blob[:len(blob) // 2], kind, diff_id)
        blob2, diff_id2 = compressed(zeros_tar(1024, after_end=INFLATED), kind)
        out[f"{kind}-after-end-marker"] = (blob2, kind, diff_id2)
    g = bytearray(out["gzip-valid"][0])
    g[-8] ^= 0xFF  # the CRC-32 of the member
    out["gzip-bad-crc"] = (bytes(g), "gzip", out["gzip-valid"][2])
    # a frame whose header asks for a 2 GiB window (zstd -d refuses it too without --long=31)
    out["zstd-huge-window"] = (bytes([0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xA8, 0x01, 0x00, 0x00]), "zstd",
                               "sha256:" + "0" * 64)
    # a PAX header that claims 3 GiB and holds it, gzip-compressed to 3 MB
    nines = b"9" * (1 << 20)
    blob, _ = compressed(iter([header("././@PaxHeader", type=b"x", size=3 << 30)] + [nines] * 3072), "gzip")
    out["pax-3-gib"] = (blob, "gzip", "sha256:" + "0" * 64)
    neg = tar(member("evil", size=b256(-512, 12)), member("next", b"x"))
    out["negative-size"] = (neg, "tar", "sha256:" + hashlib.sha256(neg).hexdigest())
    return out


ERRORS = {
    "gzip-truncated": "truncated gzip stream",
    "zstd-truncated": "truncated zstd stream",
    "gzip-bad-crc": "corrupt gzip stream",
    "zstd-huge-window": "requires too much memory",
    "pax-3-gib": "extended header of 3221225472 bytes",
    "negative-size": "negative size -512",
}
VALID = ["gzip-valid", "zstd-valid", "gzip-after-end-marker", "zstd-after-end-marker"]


def layout_of(tmp_path: Path, bomb: tuple[bytes, str, str]) -> Path:
    blob, kind, diff_id = bomb
    return write_layout(tmp_path / "layout", [b""], "bomb:1", compression=kind, diff_ids=[diff_id], blobs=[blob])


@pytest.mark.parametrize("name", sorted(ERRORS) + VALID)
def test_load(tmp_path: Path, bombs, name: str) -> None:
    """``layerkit load`` of an OCI layout holding the bomb: bounded, and one line when the input is bad."""
    layout = layout_of(tmp_path, bombs[name])
    o = measured([sys.executable, "-m", "layerkit", "--store", str(tmp_path / "store"), "load", str(layout)],
                 tmp_path)
    bounded(o)
    if name in ERRORS:
        one_line_error(o, ERRORS[name])
    else:
        assert o.rc == 0, o.err


CHILD = """
import sys
from pathlib import Path
from layerkit.engine.extract import extract_layer
from layerkit.engine.image import Layer
from layerkit.engine.layer import index_blob
from layerkit.engine.store import Store
from layerkit.errors import LayerkitError
mode, store_dir, blob_file, dest = sys.argv[1:]
store = Store(Path(store_dir))
digest = store.blobs.put_bytes(Path(blob_file).read_bytes())
try:
    if mode == "index":
        idx = index_blob(store.blobs, digest, "layer " + digest)
        print(idx.tar_size)
    else:
        Path(dest).mkdir()
        extract_layer(store, Layer(store, 0, "sha256:" + "0" * 64, digest, "", 0, ""), Path(dest))
        print(sum(f.stat().st_size for f in Path(dest).iterdir()))
except LayerkitError as exc:
    print(f"layerkit: error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.mark.parametrize("mode", ["index", "extract"])
@pytest.mark.parametrize("name", sorted(ERRORS) + ["gzip-valid", "zstd-valid", "zstd-after-end-marker"])
def test_index_and_extract(tmp_path: Path, bombs, name: str, mode: str) -> None:
    """Indexing a stored bomb (``index_blob``: the first use of a pulled layer) and extracting it (what
    ``run`` does), each in a child process."""
    blob, kind, diff_id = bombs[name]
    (tmp_path / "blob").write_bytes(blob)
    o = measured([sys.executable, "-c", CHILD, mode, str(tmp_path / "store"), str(tmp_path / "blob"),
                  str(tmp_path / "dest")], tmp_path)
    shutil.rmtree(tmp_path / "dest", ignore_errors=True)  # up to 512 MiB of zeros
    bounded(o)
    after = "after" in name
    if name in ERRORS:
        one_line_error(o, ERRORS[name])
    elif mode == "index":  # the tar's length: header, data, end marker (and what follows it)
        assert o.rc == 0 and int(o.out) == BLOCK + (1024 if after else INFLATED) + 2 * BLOCK + after * INFLATED, o.err
    else:
        assert o.rc == 0 and int(o.out) == (1024 if after else INFLATED), o.err


def test_entry_count_is_bounded(tmp_path: Path, monkeypatch) -> None:
    """Empty entries cost index memory but almost nothing compressed: a layer holding more than the cap is
    refused in one line (the cap is lowered here; the real one is two million, about 0.8 GB of index)."""
    from layerkit.engine import layer as layer_mod
    from layerkit.engine.layer import LayerFormatError
    from layerkit.engine.store import Store
    from layerkit.formats.load import load_path

    monkeypatch.setattr(layer_mod, "MAX_ENTRIES", 3000)
    blob = tar(*[member(f"e/{i:05d}", b"") for i in range(5000)])
    layout = write_layout(tmp_path / "layout", [blob], "many:1")
    with pytest.raises(LayerFormatError, match="more than 3000 entries in one layer"):
        load_path(Store(tmp_path / "store"), str(layout))
    monkeypatch.setattr(layer_mod, "MAX_ENTRIES", 6000)
    assert load_path(Store(tmp_path / "store"), str(layout))
