"""``layerkit load`` speed and memory against ``skopeo copy`` doing the same work (issues 2 and 13).

Builds, under ``.bench/load/``, a classic docker-archive of real files from this machine and reuses it on
later runs with the same options:

- by default the input issue 13 measured: one layer per directory of ``--dirs`` (default ``/usr/bin`` and
  ``/usr/lib/x86_64-linux-gnu``, about 1.1 GB in two layers), every entry of each tree;
- with ``--size-mb N [--layers K]`` the older generator: at least N MB of file data in K layers (default
  6) filled from ``/usr/lib``, ``/usr/share``, ``/usr/bin`` and the Python installs, directories repeated
  under other prefixes if the machine has too little.

Then it times, each command once as a warm-up and then ``--repeat`` rounds (default 5, at least 4; the
median is reported), the tools taking turns going first (round r starts with the r-th), every run with a
fresh destination, after a ``sync`` and ``--settle`` seconds (default 20) after the run before it
(see :func:`measure`):

- ``layerkit --store DIR load ARCHIVE`` (a child process; its peak RSS and CPU time come from ``wait4``),
- ``skopeo copy --dest-oci-accept-uncompressed-layers docker-archive:ARCHIVE oci:DIR:bench``: the same
  work, every layer read, hashed, written to a content-addressed layout and fsynced, stored as it came.
  Without that flag skopeo gzips every layer for an OCI destination, a different and slower job
  (``--skopeo-gzip`` adds that run as a row of its own, for reference only);
- ``sha256sum ARCHIVE`` as a reference point (one read and one hash of every byte).

It prints the sizes, the times, the ratio layerkit / skopeo (target <= 1.0) and layerkit's peak RSS
(target < 200 MB). ``--profile`` runs ``load_path`` under cProfile in-process and prints the top entries.

Run: ``python -m benchmarks.load_bench [--dirs DIR...] [--size-mb 500 --layers 6] [--repeat 5] [--rebuild]``.
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


DEFAULT_DIRS = ["/usr/bin", "/usr/lib/x86_64-linux-gnu"]


def _add_entry(tf: tarfile.TarFile, path: str, name: str) -> int:
    """Add one regular file, directory or symlink to ``tf``; returns the file bytes added (-1: skipped)."""
    try:
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return -1
        ti = tf.gettarinfo(path, arcname=name)
        if ti.isreg():
            with open(path, "rb") as f:
                tf.addfile(ti, f)
            return ti.size
        tf.addfile(ti)
        return 0
    except (OSError, ValueError):
        return -1  # unreadable or vanished: skip it


def build_dir_layers(work: Path, dirs: list[str]) -> list[Path]:
    """One layer tar per directory of ``dirs``, holding every entry of its tree (the input issue 13 measured)."""
    paths = []
    for i, d in enumerate(dirs):
        if not os.path.isdir(d):
            raise SystemExit(f"{d}: not a directory")
        p = work / f"layer{i}.tar"
        got = entries = 0
        with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.copybufsize = 1 << 20
            for path, name in _walk(d, set(), ""):
                n = _add_entry(tf, path, name)
                if n >= 0:
                    got += n
                    entries += 1
        paths.append(p)
        print(f"  layer {i} ({d}): {got / 1e6:7.1f} MB of file data in {entries} entries", flush=True)
    return paths


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
                n = _add_entry(tf, path, name)
                if n < 0:
                    continue
                got += n
                entries += 1
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


def build_archive(out: Path, size_mb: int | None = None, nlayers: int = 6, dirs: list[str] | None = None) -> None:
    """A classic docker-archive: ``CONFIG.json``, ``DIFFHEX/layer.tar`` per layer, ``manifest.json``; its
    layers one per directory of ``dirs``, else ``size_mb`` MB of file data in ``nlayers`` (the generator).
    Records what it was built from in ``params.json`` beside it."""
    work = out.parent / "layers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if dirs:
        print(f"building an image of {', '.join(dirs)}, one layer each, under {out.parent} ...", flush=True)
        layers = build_dir_layers(work, dirs)
        params: dict = {"dirs": dirs}
    else:
        if size_mb is None:
            raise ValueError("build_archive needs dirs or size_mb")
        print(f"building a {size_mb} MB image in {nlayers} layers under {out.parent} ...", flush=True)
        layers = build_layers(work, size_mb * 1_000_000, nlayers)
        params = {"size_mb": size_mb, "layers": nlayers}
    nlayers = len(layers)
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
    (out.parent / "params.json").write_text(json.dumps(params))
    shutil.rmtree(work)


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def run_child(argv: list[str]) -> tuple[float, int, float]:
    """Run a command; return (wall seconds, peak RSS in bytes and CPU seconds of that child alone, from
    ``wait4``)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # Linux: ru_maxrss in kilobytes


