"""``layerkit build`` speed against ``buildah build --format docker --layers`` on the same Dockerfile (issue 14).

Under ``.bench/build/`` it makes, once (again with ``--rebuild``):

- a busybox base image (``/bin/busybox``, a symlink per applet, ``/tmp``) as a docker-archive (layerkit.examples);
- a build context of ``--context-mb`` MB (default 50) of incompressible files in ``data/`` plus ``last.txt``,
  and a 10-step Dockerfile: FROM, ENV, RUN, COPY of ``data/``, RUN reading it, ENV, WORKDIR, RUN, CMD, and a
  last COPY of ``last.txt``.

Then, each command in a child process (wall time; peak RSS and CPU of the child and what it waited for,
from ``wait4``), the two tools taking turns going first over ``--repeat`` rounds after a warm-up, every
cold build in fresh storage with the base image put in first (not timed):

- cold: ``layerkit --store S build -q -t bench:1 CTX`` against ``buildah --storage-driver vfs --root R
  --runroot RR build --runtime runc --format docker --layers --network none --pull=never -t bench:1 CTX``
  (DESIGN.md section 4's flags). Target: ratio at most 1.0.
- cached: the same build again in the same store, every step ``Using cache`` (checked). Target under 1 s.
- one step: ``last.txt`` changed, the build again: the 8 steps before the last COPY come from the cache
  and only that COPY runs (checked by counting ``Using cache``).

Run: ``python -m benchmarks.build_bench [--repeat 3] [--context-mb 50] [--profile]``. ``--profile`` runs a
cold build in-process under cProfile. Python's bytecode cache is allowed for layerkit's child (as an installed
package has one) whatever ``PYTHONDONTWRITEBYTECODE`` says. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from layerkit.examples import busybox_archive

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "build"
BASE = "localhost/bench-busybox:1"
RUNC = "/usr/sbin/runc"
DOCKERFILE = f"""FROM {BASE}
ENV APP=/app
RUN mkdir -p /app && echo built > /app/built
COPY data /app/data
RUN du -s /app/data > /app/du.txt
ENV MODE=prod
WORKDIR /app
RUN echo "$MODE" > mode.txt
CMD ["sh"]
COPY last.txt /app/last.txt
"""
STEPS = 10


def make_base(archive: Path) -> None:
    """The busybox base image (``/bin/busybox``, a symlink per applet, ``/tmp``) as a docker-archive."""
    if shutil.which("busybox") is None:
        raise SystemExit("busybox is not installed: apt-get install busybox-static")
    busybox_archive(archive, BASE)


def make_context(ctx: Path, mb: int) -> None:
    """``mb`` MB of random bytes in files of 1-4 MB under ``data/`` (seeded: the same context every time),
    ``last.txt`` and the Dockerfile."""
    rng = random.Random(14)
    data = ctx / "data"
    data.mkdir(parents=True)
    left, i = mb << 20, 0
    while left > 0:
        n = min(left, rng.randint(1 << 20, 4 << 20))
        (data / f"part-{i:03d}.bin").write_bytes(rng.randbytes(n))
        left -= n
        i += 1
    (ctx / "last.txt").write_text("version 0\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)


def run_child(argv: list[str]) -> tuple[float, int, float, str]:
    """Run a command; (wall seconds, peak RSS in bytes, CPU seconds, stdout), from ``wait4``: the child's
    figures include the processes it waited for (runc, the RUN steps)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, out.decode(errors="replace")


class Tools:
    """The two builders, each with fresh storage per cold build."""

    def __init__(self, layout: Path, ctx: Path) -> None:
        self.layout, self.ctx = layout, ctx
        self.lk = [sys.executable, "-m", "layerkit"]

    def buildah(self, root: Path) -> list[str]:
        return ["buildah", "--storage-driver", "vfs", "--root", str(root / "root"), "--runroot", str(root / "run")]

    def prepare(self, tool: str, d: Path) -> None:
        if tool == "layerkit":
            run_child(self.lk + ["--store", str(d / "store"), "load", str(self.layout)])
        else:
            subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{self.layout}",
                            f"containers-storage:[vfs@{d / 'root'}+{d / 'run'}]{BASE}"], check=True)

    def build(self, tool: str, d: Path) -> list[str]:
        if tool == "layerkit":
            return self.lk + ["--store", str(d / "store"), "build", "-t", "bench:1", str(self.ctx)]
        return self.buildah(d) + ["build", "--runtime", RUNC, "--ulimit", "nofile=1024:1024", "--ulimit",
                                  "nproc=1024:1024", "--format", "docker", "--layers", "--network", "none",
                                  "--pull=never", "-t", "bench:1", str(self.ctx)]

    def cleanup(self, tool: str, d: Path) -> None:
        if tool == "buildah":  # vfs layers may hold read-only directories; buildah removes its own
            subprocess.run(self.buildah(d) + ["rm", "--all"], capture_output=True)
            subprocess.run(self.buildah(d) + ["rmi", "--all", "--force"], capture_output=True)


