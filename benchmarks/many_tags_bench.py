"""``layerkit load`` of archives with very many tags or images (issue 11, "linear, all-or-nothing loads").

Builds, under ``.bench/many_tags/``, classic docker-archives (written with :mod:`tarfile`):

- ``--tags`` RepoTags (default 100,000) spread over ``--images`` images (default 4), each image one tiny
  layer of its own;
- ``--shared`` images (default 2,000), each with a config of its own, one tag each, all on one shared
  layer;

then times ``layerkit --store DIR load ARCHIVE`` for each into a fresh store (a child process; peak RSS from
``wait4``) and checks that ``index.json`` holds one entry per tag.

Run: ``python -m benchmarks.many_tags_bench [--tags 100000] [--images 4] [--shared 2000]``.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "many_tags"
EPOCH = 1704067200


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
    tf.addfile(ti, io.BytesIO(data))


def _layer(seed: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, f"{seed}.txt", f"layer {seed}\n".encode())
    return buf.getvalue()


def _config(diff_id: str, seed: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                       "config": {"Cmd": ["sh"], "Labels": {"seed": seed}},
                       "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                       "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ADD {seed}"}]}).encode()


def many_tags_archive(out: Path, tags: int, images: int, shared: bool = False) -> Path:
    """A docker-archive: ``images`` images holding ``tags`` RepoTags between them (round robin); each image
    has a layer of its own, or with ``shared`` all stand on one shared layer."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        entries = []
        common = _layer("shared") if shared else b""
        common_name = hashlib.sha256(common).hexdigest() + "/layer.tar"
        if shared:
            _add(tf, common_name, common)
        for i in range(images):
            layer = common if shared else _layer(f"img{i}")
            diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
            layer_name = common_name if shared else diff_id[7:] + "/layer.tar"
            if not shared:
                _add(tf, layer_name, layer)
            config = _config(diff_id, f"img{i}")
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            _add(tf, config_name, config)
            entries.append({"Config": config_name, "RepoTags": [], "Layers": [layer_name]})
        for t in range(tags):
            entries[t % images]["RepoTags"].append(f"bench/many{t % 97}:t{t}")
        _add(tf, "manifest.json", json.dumps(entries).encode())
    return out


# the CLI, then this process's own peak RSS (VmHWM: the address space exec made; wait4's ru_maxrss would also
# count the memory of the parent it was forked from)
_MEASURED = """import sys
from layerkit.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    with open(sys.argv[1], "w") as f:
        f.write(hwm)
sys.exit(rc)
"""


def timed_load(archive: Path, store: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``layerkit --store STORE load ARCHIVE`` in a child process."""
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hwm = HERE / "hwm"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED, str(hwm), "--store", str(store), "load", str(archive)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"load failed: {proc.stderr.decode()}")
    return elapsed, int(hwm.read_text()) / 1024


def main() -> None:
    """Build the archives, time the loads, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=100_000, help="RepoTags in the first archive")
    ap.add_argument("--images", type=int, default=4, help="images the tags are spread over")
    ap.add_argument("--shared", type=int, default=2_000, help="images on one shared layer in the second archive")
    args = ap.parse_args()
    HERE.mkdir(parents=True, exist_ok=True)
    cases = []
    if args.tags:
        cases.append((f"{args.tags:,} tags over {args.images} images",
                      many_tags_archive(HERE / f"tags-{args.tags}-{args.images}.tar", args.tags, args.images),
                      args.tags))
    if args.shared:
        cases.append((f"{args.shared:,} images sharing one layer",
                      many_tags_archive(HERE / f"shared-{args.shared}.tar", args.shared, args.shared,
                                        shared=True),
                      args.shared))
    for what, archive, entries in cases:
        store = HERE / "store"
        seconds, rss = timed_load(archive, store)
        index = json.loads((store / "index.json").read_text())
        assert len(index["manifests"]) == entries, (len(index["manifests"]), entries)
        print(f"{what}: archive {archive.stat().st_size / 1e6:.1f} MB, load {seconds:.2f} s, "
              f"peak RSS {rss:.0f} MB, index.json entries {len(index['manifests']):,}")
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