def measure(commands: dict[str, object], repeat: int, settle: float = 0.0
            ) -> dict[str, tuple[float, list[float], int, float]]:
    """Each command once as a warm-up, then ``repeat`` rounds taking the commands in turn.

    The commands take turns going first: round r starts with the r-th command and goes on in order. Every
    run gets a fresh destination and starts after a ``sync``, so no run pays for the write-back of the one
    before, and ``settle`` seconds after the run before it was cleaned up: on this virtual machine the
    page-cache pages a removed destination frees stay resident for about two seconds and are then handed
    back to the host, and filling pages the host must provide again costs 2-4 s of kernel time per GB
    written. Without the pause the run that follows a writer gets resident pages and the one that follows
    a reader does not, which in a fixed cycle of turns always favours the same tool. Returns name ->
    (median seconds, times, max peak RSS of the timed runs, median CPU seconds).
    """
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    rss = dict.fromkeys(names, 0)
    for rnd in range(repeat + 1):
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            with tempfile.TemporaryDirectory(dir=HERE, prefix=f"{name}-") as d:
                os.sync()
                wall, peak, cpu_s = run_child(commands[name](Path(d) / "dest"))
            os.sync()
            time.sleep(settle)
            if rnd:  # round 0 is the warm-up (page cache, imports)
                times[name].append(wall)
                cpu[name].append(cpu_s)
                rss[name] = max(rss[name], peak)
    return {name: (statistics.median(ts), ts, rss[name], statistics.median(cpu[name]))
            for name, ts in times.items()}


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
    """Build the image if needed, time the commands, print the figures."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--dirs", nargs="+", default=None, metavar="DIR",
                    help=f"one layer per directory (default: {' '.join(DEFAULT_DIRS)})")
    ap.add_argument("--size-mb", type=int, default=None,
                    help="instead of --dirs: generate this much file data from several directories")
    ap.add_argument("--layers", type=int, default=6, help="layers of the generated image (default 6)")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds after a warm-up (default 5, at least 4)")
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds to wait after each run, so no run inherits the pages the one before freed "
                         "(default 20; see measure)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the archive even if it exists")
    ap.add_argument("--skopeo-gzip", action="store_true",
                    help="also time skopeo's default copy into oci:, which gzips every layer (another job)")
    ap.add_argument("--profile", action="store_true", help="also profile load_path in-process")
    a = ap.parse_args(argv)
    if a.repeat < 4:
        ap.error("--repeat must be at least 4: a median of fewer runs says little on this disk")
    if a.dirs and a.size_mb:
        ap.error("--dirs and --size-mb choose different images; give one")
    if not shutil.which("skopeo"):
        raise SystemExit("skopeo is not installed: apt-get install skopeo")

    HERE.mkdir(parents=True, exist_ok=True)
    archive = HERE / "image.tar"
    params = HERE / "params.json"
    if a.size_mb:
        wanted: dict = {"size_mb": a.size_mb, "layers": a.layers}
    else:
        wanted = {"dirs": a.dirs or DEFAULT_DIRS}
    if a.rebuild or not archive.exists() or not params.exists() or json.loads(params.read_text()) != wanted:
        build_archive(archive, a.size_mb, a.layers, wanted.get("dirs"))
    size = archive.stat().st_size
    with tarfile.open(archive) as tf:
        layer_sizes = [m.size for m in tf.getmembers() if m.name.endswith("/layer.tar")]
    print(f"archive: {archive} {size / 1e6:.1f} MB, {len(layer_sizes)} layers "
          f"({', '.join(f'{s / 1e6:.0f}' for s in layer_sizes)} MB)", flush=True)

    lk = [sys.executable, "-m", "layerkit"]
    sk = ["skopeo", "copy", "--quiet"]
    commands = {
        "layerkit": lambda d: lk + ["--store", str(d), "load", str(archive)],
        "skopeo": lambda d: sk + ["--dest-oci-accept-uncompressed-layers", f"docker-archive:{archive}",
                                  f"oci:{d}:bench"],
        "sha256sum": lambda d: ["sha256sum", str(archive)],
    }
    if a.skopeo_gzip:
        commands["skopeo-gzip"] = lambda d: sk + [f"docker-archive:{archive}", f"oci:{d}:bench"]
    res = measure(commands, a.repeat, a.settle)

    def fmt(ts: list[float]) -> str:
        return ", ".join(f"{t:.2f}" for t in ts)

    mbps = size / 1e6
    shown = {"layerkit": "layerkit load", "skopeo": "skopeo copy", "sha256sum": "sha256sum",
             "skopeo-gzip": "skopeo (gzip)"}
    for name, (t, ts, peak, cpu_s) in res.items():
        rss = f"  peak RSS {peak / 1e6:.0f} MB" if name != "sha256sum" else "  (reference)"
        print(f"{shown[name] + ':':15} {t:6.2f} s median ({fmt(ts)})  {mbps / t:6.0f} MB/s  "
              f"CPU {cpu_s:.2f} s{rss}")
    (t_lk, _, lk_rss, _), (t_sk, _, _, _) = res["layerkit"], res["skopeo"]
    ratio = t_lk / t_sk
    print(f"ratio layerkit/skopeo --dest-oci-accept-uncompressed-layers: {ratio:.2f} (target <= 1.0)  "
          f"{'OK' if ratio <= 1.0 else 'ABOVE TARGET'}")
    print(f"layerkit peak RSS: {lk_rss / 1e6:.0f} MB (target < 200 MB)  "
          f"{'OK' if lk_rss < 200e6 else 'ABOVE TARGET'}")
    if a.profile:
        profile(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
