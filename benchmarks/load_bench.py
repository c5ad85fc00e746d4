"""``layerkit load`` speed and memory against ``skopeo copy`` (issue 2, "Speed and memory").

Builds, under ``.bench/load/``, a docker-archive of at least ``--size-mb`` MB (default 500) in several
layers made of real files from this machine (``/usr/lib``, ``/usr/share``, ``/usr/bin``, the Python
installs; directories are repeated under other prefixes if the machine has too little), then times in
one run, each command once as a warm-up and then ``--repeat`` times (median), with a fresh destination
each time:

- ``layerkit --store DIR load ARCHIVE`` (a child process; its peak RSS is read from ``wait4``),
- ``skopeo copy docker-archive:ARCHIVE oci:DIR:bench`` (the same work: every layer read, hashed and
  written to a content-addressed layout),
- ``sha256sum ARCHIVE`` as a floor (one read and one hash of every byte).

It prints the sizes, the times, the ratio layerkit / skopeo (target <= 1.0) and layerkit's peak RSS
(target < 200 MB). ``--profile`` runs ``load_path`` under cProfile in-process and prints the top entries.

Run: ``python -m benchmarks.load_bench [--size-mb 500] [--layers 6] [--repeat 3] [--rebuild]``.
Not collected by pytest (the test run's ``testpaths`` is ``tests``).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import itertools
import json
import os
import pstats
import shutil
import stat
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "load"
TAG = "bench/load:latest"

# real files; layer i is filled from source i first (shared libraries, data files, executables, the Python
# standard library, site-packages, the rest of /usr/lib), then from the next sources
SOURCES = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/share",
    "/usr/bin",
    sys.base_prefix + "/lib",
    sys.prefix + "/lib",
    "/usr/lib",
    "/usr/sbin",
    "/usr/libexec",
]


def _walk(src: str, skip: set[str], prefix: str) -> Iterator[tuple[str, str]]:
    """(path, name in the layer) for every entry below ``src``, sorted, leaving out the ``skip`` trees."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in skip)
        yield dirpath, prefix + dirpath.lstrip("/")
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            yield path, prefix + path.lstrip("/")


class FileSource:
    """Files of this machine to fill layers with; each source is walked once, then again as ``copyN/``."""

    def __init__(self, sources: list[str]) -> None:
        self.sources = list(dict.fromkeys(s for s in sources if os.path.isdir(s)))
        if not self.sources:
            raise SystemExit("no source directories found for the benchmark image")
        skip = set(self.sources)
        self.streams = [_walk(s, skip - {s}, "") for s in self.sources]
        self.spare = self._copies(skip)

    def _copies(self, skip: set[str]) -> Iterator[tuple[str, str]]:
        for rep in itertools.count(1):
            for s in self.sources:
                yield from _walk(s, skip - {s}, f"copy{rep}/")

    def for_layer(self, i: int) -> Iterator[tuple[str, str]]:
        """Entries for layer ``i``: its own source first, then whatever remains anywhere."""
        n = len(self.streams)
        return itertools.chain(*(self.streams[(i + k) % n] for k in range(n)), self.spare)


