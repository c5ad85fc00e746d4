"""Union view and diff speed (issue: union view / containers).

Builds, under ``.bench/union``, an image of 100 layers holding 100,000 entries in all (small files of real
bytes, some overridden and deleted by upper layers), loads it, and prints from one run:

- resolving the union view from the layer blobs (tar headers read, no index cached) / GNU ``tar -t`` over
  the same layer tars (target <= 3);
- resolving it again from the cached per-layer indexes in a fresh process / ``tar -t`` (target < 0.5);
- ``diff`` of a container with 10 changes / listing the whole image (``ls -R``) (target < 0.05).

Run: ``python -m benchmarks.union_bench [--layers 100] [--entries 100000]``.
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

HERE = Path(__file__).resolve().parent.parent / ".bench" / "union"


def build_archive(out: Path, layers: int, entries: int, unique: bool = False) -> list[Path]:
    """A docker-archive of ``layers`` layers with ``entries`` tar entries in all (with ``unique``, every
    file has a path of its own, so the union view holds them all)."""
    work = out.parent / "layers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    per = entries // layers
    diff_ids, names, paths = [], [], []
    for i in range(layers):
        p = work / f"{i:03d}.tar"
        with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as tf:
            d = tarfile.TarInfo(f"d{i % 10}")
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            tf.addfile(d)
            for j in range(per - 1):
                data = hashlib.sha256(f"{i}-{j}".encode()).digest() * (1 + j % 8)
                name = f"d{i % 10}/f{j % 2000:05d}-{i // 10}" if j % 5 else f"d{i % 10}/shared{j:05d}"
                if unique:
                    name = f"d{i % 10}/l{i}/f{j:05d}" if j % 50 else f"d{i % 10}/shared{j:05d}"
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
            if i and i % 7 == 0:  # delete something from below
                wh = tarfile.TarInfo(f"d{(i - 1) % 10}/.wh.f00001-{(i - 1) // 10}")
                tf.addfile(wh)
        h = hashlib.sha256(p.read_bytes()).hexdigest()
        diff_ids.append("sha256:" + h)
        names.append(f"{h}/layer.tar")
        paths.append(p)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      "history": [{"created_by": f"layer {i}"} for i in range(layers)]}).encode()
    ch = hashlib.sha256(cfg).hexdigest()
    with tarfile.open(out, "w") as tf:
        ti = tarfile.TarInfo(f"{ch}.json")
        ti.size = len(cfg)
        tf.addfile(ti, io.BytesIO(cfg))
        for p, n in zip(paths, names, strict=True):
            tf.add(p, arcname=n)
        m = json.dumps([{"Config": f"{ch}.json", "RepoTags": ["bench:union"], "Layers": names}]).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(m)
        tf.addfile(ti, io.BytesIO(m))
    return paths


def drop_caches() -> bool:
    """Empty the page cache (root only), so that a measurement starts from a cold cache."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(fn, repeat: int = 3, cold: bool = False) -> float:
    """Best of ``repeat`` wall times (each after emptying the page cache when ``cold``)."""
    best = float("inf")
    for _ in range(repeat):
        if cold:
            drop_caches()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--unique", action="store_true", help="every file a path of its own (no overrides)")
    a = ap.parse_args()
    from layerkit.engine.container import find_container
    from layerkit.engine.layer import index_blob
    from layerkit.engine.store import Store
    from layerkit.engine.union import UnionView
    from layerkit.formats.load import load_path

    HERE.mkdir(parents=True, exist_ok=True)
    archive = HERE / "image.tar"
    layer_tars = build_archive(archive, a.layers, a.entries, unique=a.unique)
    store_dir = HERE / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = Store(store_dir)
    load_path(store, str(archive))
    img = store.image("bench:union")

    def tar_t() -> None:
        for p in layer_tars:
            subprocess.run(["tar", "-tf", str(p)], stdout=subprocess.DEVNULL, check=True)

    def cold() -> None:
        UnionView([index_blob(store.blobs, la.digest, "bench") for la in img.layers])

    code = ("import sys; from layerkit.engine.store import Store; s = Store(sys.argv[1]); "
            "s.image_view(s.image('bench:union'))")

    def cached() -> None:
        subprocess.run([sys.executable, "-c", code, str(store_dir)], check=True)

    def cached_in_process() -> None:
        fresh = Store(store_dir)  # nothing in memory: the per-layer index files are read again
        fresh.image_view(fresh.image("bench:union"))

    def empty_python() -> None:
        subprocess.run([sys.executable, "-c", "import layerkit.engine.store"], check=True)

    t_tar = timed(tar_t)
    t_cold = timed(cold)
    can_drop = drop_caches()
    t_tar_c = timed(tar_t, cold=True) if can_drop else float("nan")
    t_cold_c = timed(cold, cold=True) if can_drop else float("nan")
    t_cached = timed(cached) - timed(empty_python)
    t_cached_in = timed(cached_in_process)
    view = store.image_view(img)
    print(f"image: {a.layers} layers, {sum(len(la.index().entries) for la in img.layers)} tar entries, "
          f"{len(view)} paths in the union view")
    print(f"tar -t over the layers:          {t_tar:.3f}s")
    print(f"union view from blobs (no index), warm page cache: {t_cold:.3f}s   ratio {t_cold / t_tar:.2f}")
    if can_drop:
        print(f"cold page cache: tar -t {t_tar_c:.3f}s, union view from blobs {t_cold_c:.3f}s   "
              f"ratio {t_cold_c / t_tar_c:.2f} (target <= 3)")
    else:
        print("cold page cache: not measured (needs root to empty the page cache)")
    print(f"union view from cached indexes, fresh process (interpreter start subtracted): {t_cached:.3f}s   "
          f"ratio {t_cached / t_tar:.2f} (target < 0.5)")
    print(f"union view from cached indexes, fresh Store in this process: {t_cached_in:.3f}s   "
          f"ratio {t_cached_in / t_tar:.2f} (target < 0.5)")

    from layerkit.engine.container import create_container

    c = create_container(store, "bench:union", ["sh"], name=f"bench{os.getpid()}")
    for k in range(5):
        c.write(f"/new{k}", b"x" * 100)
    c.remove("/d1/shared00000")
    c.chmod("/d2/shared00050", 0o600)
    c.append("/d3/shared00100", b"more")
    c.mkdir("/newdir")
    c.symlink("/d1", "/link")

    def listing() -> None:
        fresh = Store(store_dir)
        list(fresh.image_view(fresh.image("bench:union")).walk("/"))

    def diff() -> None:
        fresh = Store(store_dir)
        find_container(fresh, c.name).diff()

    t_list = timed(listing)
    t_diff = timed(diff)
    print(f"ls -R of the image:              {t_list:.3f}s")
    print(f"diff of a container (10 changes): {t_diff:.3f}s   ratio {t_diff / t_list:.3f} (target < 0.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
