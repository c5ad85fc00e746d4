"""``layerkit scan`` and ``layerkit fleet`` (issue 15): scan throughput and memory, query times at scale.

Two parts, each optional:

- ``--images N`` (default 40): one OCI layout under ``.bench/fleet/`` holding N images of gzip layers with
  sharing as registries have it (3 base layers of a few thousand files, each image one base plus 1-3 small
  application layers of its own, every tenth a large one), scanned into a fresh dataset by a LocalCluster of
  1 and then 2 worker processes. Reported: seconds, compressed MB/s, files/s, the scaling efficiency
  between 1 and 2 workers, each worker's peak RSS (``ru_maxrss`` read in the worker), and the scan time
  divided by ``skopeo copy`` of every image into one new OCI layout (one skopeo process per image, as a
  mirror script runs it).
- ``--rows N`` (default 10,000,000): a synthetic dataset of N ``files`` rows over 20,000 layers and 2,000
  images, its contents drawn from ``--unique`` × N distinct ones (default 0.1), written with pyarrow;
  ``fleet summary`` and ``fleet duplicates`` timed in-process (best of 3, DuckDB connection included), and the
  dataset's bytes per million file rows.

Run: ``python -m benchmarks.fleet_bench [--images 40] [--rows 10000000]`` (0 skips a part). Not collected
by pytest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "fleet"
EPOCH = 1704067200


# ---- part 1: scanning a layout of many images ------------------------------------------------------------

def _layer(rng: random.Random, prefix: str, files: int, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(max(1, files // 100)):
            ti = tarfile.TarInfo(f"{prefix}/d{d}")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tf.addfile(ti)
        for i in range(files):
            # half text-like (compressible), half random: realistic gzip ratios
            n = rng.randint(size // 2, size * 3 // 2)
            data = (f"line {i} of {prefix}\n" * (n // 20 + 1)).encode()[:n] if i % 2 else rng.randbytes(n)
            ti = tarfile.TarInfo(f"{prefix}/d{i % max(1, files // 100)}/f{i}")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def image_entry(put, name: str, ls: list[tuple[dict, str]]) -> dict:
    """The index entry of image ``name`` of gzip layers ``ls`` (descriptor, diff_id); ``put`` stores a blob
    and returns its descriptor (the config and the manifest go through it too)."""
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [d for _, d in ls]},
              "history": [{"created_by": f"layer {k}"} for k in range(len(ls))]}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d} for d, _ in ls]}
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(json.dumps(manifest).encode()),
            "annotations": {"org.opencontainers.image.ref.name": name}}


def build_layout(n_images: int) -> tuple[Path, list[str]]:
    """The layout of ``n_images`` images (reused when it exists with the same count) and their names."""
    out = HERE / f"layout-{n_images}"
    names = [f"bench/app{i % 20}:v{i // 20}" for i in range(n_images)]
    if (out / "index.json").exists():
        return out, names
    shutil.rmtree(out, ignore_errors=True)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rng = random.Random(15)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    def layer(tar: bytes) -> tuple[dict, str]:
        return put(gzip.compress(tar, 6)), "sha256:" + hashlib.sha256(tar).hexdigest()

    bases = [layer(_layer(rng, f"base{b}", 3000, 4000)) for b in range(3)]
    manifests = []
    for i, name in enumerate(names):
        ls = [bases[i % 3]]
        for k in range(rng.randint(1, 3)):
            ls.append(layer(_layer(rng, f"app{i}-{k}", rng.randint(20, 300), 2000)))
        if i % 10 == 0:
            ls.append(layer(_layer(rng, f"big{i}", 400, 60_000)))
        manifests.append(image_entry(put, name, ls))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return out, names


def scan_once(layout: Path, workers: int) -> dict:
    """One scan into a fresh dataset on a new LocalCluster of ``workers`` processes."""
    import resource

    from distributed import Client, LocalCluster

    from layerkit.fleet.scan import scan

    ds = HERE / f"ds-{workers}"
    shutil.rmtree(ds, ignore_errors=True)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        res = scan([f"oci:{layout}"], str(ds), scheduler=cluster.scheduler_address)
        seconds = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert res.failures == 0, res.failure_rows
    return {"seconds": seconds, "mb": res.compressed_bytes / 1e6, "files": res.files, "layers": res.layers,
            "images": res.images, "rss": sorted(rss.values())}


def skopeo_all(layout: Path, names: list[str]) -> float:
    """Seconds of ``skopeo copy`` of every image into one new OCI layout."""
    dst = HERE / "skopeo-copy"
    shutil.rmtree(dst, ignore_errors=True)
    t0 = time.perf_counter()
    for n in names:
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:{n}", f"oci:{dst}:{n}"], check=True)
    return time.perf_counter() - t0


# ---- part 2: queries over millions of rows ---------------------------------------------------------------

def synthetic(rows: int, unique: float) -> Path:
    """A dataset of ``rows`` files rows whose contents are drawn from ``unique * rows`` distinct ones, the
    popular ones far more often (a Zipf-like draw: the Docker Hub study of Zhao et al. found about 3 % of
    files unique); reused when it exists with the same figures."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from layerkit.fleet import dataset as fds

    out = HERE / f"synthetic-{rows}-{unique}"
    if (out / "files").is_dir() and fds.parts(out, "files"):
        return out
    shutil.rmtree(out, ignore_errors=True)
    fds.create(out)
    rng = np.random.default_rng(15)
    n_layers, n_images = 20_000, 2_000
    diff_ids = [f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(n_layers)]
    per_part = 1_000_000
    sizes_by_layer = np.zeros(n_layers, dtype=np.int64)
    entries_by_layer = np.zeros(n_layers, dtype=np.int64)
    for start in range(0, rows, per_part):
        n = min(per_part, rows - start)
        layer = np.sort(rng.integers(0, n_layers, n))
        pool = max(1, int(rows * unique))
        content = (pool * rng.random(n) ** 3).astype(np.int64)  # low IDs (popular contents) far more often
        size = (content % 50_000).astype(np.int64) + 1
        seq = np.arange(start, start + n, dtype=np.int32)
        ids = pa.array(content)
        t = pa.table({
            "diff_id": pa.array(np.array(diff_ids, dtype=object)[layer], pa.string()),
            "seq": pa.array(seq),
            "path": pc.binary_join_element_wise("/usr/lib/pkg", pc.cast(pa.array(seq % 5000), pa.string()), "/f",
                                                pc.cast(pa.array(seq), pa.string()), ""),
            "type": pa.array(["file"] * n, pa.string()),
            "size": pa.array(size),
            "mode": pa.array(np.full(n, 0o644, dtype=np.int32)),
            "uid": pa.array(np.zeros(n, dtype=np.int64)), "gid": pa.array(np.zeros(n, dtype=np.int64)),
            "mtime": pa.array(np.full(n, float(EPOCH))),
            "link": pa.array([""] * n, pa.string()),
            "sha256": pc.utf8_lpad(pc.cast(ids, pa.string()), 64, "0"),
        })
        fds.write_part(out, "files", t, prefix=f"synthetic.{start // per_part}.")
        np.add.at(sizes_by_layer, layer, size)
        np.add.at(entries_by_layer, layer, 1)
    fds.write_part(out, "layers", [{"diff_id": d, "digest": d, "compression": "gzip",
                                    "compressed_size": int(s) // 3, "tar_size": int(s) + int(e) * 512,
                                    "size": int(s), "entries": int(e), "files": int(e), "regular_files": int(e),
                                    "regular_bytes": int(s), "contents": True,
                                    "index_seconds": 0.0, "worker": None, "scanned_at": __import__("datetime")
                                    .datetime.now(__import__("datetime").UTC)}
                                   for d, s, e in zip(diff_ids, sizes_by_layer, entries_by_layer, strict=True)])
    images, image_layers = [], []
    for i in range(n_images):
        image_id = f"sha256:{hashlib.sha256(f'image{i}'.encode()).hexdigest()}"
        images.append({"image_id": image_id, "reference": f"bench/app{i % 20}:v{i}", "repository": f"bench/app{i % 20}",
                       "tag": f"v{i}", "source": "synthetic", "layer_count": 10})
        chosen = [i % 50] + [int(x) for x in rng.integers(50, n_layers, 9)]  # a shared base, then own layers
        image_layers += [{"image_id": image_id, "position": p, "diff_id": diff_ids[d], "empty_layer": False}
                         for p, d in enumerate(chosen)]
    fds.write_part(out, "images", images)
    fds.write_part(out, "image_layers", image_layers)
    from layerkit.fleet.queries import refresh_contents

    t0 = time.perf_counter()
    refresh_contents(out)  # what a scan with --contents does when it commits
    print(f"  contents table (the end of a scan): {time.perf_counter() - t0:.2f} s")
    return out


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Build the inputs, run the measurements, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40, help="images in the scanned layout (0: skip)")
    ap.add_argument("--rows", type=int, default=10_000_000, help="file rows of the synthetic dataset (0: skip)")
    ap.add_argument("--unique", type=float, default=0.1, help="distinct contents per file row (default 0.1)")
    args = ap.parse_args()
    HERE.mkdir(parents=True, exist_ok=True)
    if args.images:
        layout, names = build_layout(args.images)
        one, two = scan_once(layout, 1), scan_once(layout, 2)
        sk = skopeo_all(layout, names)
        print(f"scan of {one['images']} images, {one['layers']} unique layers, {one['mb']:.1f} MB compressed, "
              f"{one['files']:,} entries")
        for label, r in (("1 worker ", one), ("2 workers", two)):
            rss = ", ".join(f"{x:.0f}" for x in r["rss"])
            print(f"  {label}: {r['seconds']:.2f} s, {r['mb'] / r['seconds']:.1f} MB/s, "
                  f"{r['files'] / r['seconds']:,.0f} files/s, worker peak RSS {rss} MB")
        print(f"  scaling efficiency 1 -> 2 workers: {one['seconds'] / two['seconds'] / 2:.2f}")
        print(f"  skopeo copy of every image into one layout: {sk:.2f} s; scan (2 workers) / skopeo: "
              f"{two['seconds'] / sk:.2f}")
    if args.rows:
        from layerkit.fleet import queries
        from layerkit.fleet.dataset import parts

        d = synthetic(args.rows, args.unique)
        size = sum(p.stat().st_size for t in ("files",) for p in parts(d, t))
        print(f"synthetic dataset: {args.rows:,} file rows, {args.unique:g} distinct contents per row, files table "
              f"{size / 1e6:.0f} MB "
              f"({size / 1e6 / (args.rows / 1e6):.1f} MB per million files)")
        print(f"  fleet summary:    {best_of(lambda: queries.summary(d)):.2f} s")
        print(f"  fleet duplicates: {best_of(lambda: queries.duplicates(d)):.2f} s")


if __name__ == "__main__":
    main()
