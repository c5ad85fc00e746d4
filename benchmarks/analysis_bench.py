"""Analysis speed (issue: analysis, DataFrames, plots, reports).

Prints from one run:
- the frames (files, layers, history, per-layer changes) and dive's efficiency for an image of 100,000
  files whose layers are already indexed (target: under 2 s);
- an HTML report of 20 images (target: under 10 s).

Run: ``python -m benchmarks.analysis_bench``. Data under ``.bench/analysis`` (git-ignored).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from benchmarks.union_bench import build_archive

HERE = Path(__file__).resolve().parent.parent / ".bench" / "analysis"


def main() -> int:
    import pandas as pd

    from layerkit import commands
    from layerkit.engine import analysis
    from layerkit.engine.container import find_container
    from layerkit.engine.efficiency import analyze
    from layerkit.engine.store import Store
    from layerkit.examples import busybox_archive
    from layerkit.formats.load import load_path
    from layerkit.notebook import frames
    from layerkit.notebook.report import write_report

    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    archive = HERE / "big.tar"
    build_archive(archive, layers=20, entries=102_000, unique=True)
    store = Store(HERE / "store")
    load_path(store, str(archive))
    img = store.image("bench:union")
    for layer in img.layers:
        layer.index()  # indexed once, as after a load

    fresh = Store(HERE / "store")  # a new process's view: indexes on disk, nothing in memory
    t0 = time.perf_counter()
    im = fresh.image("bench:union")
    f_files = frames.files(analysis.files(fresh, im))
    f_layers = frames.layers(commands.layers(fresh, "bench:union"))
    f_hist = frames.history(commands.history(fresh, "bench:union"))
    f_changes = pd.concat([frames.layer_files(analysis.layer_files(fresh, im, i)).assign(layer=i)
                           for i in range(len(im.diff_ids))])
    t1 = time.perf_counter()
    eff = analyze([layer.index() for layer in im.layers])
    t2 = time.perf_counter()
    print(f"image: {len(im.diff_ids)} layers, {len(f_files)} paths in the union view, "
          f"{len(f_changes)} per-layer changes, {len(f_layers)} layer rows, {len(f_hist)} history rows")
    print(f"frames: {t1 - t0:.2f}s  efficiency: {t2 - t1:.2f}s  total {t2 - t0:.2f}s (target < 2 s)"
          f"  [efficiency {eff.efficiency:.4f}]")

    # 20 images: busybox plus 19 one-layer variants committed from containers
    small = Store(HERE / "twenty")
    load_path(small, str(busybox_archive(HERE / "bb.tar")))
    names = ["busybox"]
    for n in range(19):
        c = commands.create(small, "busybox", ["sh"], name=f"c{n}").data["id"]
        ctr = find_container(small, c)
        ctr.mkdir("/data")
        ctr.write(f"/data/file{n}", bytes(range(256)) * (40 * (n + 1)))
        commands.commit(small, c, f"app{n}:v1")
        names.append(f"app{n}:v1")
    t3 = time.perf_counter()
    out = write_report(Store(HERE / "twenty"), names, str(HERE / "report20.html"))
    t4 = time.perf_counter()
    print(f"report of {len(names)} images: {t4 - t3:.2f}s (target < 10 s), {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
