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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.builders import many_images_archive
from tests.hostile.peak import peak_bytes, reporting

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "many_tags"
EPOCH = 1704067200


def timed_load(archive: Path, store: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``layerkit --store STORE load ARCHIVE`` in a child process."""
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hwm = HERE / "hwm"
    t0 = time.perf_counter()
    argv = reporting([sys.executable, "-m", "layerkit", "--store", str(store), "load", str(archive)], hwm)
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"load failed: {proc.stderr.decode()}")
    return elapsed, peak_bytes(hwm) / (1 << 20)


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
                      many_images_archive(HERE / f"tags-{args.tags}-{args.images}.tar", args.images, args.tags,
                                          shared=False, prefix="bench")[0],
                      args.tags))
    if args.shared:
        cases.append((f"{args.shared:,} images sharing one layer",
                      many_images_archive(HERE / f"shared-{args.shared}.tar", args.shared, args.shared,
                                          shared=True, prefix="bench")[0],
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
