"""A running container swaps a directory of its writable layer for a symlink to the host while ``commit``
(or a RUN step) reads that layer: nothing of the host may reach the layer.

A real second process (the container's, as far as this test is concerned) flips ``/d`` of an upper
directory between a real directory and a symlink to a host directory as fast as it can, while the layer is
scanned and written over and over. The host directory holds a file of the same name and size as the
container's (so a size check alone would not notice the swap) and a file the container does not have.
Neither the host file's bytes nor its name may ever appear; a read that notices the swap may fail with
:class:`~layerkit.errors.FileOpError` ("commit again once it has exited"), which ``commit`` then reports.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from layerkit.engine.upper import scan_upper, write_layer_tar
from layerkit.errors import FileOpError

SWAPPER = """
import os, sys, time
upper, host = sys.argv[1], sys.argv[2]
d, real = os.path.join(upper, "d"), os.path.join(upper, "d.real")
while True:  # half the time a directory, half the time a symlink to the host
    os.rename(d, real)
    os.symlink(host, d)
    time.sleep(0.0002)
    os.unlink(d)
    os.rename(real, d)
    time.sleep(0.0002)
"""


def test_a_directory_swapped_for_a_host_symlink_is_never_followed(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_bytes(b"HOST-SECRET-BYTES")
    (host / "only-on-host").write_bytes(b"x")
    upper = tmp_path / "upper"
    (upper / "d" / "sub").mkdir(parents=True)
    (upper / "d" / "secret").write_bytes(b"container-bytes!!")  # same size as the host's
    (upper / "d" / "sub" / "f").write_bytes(b"f")
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(upper), str(host)])
    try:
        rounds = refused = swapped = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            rounds += 1
            swapped += (upper / "d").is_symlink()  # the swapper is at work
            try:
                paths = {e.path for e in scan_upper(upper)}
                buf = io.BytesIO()
                write_layer_tar(upper, buf)
            except FileOpError:
                refused += 1
                continue
            assert not any(p.endswith("only-on-host") for p in paths), paths
            buf.seek(0)
            with tarfile.open(fileobj=buf) as tf:
                for m in tf:
                    assert not m.name.endswith("only-on-host"), m.name
                    if m.isreg():
                        assert tf.extractfile(m).read() != b"HOST-SECRET-BYTES", m.name
        assert swapper.poll() is None, "the swapping process died: the race was not run"
    finally:
        swapper.kill()
        swapper.wait()
    # the race was run (the walk met /d swapped, or saw it mid-swap), and most layers were still written
    assert rounds > 50 and swapped + refused > 0 and refused < rounds, (rounds, swapped, refused)