def build_layers(work: Path, size: int, nlayers: int) -> list[Path]:
    """Write ``nlayers`` layer tars of about ``size / nlayers`` bytes of file data each."""
    per_layer = size // nlayers + 1
    source = FileSource(SOURCES)
    paths = []
    for i in range(nlayers):
        p = work / f"layer{i}.tar"
        got = entries = 0
        with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.copybufsize = 1 << 20
            for path, name in source.for_layer(i):
                try:
                    st = os.lstat(path)
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                        continue
                    ti = tf.gettarinfo(path, arcname=name)
                    if ti.isreg():
                        with open(path, "rb") as f:
                            tf.addfile(ti, f)
                        got += ti.size
                    else:
                        tf.addfile(ti)
                    entries += 1
                except (OSError, ValueError):
                    continue  # unreadable or vanished: skip it
                if got >= per_layer:
                    break
        paths.append(p)
        print(f"  layer {i}: {got / 1e6:7.1f} MB of file data in {entries} entries", flush=True)
    return paths


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_archive(out: Path, size_mb: int, nlayers: int) -> None:
    """A classic docker-archive: ``CONFIG.json``, ``DIFFHEX/layer.tar`` per layer, ``manifest.json``."""
    work = out.parent / "layers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"building a {size_mb} MB image in {nlayers} layers under {out.parent} ...", flush=True)
    layers = build_layers(work, size_mb * 1_000_000, nlayers)
    hexes = [sha256_file(p) for p in layers]
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h for h in hexes]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"COPY layer {i} /"}
                    for i in range(nlayers)],
    }, separators=(",", ":")).encode()
    ch = hashlib.sha256(cfg).hexdigest()
    names = [f"{h}/layer.tar" for h in hexes]
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tf:
        tf.copybufsize = 1 << 20
        _add_bytes(tf, f"{ch}.json", cfg)
        for p, n in zip(layers, names, strict=True):
            tf.add(p, arcname=n)
        manifest = [{"Config": f"{ch}.json", "RepoTags": [TAG], "Layers": names}]
        _add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, out)
    (out.parent / "params.json").write_text(json.dumps({"size_mb": size_mb, "layers": nlayers}))
    shutil.rmtree(work)


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def run_child(argv: list[str]) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in bytes of that child alone, from ``wait4``)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def measure(commands: dict[str, object], repeat: int) -> dict[str, tuple[float, list[float], int]]:
    """Each command once as a warm-up, then ``repeat`` rounds taking the commands in turn.

    Every run gets a fresh destination and starts after a ``sync``, so no run pays for the write-back of
    the one before. Returns name -> (median seconds, times, max peak RSS of the timed runs).
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss = dict.fromkeys(commands, 0)
    for rnd in range(repeat + 1):
        for name, make_argv in commands.items():
            with tempfile.TemporaryDirectory(dir=HERE, prefix=f"{name}-") as d:
                os.sync()
                wall, peak = run_child(make_argv(Path(d) / "dest"))
            if rnd:  # round 0 is the warm-up (page cache, imports)
                times[name].append(wall)
                rss[name] = max(rss[name], peak)
    return {name: (statistics.median(ts), ts, rss[name]) for name, ts in times.items()}


def profile(archive: Path, top: int = 25) -> None:
    """Run ``load_path`` in-process under cProfile and print where the time goes."""
    from layerkit.engine.store import Store
    from layerkit.formats.load import load_path

    with tempfile.TemporaryDirectory(dir=HERE, prefix="profile-") as d:
        prof = cProfile.Profile()
        prof.enable()
        load_path(Store(Path(d) / "store"), str(archive))
        prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    """Build the image if needed, time the three commands, print the figures."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=500, help="file data in the image (default 500)")
    ap.add_argument("--layers", type=int, default=6, help="number of layers (default 6)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per command after a warm-up")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the archive even if it exists")
    ap.add_argument("--profile", action="store_true", help="also profile load_path in-process")
    a = ap.parse_args(argv)
    if not shutil.which("skopeo"):
        raise SystemExit("skopeo is not installed: apt-get install skopeo")

    HERE.mkdir(parents=True, exist_ok=True)
    archive = HERE / "image.tar"
    params = HERE / "params.json"
    wanted = {"size_mb": a.size_mb, "layers": a.layers}
    if a.rebuild or not archive.exists() or not params.exists() or json.loads(params.read_text()) != wanted:
        build_archive(archive, a.size_mb, a.layers)
    size = archive.stat().st_size
    with tarfile.open(archive) as tf:
        layer_sizes = [m.size for m in tf.getmembers() if m.name.endswith("/layer.tar")]
    print(f"archive: {archive} {size / 1e6:.1f} MB, {len(layer_sizes)} layers "
          f"({', '.join(f'{s / 1e6:.0f}' for s in layer_sizes)} MB)", flush=True)

    lk = [sys.executable, "-m", "layerkit"]
    res = measure({
        "layerkit": lambda d: lk + ["--store", str(d), "load", str(archive)],
        "skopeo": lambda d: ["skopeo", "copy", "--quiet", f"docker-archive:{archive}", f"oci:{d}:bench"],
        "sha256sum": lambda d: ["sha256sum", str(archive)],
    }, a.repeat)
    (t_lk, lk_times, lk_rss), (t_sk, sk_times, sk_rss) = res["layerkit"], res["skopeo"]
    t_sha, sha_times, _ = res["sha256sum"]

    def fmt(ts: list[float]) -> str:
        return ", ".join(f"{t:.2f}" for t in ts)

    mbps = size / 1e6
    print(f"layerkit load:  {t_lk:6.2f} s median ({fmt(lk_times)})  {mbps / t_lk:6.0f} MB/s  "
          f"peak RSS {lk_rss / 1e6:.0f} MB")
    print(f"skopeo copy:    {t_sk:6.2f} s median ({fmt(sk_times)})  {mbps / t_sk:6.0f} MB/s  "
          f"peak RSS {sk_rss / 1e6:.0f} MB")
    print(f"sha256sum:      {t_sha:6.2f} s median ({fmt(sha_times)})  {mbps / t_sha:6.0f} MB/s  (floor)")
    ratio = t_lk / t_sk
    print(f"ratio layerkit/skopeo: {ratio:.2f} (target <= 1.0)  "
          f"{'OK' if ratio <= 1.0 else 'ABOVE TARGET'}")
    print(f"layerkit peak RSS: {lk_rss / 1e6:.0f} MB (target < 200 MB)  "
          f"{'OK' if lk_rss < 200e6 else 'ABOVE TARGET'}")
    if a.profile:
        profile(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
