"""``pull`` and ``push`` speed against ``skopeo copy``, through a local ``docker-registry`` (issue 6, "Speed").

Builds, under ``.bench/registry/``, an image of at least ``--size-mb`` MB of real files (default 500) in
``--layers`` layers (default 6) with ``benchmarks.load_bench``'s archive builder, then turns it into an OCI
layout whose layers are gzip blobs (``--compression gzip``, the default; registries hold gzip layers, and
skopeo would gzip uncompressed layers on its side, which is not the same transfer) or left uncompressed
(``--compression none``), and loads that layout into a layerkit store. Then, in one run, each command once
as a warm-up and ``--repeat`` times (median), each a child process after a ``sync``, the tools taking
turns going first:

- push: ``layerkit`` (``registry.push`` from the store) and ``skopeo copy oci:LAYOUT docker://...`` (the
  same blobs), each into a registry started empty for that run;
- pull: ``layerkit`` (``registry.pull`` into an empty store: every blob streamed, its digest verified,
  fsynced; diff_ids are checked when a layer is first used) and ``skopeo copy docker://... oci:DIR`` (into
  an empty layout, the same work); also ``pull --verify`` (every layer inflated, its diff_id checked and
  its tar indexed during the pull);
- the first use of the image a plain pull brought in (``Store.image_view``: every layer inflated, its diff_id
  checked and its tar indexed, several at once), the cost a plain pull defers;
- a second push of the same image to the same registry: its time and the layer bytes it sent (target 0).

It prints sizes, times, MB/s, CPU seconds (user + system, median), peak RSS and the ratios layerkit / skopeo
(target <= 1.0). The CPU figure shows where a ratio comes from on a machine with few cores: ``pull --verify``
and the first use inflate and hash every layer tar (diff_id) and parse its headers, which
``skopeo copy ... oci:`` does not.

Run: ``python -m benchmarks.registry_bench [--size-mb 500] [--layers 6] [--repeat 5] [--compression gzip]``.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.load_bench import build_archive
from tests.services import ServiceError, start_registry

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".bench" / "registry"
NAME = "bench"  # the layout's ref.name (skopeo's oci:DIR:NAME); layerkit stores it as bench:latest
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layout(archive: Path, out: Path, compression: str) -> None:
    """An OCI layout of the docker-archive's image, layers gzip-compressed (isal, level 1) or as they are."""
    from isal import igzip

    shutil.rmtree(out, ignore_errors=True)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    with tarfile.open(archive) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())[0]
        config = tf.extractfile(manifest["Config"]).read()
        layers = []
        for name in manifest["Layers"]:
            tmp = out / "layer.tmp"
            src = tf.extractfile(name)
            if compression == "gzip":
                with igzip.open(tmp, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                media_type = OCI_LAYER + "+gzip"
            else:
                with open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                media_type = OCI_LAYER
            digest = _hash_file(tmp)
            os.replace(tmp, blobs / digest[7:])
            layers.append({"mediaType": media_type, "digest": digest, "size": (blobs / digest[7:]).stat().st_size})
    cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
    (blobs / cdigest[7:]).write_bytes(config)
    mbytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                         "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": len(config)},
                         "layers": layers}, separators=(",", ":")).encode()
    mdigest = "sha256:" + hashlib.sha256(mbytes).hexdigest()
    (blobs / mdigest[7:]).write_bytes(mbytes)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(mbytes),
         "annotations": {"org.opencontainers.image.ref.name": NAME}}]}))


def run_rss(argv: list[str]) -> tuple[float, int, str, float]:
    """Run a child after a sync; (wall seconds, its peak RSS in bytes, its stdout, its CPU seconds).

    The peak RSS comes from GNU ``time`` (``/usr/bin/time -f %M``) when it is there: ``wait4`` in this
    process would report at least this process's own RSS, which a forked child inherits as its high-water
    mark across ``exec``. Without GNU time the figure is an upper bound.
    """
    os.sync()
    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as rssf:
        full = [gnu_time, "-f", "%M", "-o", rssf.name, *argv] if gnu_time else argv
        t = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): "
                             f"{err.read().decode(errors='replace')[-2000:]}")
        rss = usage.ru_maxrss * 1024
        if gnu_time:
            text = rssf.read().strip().splitlines()
            rss = int(text[-1]) * 1024 if text and text[-1].isdigit() else rss
        cpu = usage.ru_utime + usage.ru_stime  # the child's and those of its children it waited for
        return wall, rss, out.read().decode(), cpu