def measure(tools: Tools, repeat: int, settle: float) -> dict[str, dict[str, list]]:
    """Cold, cached and one-step builds per tool, ``repeat`` rounds after a warm-up, taking turns."""
    names = ["layerkit", "buildah"]
    res: dict[str, dict[str, list]] = {n: {"cold": [], "cached": [], "one": [], "rss": [], "cpu": []} for n in names}
    for rnd in range(repeat + 1):
        for tool in names[rnd % 2:] + names[:rnd % 2]:
            (tools.ctx / "last.txt").write_text("version 0\n")
            with tempfile.TemporaryDirectory(dir=HERE, prefix=f"{tool}-") as tmp:
                d = Path(tmp)
                tools.prepare(tool, d)
                os.sync()
                time.sleep(settle)
                cold, peak, cpu, _ = run_child(tools.build(tool, d))
                cached, peak2, _, out = run_child(tools.build(tool, d))
                if tool == "layerkit" and out.count(" ---> Using cache") != STEPS - 1:
                    raise SystemExit(f"the rebuild was not fully cached:\n{out}")
                (tools.ctx / "last.txt").write_text(f"version {rnd + 1}\n")
                one, peak3, _, out = run_child(tools.build(tool, d))
                if tool == "layerkit" and out.count(" ---> Using cache") != STEPS - 2:
                    raise SystemExit(f"a change to the last COPY's input did not rebuild that step only:\n{out}")
                tools.cleanup(tool, d)
            if rnd:
                r = res[tool]
                r["cold"].append(cold)
                r["cached"].append(cached)
                r["one"].append(one)
                r["rss"].append(max(peak, peak2, peak3))
                r["cpu"].append(cpu)
    return res


def profile(tools: Tools, top: int = 25) -> None:
    """A cold build in-process under cProfile (RUN steps' processes are children, not profiled)."""
    from layerkit.engine.build.builder import build
    from layerkit.engine.store import Store
    from layerkit.formats.load import load_path

    with tempfile.TemporaryDirectory(dir=HERE, prefix="profile-") as d:
        store = Store(Path(d) / "store")
        load_path(store, str(tools.layout))
        prof = cProfile.Profile()
        prof.enable()
        build(store, tools.ctx, tags=["bench:1"])
        prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    """Make the inputs if needed, time the builds, print the figures."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.build_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds after a warm-up (default 3)")
    ap.add_argument("--context-mb", type=int, default=50, help="MB of files the big COPY copies (default 50)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before each cold build")
    ap.add_argument("--rebuild", action="store_true", help="make the base image and the context again")
    ap.add_argument("--profile", action="store_true", help="also profile a cold build in-process")
    a = ap.parse_args(argv)
    for tool in ("buildah", "skopeo"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: apt-get install {tool}")
    HERE.mkdir(parents=True, exist_ok=True)
    layout, ctx = HERE / "base.tar", HERE / "context"
    params = HERE / "params.json"
    wanted = {"context_mb": a.context_mb, "dockerfile": DOCKERFILE}
    if a.rebuild or not params.exists() or not layout.exists() or json.loads(params.read_text()) != wanted:
        for p in (layout, ctx):
            shutil.rmtree(p, ignore_errors=True)
        make_base(layout)
        make_context(ctx, a.context_mb)
        params.write_text(json.dumps(wanted))
    size = sum(f.stat().st_size for f in ctx.rglob("*") if f.is_file())
    print(f"context: {ctx} {size / 1e6:.1f} MB; Dockerfile of {STEPS} steps on busybox", flush=True)

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # layerkit's child keeps its bytecode, as an install does
    tools = Tools(layout, ctx)
    res = measure(tools, a.repeat, a.settle)

    def fmt(ts: list[float]) -> str:
        return ", ".join(f"{t:.2f}" for t in ts)

    for tool, r in res.items():
        print(f"{tool + ':':10} cold {statistics.median(r['cold']):.2f} s ({fmt(r['cold'])}), CPU "
              f"{statistics.median(r['cpu']):.2f} s; cached {statistics.median(r['cached']):.2f} s "
              f"({fmt(r['cached'])}); last COPY changed {statistics.median(r['one']):.2f} s ({fmt(r['one'])}); "
              f"peak RSS {max(r['rss']) / 1e6:.0f} MB")
    lk, bh = res["layerkit"], res["buildah"]
    ratio = statistics.median(lk["cold"]) / statistics.median(bh["cold"])
    cached = statistics.median(lk["cached"])
    print(f"cold ratio layerkit/buildah: {ratio:.2f} (target <= 1.0)  {'OK' if ratio <= 1.0 else 'ABOVE TARGET'}")
    print(f"layerkit fully cached rebuild: {cached:.2f} s (target < 1 s)  {'OK' if cached < 1.0 else 'ABOVE TARGET'}")
    print(f"layerkit after a change to the last COPY's input: {STEPS - 2} steps from the cache, 1 rebuilt (checked)")
    print(f"layerkit peak RSS: {max(lk['rss']) / 1e6:.0f} MB (target < 200 MB)  "
          f"{'OK' if max(lk['rss']) < 200e6 else 'ABOVE TARGET'}")
    if a.profile:
        profile(tools)
    return 0


if __name__ == "__main__":
    sys.exit(main())
