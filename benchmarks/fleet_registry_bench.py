"""``layerkit scan docker://HOST:PORT`` (issue 15): a whole registry scanned, against ``skopeo copy``.

The registry (a real ``docker-registry`` on 127.0.0.1, its storage cached under ``.bench/fleet-registry/``
and reused while the figures below stay the same) holds ``--images`` images (default 200) in ``--repos``
repositories (default 20), with sharing as registries have it: 4 bases of 2 layers each (a few thousand
files), one layer per repository that all its tags share (its runtime), then 3-7 small application layers
of each image's own (20-300 files), and every tenth image one large layer (400 files of 60 kB). The images
are written as one OCI layout by a small script (gzip, level 6) and pushed with ``skopeo copy``.

Measured: the scan of the whole registry (``docker://HOST:PORT``: catalog, tags, manifests, configs, every
unique layer) into a fresh dataset by a LocalCluster of 1, then 2 worker processes of 2 threads each, as ``scan``'s own
LocalCluster has them (the cluster's start is
not timed, as it is not in ``fleet_bench``), with compressed MB/s, files/s and the scaling efficiency;
each worker's peak RSS (``ru_maxrss`` read in the worker); the planning time alone; and the scan time
divided by ``skopeo copy`` of every image from the registry into one OCI layout (one skopeo process per
image, as a mirror script runs it).

Run: ``python -m benchmarks.fleet_registry_bench [--images 200] [--repos 20]``. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.fleet_bench import _layer, image_entry

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "fleet-registry"


def build_layout(n_images: int, n_repos: int) -> tuple[Path, list[str], int]:
    """The OCI layout of the images (reused when it exists with the same figures), their names and the
    number of distinct layers."""
    out = HERE / f"layout-{n_images}-{n_repos}"
    names = [f"team{r % 4}/app{r}:v{i // n_repos}" for i in range(n_images) for r in [i % n_repos]]
    if (out / "index.json").exists():
        return out, names, json.loads((out / "layers.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rng = random.Random(15)
    seen: set[str] = set()

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    def layer(tar: bytes) -> tuple[dict, str]:
        d = put(gzip.compress(tar, 6))
        seen.add(d["digest"])
        return d, "sha256:" + hashlib.sha256(tar).hexdigest()

    bases = [[layer(_layer(rng, f"base{b}-{k}", 1500, 4000)) for k in range(2)] for b in range(4)]
    runtimes = [layer(_layer(rng, f"runtime{r}", 400, 3000)) for r in range(n_repos)]
    manifests = []
    for i, name in enumerate(names):
        r = i % n_repos
        ls = [*bases[r % 4], runtimes[r]]
        for k in range(rng.randint(3, 7)):
            ls.append(layer(_layer(rng, f"app{i}-{k}", rng.randint(20, 300), 2000)))
        if i % 10 == 0:
            ls.append(layer(_layer(rng, f"big{i}", 400, 60_000)))
        manifests.append(image_entry(put, name, ls))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (out / "layers.json").write_text(json.dumps(len(seen)))
    return out, names, len(seen)


def start_registry(root: Path):
    """A docker-registry serving ``root`` (tests/services.py's starter, without an access log)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from services import start_registry as start

    return start(root, access_log=False)


def fill(layout: Path, names: list[str], root: Path) -> object:
    """The registry holding every image of the layout (pushed once; later runs reuse its storage)."""
    done = root / "filled"
    reg = start_registry(root)
    if done.exists() and done.read_text() == str(len(names)):
        return reg
    t0 = time.perf_counter()

    def push(n: str) -> None:
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{n}",
                        f"docker://{reg.host}/{n}"], check=True)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(push, names))
    done.write_text(str(len(names)))
    print(f"  filled the registry with {len(names)} images in {time.perf_counter() - t0:.0f} s")
    return reg


def scan_once(source: str, workers: int) -> dict:
    """One scan into a fresh dataset on a new LocalCluster of ``workers`` processes (of as many threads as
    ``scan``'s own LocalCluster gives each)."""
    import resource

    from distributed import Client, LocalCluster

    from layerkit.fleet.scan import THREADS_PER_WORKER, plan, scan

    ds = HERE / f"ds-{workers}"
    shutil.rmtree(ds, ignore_errors=True)
    t0 = time.perf_counter()
    p = plan([source], str(ds))
    planning = time.perf_counter() - t0
    shutil.rmtree(ds, ignore_errors=True)
    with LocalCluster(n_workers=workers, threads_per_worker=THREADS_PER_WORKER, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        res = scan([source], str(ds), scheduler=cluster.scheduler_address)
        seconds = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert res.failures == 0, res.failure_rows
    return {"seconds": seconds, "mb": res.compressed_bytes / 1e6, "files": res.files, "layers": res.layers,
            "images": res.images, "rss": sorted(rss.values()), "planning": planning, "tasks": len(p.tasks),
            "refs": len(p.images)}


def skopeo_all(host: str, names: list[str]) -> float:
    """Seconds of ``skopeo copy`` of every image from the registry into one new OCI layout."""
    dst = HERE / "skopeo-copy"
    shutil.rmtree(dst, ignore_errors=True)
    t0 = time.perf_counter()
    for n in names:
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/{n}",
                        f"oci:{dst}:{n}"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    """Build the registry, run the measurements, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="images in the registry")
    ap.add_argument("--repos", type=int, default=20, help="repositories they are spread over")
    ap.add_argument("--workers", default="1,2", help="LocalCluster sizes to measure (default 1,2)")
    args = ap.parse_args()
    HERE.mkdir(parents=True, exist_ok=True)
    layout, names, n_layers = build_layout(args.images, args.repos)
    reg = fill(layout, names, HERE / f"registry-{args.images}-{args.repos}")
    try:
        source = f"docker://{reg.host}"
        runs = {int(w): scan_once(source, int(w)) for w in args.workers.split(",")}
        sk = skopeo_all(reg.host, names)
    finally:
        reg.stop()
    first = next(iter(runs.values()))
    print(f"registry of {len(names)} images in {args.repos} repositories, {n_layers} distinct layers; scan: "
          f"{first['images']} images, {first['layers']} layers indexed, {first['mb']:.1f} MB compressed, "
          f"{first['files']:,} entries; planning (catalog, tags, manifests, configs) {first['planning']:.2f} s")
    for w, r in runs.items():
        rss = ", ".join(f"{x:.0f}" for x in r["rss"])
        print(f"  {w} worker(s): {r['seconds']:.2f} s, {r['mb'] / r['seconds']:.1f} MB/s, "
              f"{r['files'] / r['seconds']:,.0f} files/s, worker peak RSS {rss} MB")
    if 1 in runs and 2 in runs:
        print(f"  scaling efficiency 1 -> 2 workers: {runs[1]['seconds'] / runs[2]['seconds'] / 2:.2f}")
    best = min(r["seconds"] for r in runs.values())
    print(f"  skopeo copy of every image into one layout: {sk:.2f} s; best scan / skopeo: {best / sk:.2f}")


if __name__ == "__main__":
    main()