def lk_push(store: Path, ref: str) -> list[str]:
    """A child that pushes the bench image and prints the result as JSON."""
    code = ("import json,sys; from layerkit.engine.store import Store; from layerkit.formats.registry import push; "
            f"print(json.dumps(push(Store({str(store)!r}), {NAME!r}, {ref!r}).to_json()))")
    return [sys.executable, "-c", code]


def lk_pull(store: Path, ref: str, verify: bool = False) -> list[str]:
    """A child that pulls into ``store`` and prints the result as JSON (``verify``: pull --verify)."""
    code = ("import json,sys; from layerkit.engine.store import Store; from layerkit.formats.registry import pull; "
            f"print(json.dumps(pull(Store({str(store)!r}), {ref!r}, verify={verify!r}).to_json()))")
    return [sys.executable, "-c", code]


def lk_first_use(store: Path, ref: str) -> list[str]:
    """A child that opens the union view of image ``ref`` in ``store`` (indexing every unchecked layer)."""
    code = ("from layerkit.engine.store import Store; s = Store(" + repr(str(store)) + "); "
            f"print(sum(1 for _ in s.image_view(s.image({ref!r})).entries()))")
    return [sys.executable, "-c", code]


def main(argv: list[str] | None = None) -> int:
    """Build what is needed, time pushes and pulls against skopeo, print the figures."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.registry_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=500, help="file data in the image (default 500)")
    ap.add_argument("--layers", type=int, default=6, help="number of layers (default 6)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per command after a warm-up")
    ap.add_argument("--compression", choices=["gzip", "none"], default="gzip", help="layer blobs (default gzip)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the image even if it exists")
    ap.add_argument("--containers-storage", action="store_true",
                    help="also time skopeo pulling into containers-storage (vfs), which decompresses and checks "
                         "diff_ids as layerkit does (and unpacks every file)")
    a = ap.parse_args(argv)
    skopeo = shutil.which("skopeo")
    if not skopeo:
        raise SystemExit("skopeo is not installed: apt-get install skopeo")

    from layerkit.engine.store import Store
    from layerkit.formats.load import load_path

    HERE.mkdir(parents=True, exist_ok=True)
    archive = HERE / "image.tar"
    params = HERE / "params.json"
    wanted = {"size_mb": a.size_mb, "layers": a.layers}
    rebuilt = False
    if a.rebuild or not archive.exists() or not params.exists() or json.loads(params.read_text()) != wanted:
        build_archive(archive, a.size_mb, a.layers)
        rebuilt = True
    layout = HERE / f"layout-{a.compression}"
    store = HERE / f"store-{a.compression}"
    if rebuilt or not (layout / "index.json").exists() or not (store / "index.json").exists():
        print(f"building the OCI layout ({a.compression} layers) and the layerkit store ...", flush=True)
        build_layout(archive, layout, a.compression)
        shutil.rmtree(store, ignore_errors=True)
        load_path(Store(store), f"{layout}:{NAME}")
    (store / "layerkit" / "registry.json").unlink(missing_ok=True)
    img = Store(store).image(NAME)
    blob_sizes = [la.compressed_size for la in img.layers]
    total = sum(blob_sizes)
    tar_total = sum(la.tar_size for la in img.layers)
    kind = "gzip" if a.compression == "gzip" else "uncompressed"
    print(f"image: {len(blob_sizes)} layers, {tar_total / 1e6:.0f} MB of layer tars, {total / 1e6:.0f} MB of "
          f"{kind} blobs to transfer ({', '.join(f'{s / 1e6:.0f}' for s in blob_sizes)} MB)", flush=True)

    work = Path(tempfile.mkdtemp(dir=HERE, prefix="run-"))
    keys = ["lk_push", "sk_push", "lk_pull", "sk_pull", "lk_pull_verify", "lk_first_use", "lk_push2"]
    keys += ["sk_storage"] if a.containers_storage else []
    times: dict[str, list[float]] = {k: [] for k in keys}
    rss: dict[str, int] = dict.fromkeys(times, 0)
    cpus: dict[str, list[float]] = {k: [] for k in keys}
    sent2: list[int] = []
    try:
        # pulls come from one registry that layerkit filled
        src = start_registry(work / "pull-registry", access_log=False)
        try:
            run_rss(lk_push(store, f"{src.host}/bench/pull:1"))
            for rnd in range(a.repeat + 1):
                # push: each tool into an empty registry
                # the tools take turns going first: on a shared disk the first run after the pushes'
                # writeback is slower, and a fixed order would charge that to one tool
                flip = slice(None, None, -1 if rnd % 2 else 1)
                for key in ("lk_push", "sk_push")[flip]:
                    (store / "layerkit" / "registry.json").unlink(missing_ok=True)
                    reg = start_registry(work / f"push-{key}-{rnd}", access_log=False)
                    try:
                        if key == "lk_push":
                            argv = lk_push(store, f"{reg.host}/bench/push:1")
                        else:
                            argv = [skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                                    f"oci:{layout}:{NAME}", f"docker://{reg.host}/bench/push:1"]
                        wall, peak, _, cpu = run_rss(argv)
                        if key == "lk_push":
                            # the same image again: every blob is there
                            wall2, _, out2, cpu2 = run_rss(lk_push(store, f"{reg.host}/bench/push:1"))
                    finally:
                        reg.stop()
                        shutil.rmtree(work / f"push-{key}-{rnd}", ignore_errors=True)
                    if rnd:
                        times[key].append(wall)
                        cpus[key].append(cpu)
                        rss[key] = max(rss[key], peak)
                        if key == "lk_push":
                            times["lk_push2"].append(wall2)
                            cpus["lk_push2"].append(cpu2)
                            sent2.append(json.loads(out2)["transferred_bytes"])
                # pull: each tool into an empty destination
                for key in [k for k in ("lk_pull", "sk_pull", "lk_pull_verify", "sk_storage")[flip] if k in times]:
                    dest = work / f"{key}-{rnd}"
                    if key in ("lk_pull", "lk_pull_verify"):
                        argv = lk_pull(dest, f"{src.host}/bench/pull:1", verify=key == "lk_pull_verify")
                    elif key == "sk_storage":
                        argv = [skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                                f"docker://{src.host}/bench/pull:1",
                                f"containers-storage:[vfs@{dest}/root+{dest}/run]{NAME}:1"]
                    else:
                        argv = [skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                                f"docker://{src.host}/bench/pull:1", f"oci:{dest}:{NAME}"]
                    wall, peak, out, cpu = run_rss(argv)
                    if key in ("lk_pull", "lk_pull_verify"):
                        res = json.loads(out)
                        assert res["image_id"] == img.id and res["transferred_bytes"] == total, res
                    if key == "lk_pull":
                        wall1, peak1, _, cpu1 = run_rss(lk_first_use(dest, f"{src.host}/bench/pull:1"))
                        if rnd:
                            times["lk_first_use"].append(wall1)
                            cpus["lk_first_use"].append(cpu1)
                            rss["lk_first_use"] = max(rss["lk_first_use"], peak1)
                    if key == "sk_storage":  # vfs layers are plain directories, some read-only
                        subprocess.run(["chmod", "-R", "u+w", str(dest)], check=False)
                    shutil.rmtree(dest, ignore_errors=True)
                    if rnd:
                        times[key].append(wall)
                        cpus[key].append(cpu)
                        rss[key] = max(rss[key], peak)
        finally:
            src.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}

    def line(label: str, key: str) -> str:
        ts = ", ".join(f"{t:.2f}" for t in times[key])
        return (f"{label:<25}{med[key]:6.2f} s median ({ts})  {total / 1e6 / med[key]:6.0f} MB/s  "
                f"CPU {statistics.median(cpus[key]):.2f} s  peak RSS {rss[key] / 1e6:.0f} MB")

    print(line("layerkit push:", "lk_push"))
    print(line("skopeo copy (push):", "sk_push"))
    print(line("layerkit pull:", "lk_pull"))
    print(line("skopeo copy (pull):", "sk_pull"))
    print(line("layerkit pull --verify:", "lk_pull_verify"))
    print(line("first use after a pull:", "lk_first_use"))
    if "sk_storage" in times:
        print(line("skopeo to c-storage:", "sk_storage"))
    for what, lk, sk in (("push", "lk_push", "sk_push"), ("pull", "lk_pull", "sk_pull")):
        ratio = med[lk] / med[sk]
        print(f"ratio layerkit/skopeo {what}: {ratio:.2f} (target <= 1.0)  {'OK' if ratio <= 1.0 else 'ABOVE TARGET'}")
    print(f"ratio layerkit pull --verify (every layer inflated, diff_id checked, indexed) / skopeo: "
          f"{med['lk_pull_verify'] / med['sk_pull']:.2f}; plain pull + first use / skopeo: "
          f"{(med['lk_pull'] + med['lk_first_use']) / med['sk_pull']:.2f}")
    print(f"second push: {med['lk_push2']:.2f} s median ({', '.join(f'{t:.2f}' for t in times['lk_push2'])}), "
          f"layer bytes sent {max(sent2)} (target 0)  {'OK' if max(sent2) == 0 else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ServiceError as exc:
        raise SystemExit(str(exc)) from None
