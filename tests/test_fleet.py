"""``layerkit scan`` and ``layerkit fleet``: the Parquet dataset built on Dask and queried in DuckDB.

The images are real: the session's podman/buildah images exported by podman and skopeo (conftest.py
``exports``), plus small layouts made here where a test needs a layer that lies. What they are checked
against is real too: GNU ``tar -t`` lists each layer blob, skopeo names each image's diff_ids,
``layerkit efficiency`` (dive's analysis, checked against dive itself in test_efficiency.py) scores each
image, and a ``dask scheduler`` with ``dask worker`` processes started here runs one scan.

Most scans run on a LocalCluster of threads (``processes=False``: a worker process costs seconds to start);
two run real worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:  # a missing extra fails the run, naming what to install (nothing is skipped in CI)
    import distributed  # noqa: F401
    import duckdb  # noqa: F401
    import pyarrow.parquet as pq
except ImportError as exc:
    raise ImportError(f"{exc.name} is missing: pip install 'layerkit[fleet]' (pyarrow, duckdb, distributed)") \
        from exc

from builders import WH, F, S, layer_tar, write_layout  # noqa: E402
from realtools import require, run, run_bytes, skopeo_config, skopeo_copy  # noqa: E402

from layerkit import commands  # noqa: E402
from layerkit.cli import main  # noqa: E402
from layerkit.engine.store import Store  # noqa: E402
from layerkit.examples import start_registry  # noqa: E402
from layerkit.fleet import dataset as ds  # noqa: E402
from layerkit.fleet import queries  # noqa: E402
from layerkit.fleet.scan import LayerTask, Locator, index_layer, scan  # noqa: E402

pytestmark = pytest.mark.tools
ROOT = Path(__file__).resolve().parents[1]


def table(dataset: Path, name: str) -> list[dict]:
    """Every row of one table of the dataset."""
    ps = ds.parts(dataset, name)
    if not ps:
        return []
    return pq.read_table(dataset / name, schema=ds.SCHEMAS[name]).to_pylist()


def gnu_tar_members(blob: Path) -> list[tuple[str, str]]:
    """What GNU tar lists in a layer blob (gzip and zstd detected by tar): ``(clean absolute path, name as
    written)`` in tar order; the root itself is not an entry."""
    out = run(["tar", "-tf", str(blob)])
    names = []
    for line in out.splitlines():
        p = line.rstrip("\n")
        while p.startswith("./"):
            p = p[2:]
        p = p.strip("/")
        if p and p != ".":
            names.append(("/" + p, line))
    return names


def layout_blobs(layout: Path) -> dict[str, Path]:
    """digest -> blob file of an OCI layout."""
    return {"sha256:" + p.name: p for p in (layout / "blobs" / "sha256").iterdir()}


def layout_layers(layout: Path) -> dict[str, Path]:
    """diff_id -> blob file, for every image of an OCI layout (read from its index, manifests, configs)."""
    blobs = layout_blobs(layout)
    out: dict[str, Path] = {}
    for desc in json.loads((layout / "index.json").read_text())["manifests"]:
        manifest = json.loads(blobs[desc["digest"]].read_text())
        config = json.loads(blobs[manifest["config"]["digest"]].read_text())
        for diff_id, ld in zip(config["rootfs"]["diff_ids"], manifest["layers"], strict=True):
            out[diff_id] = blobs[ld["digest"]]
    return out


def skopeo_diff_ids(ref: str) -> list[str]:
    """The image's diff_ids as skopeo reads its config."""
    return skopeo_config(ref)[1]["rootfs"]["diff_ids"]


@pytest.fixture(scope="module")
def scanned(exports, multi_image, base_image, tmp_path_factory) -> dict:
    """Real exports scanned together (docker-archive of both images with all their names, OCI layouts
    plain and gzip) into one dataset with --contents, on two threads of a LocalCluster."""
    out = tmp_path_factory.mktemp("fleet") / "ds"
    sources = [f"docker-archive:{exports['all-docker-archive'].path}",
               exports["skopeo-oci-layout-plain"].ref, exports["skopeo-oci-layout-gzip"].ref]
    res = scan(sources, str(out), workers=2, contents=True, processes=False)
    return {"dataset": out, "result": res, "sources": sources}


def test_scan_counts_equal_what_the_sources_hold(scanned, exports, multi_image, base_image) -> None:
    """Two images (the base and the multi image, the latter in three sources and under three names); each
    unique layer once, whatever number of sources and images share it; the layer list of each image is the
    diff_ids skopeo reads from its config."""
    d = scanned["dataset"]
    res = scanned["result"]
    assert res.failures == 0, res.failure_rows
    images = table(d, "images")
    assert {r["image_id"] for r in images} == {multi_image.id, base_image.id}
    multi_refs = {r["reference"] for r in images if r["image_id"] == multi_image.id}
    from layerkit.engine.reference import parse_reference

    assert {parse_reference(t).normalized for t in multi_image.tags} <= multi_refs
    base_ids = skopeo_diff_ids(f"docker-archive:{exports['base-docker-archive'].path}")
    multi_ids = skopeo_diff_ids(exports["skopeo-oci-layout-plain"].ref)
    layers = table(d, "layers")
    assert sorted(r["diff_id"] for r in layers) == sorted(set(base_ids) | set(multi_ids))
    il = table(d, "image_layers")
    for image_id, ids in ((multi_image.id, multi_ids), (base_image.id, base_ids)):
        rows = sorted((r for r in il if r["image_id"] == image_id and r["position"] is not None),
                      key=lambda r: r["position"])
        assert [r["diff_id"] for r in rows] == ids
    # the empty-layer history rows (ENV, LABEL, CMD) are there too
    assert any(r["empty_layer"] and "ENV" in (r["created_by"] or "") for r in il if r["image_id"] == multi_image.id)
    # summary agrees with the tables
    _, (s,) = queries.summary(d)
    assert (s["images"], s["layers"]) == (2, len(set(base_ids) | set(multi_ids)))
    assert s["layer_references"] == len(base_ids) + len(multi_ids)
    assert s["image_bytes"] > s["layer_bytes"]  # the base layer is counted once per image that uses it
    assert s["layer_dedup_ratio"] == pytest.approx(s["image_bytes"] / s["layer_bytes"])


def test_files_table_equals_gnu_tar_listing_of_every_blob(scanned, exports) -> None:
    """Every layer's rows, in order, are what GNU tar lists in its blob (gzip blobs read by tar too); with
    --contents each regular file's sha256 is that of what tar extracts."""
    d = scanned["dataset"]
    files = table(d, "files")
    by_layer: dict[str, list[dict]] = {}
    for r in files:
        by_layer.setdefault(r["diff_id"], []).append(r)
    layers = {r["diff_id"]: r for r in table(d, "layers")}
    gzip_blobs = layout_layers(exports["skopeo-oci-layout-gzip"].path)
    checked = hashed = 0
    for diff_id, layer in layers.items():
        rows = sorted(by_layer.get(diff_id, []), key=lambda r: r["seq"])
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        assert layer["entries"] == len(rows)
        # whichever source it was indexed from, GNU tar lists the same members in the gzip blob (the multi
        # image holds the base's layer too)
        members = gnu_tar_members(gzip_blobs[diff_id])
        assert [r["path"] for r in rows] == [m[0] for m in members], diff_id
        for r, (_, raw) in zip(rows, members, strict=True):
            if r["type"] == "file" and r["size"] < 1 << 20:  # what tar extracts hashes to the row's sha256
                data = run_bytes(["tar", "-xOf", str(gzip_blobs[diff_id]), raw])
                assert (len(data), hashlib.sha256(data).hexdigest()) == (r["size"], r["sha256"]), r["path"]
                hashed += 1
        checked += 1
    assert checked == len(layers) and hashed >= 5
    assert all(r["sha256"] is not None for r in files if r["type"] == "file")
    assert all(r["sha256"] is None for r in files if r["type"] != "file")


@pytest.mark.parametrize("key,compression", [("skopeo-oci-layout-gzip", "gzip"), ("skopeo-oci-layout-zstd", "zstd"),
                                             ("podman-oci-archive", None)])
def test_every_format_gives_the_same_rows(scanned, exports, tmp_path, key, compression) -> None:
    """The same image from a gzip layout, a zstd layout and podman's OCI archive: each inflated and checked
    (diff_id) by its worker, the same files rows as from the docker-archive the shared dataset read first."""
    out = tmp_path / "ds"
    res = scan([exports[key].ref], str(out), workers=1, contents=True, processes=False)
    assert res.failures == 0, res.failure_rows
    if compression:
        assert {r["compression"] for r in table(out, "layers")} == {compression}
    mine = {r["diff_id"] for r in table(out, "layers")}
    cols = ("diff_id", "seq", "path", "type", "size", "mode", "uid", "gid", "mtime", "link", "sha256")
    want = sorted(tuple(r[k] for k in cols) for r in table(scanned["dataset"], "files") if r["diff_id"] in mine)
    assert sorted(tuple(r[k] for k in cols) for r in table(out, "files")) == want and want


def test_fleet_waste_equals_layerkit_efficiency(scanned, exports, tmp_path, base_image, multi_image) -> None:
    """dive's figures computed in SQL from the files table equal ``layerkit efficiency`` of each image
    loaded into a store (the multi image deletes a file and a directory, rewrites a file and hardlinks)."""
    store = Store(tmp_path / "store")
    commands.load(store, str(exports["all-docker-archive"].path))
    _, rows = queries.waste(scanned["dataset"])
    got = {r["image_id"]: r for r in rows}
    assert set(got) == {base_image.id, multi_image.id}
    for image_id, row in got.items():
        want = commands.efficiency(store, image_id).to_json()
        assert row["efficiency"] == pytest.approx(want["efficiency"], abs=1e-12), image_id
        for k in ("size_bytes", "user_size_bytes", "wasted_bytes", "reclaimable_bytes"):
            assert row[k] == want[k], (image_id, k)
        assert row["inefficient_files"] == len(want["inefficient_files"])
        assert row["user_wasted_percent"] == (pytest.approx(want["user_wasted_percent"])
                                              if want["user_wasted_percent"] is not None else None)
    assert got[multi_image.id]["wasted_bytes"] > 0  # the rewritten config.txt and the deleted files

    # the store as a source: the same layers, indexed again from the store's blobs, give the same rows
    out = tmp_path / "from-store"
    res = scan(["store:"], str(out), store=store, workers=1, processes=False)
    assert res.failures == 0, res.failure_rows
    key = ("diff_id", "seq", "path", "type", "size", "mode", "uid", "gid", "mtime", "link")
    mine = sorted(tuple(r[k] for k in key) for r in table(out, "files"))
    theirs = sorted(tuple(r[k] for k in key) for r in table(scanned["dataset"], "files"))
    assert mine == theirs
    _, rows2 = queries.waste(out)
    assert {r["image_id"]: r["wasted_bytes"] for r in rows2} == {k: v["wasted_bytes"] for k, v in got.items()}


def test_bases_is_the_shared_chain_of_the_base_image(scanned, base_image, multi_image, capsys) -> None:
    """The multi image is built FROM the base: their one shared chain is the base's layer, shared by two
    images, saving its size once; ``fleet bases`` prints it."""
    layers = {r["diff_id"]: r for r in table(scanned["dataset"], "layers")}
    base_layers = [r["diff_id"] for r in table(scanned["dataset"], "image_layers")
                   if r["image_id"] == base_image.id and r["position"] is not None]
    _, rows = queries.bases(scanned["dataset"])
    assert [(r["depth"], r["top_layer"], r["parent_chain"], r["images"], r["base"]) for r in rows] == \
        [(1, base_layers[0], [], 2, True)]
    assert rows[0]["size"] == layers[base_layers[0]]["size"] == rows[0]["saved_bytes"]
    assert main(["fleet", "bases", str(scanned["dataset"])]) == 0
    out = capsys.readouterr().out
    assert "DEPTH" in out and base_layers[0].split(":")[1][:12] in out and "base" in out


def test_second_scan_adds_nothing(scanned) -> None:
    """The same sources again: no image or layer is planned, no part is added or changed."""
    d = scanned["dataset"]
    before = {t: sorted(p.name for p in ds.parts(d, t)) for t in ds.TABLES}
    res = scan(scanned["sources"], str(d), workers=1, contents=True, processes=False)
    assert (res.images, res.layers, res.failures) == (0, 0, 0)
    assert res.skipped_images > 0 and res.skipped_layers > 0
    assert {t: sorted(p.name for p in ds.parts(d, t)) for t in ds.TABLES} == before


# ---- layers that lie, and sources that are not there ---------------------------------------------------

def _small_layouts(root: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """Two layouts sharing a base layer; returns them and the layers by name."""
    base = layer_tar([F("etc/os-release", b"ID=test\n"), F("bin/tool", b"\x7fELF" + b"x" * 3000)])
    app = layer_tar([F("app/main.py", b"print('hi')\n"), S("app/link", "main.py"), WH("etc/os-release")])
    other = layer_tar([F("srv/data.bin", b"d" * 5000)])
    a = write_layout(root / "a", [base, app], "app:1")
    b = write_layout(root / "b", [base, other], "other:1")
    return a, b, {"base": base, "app": app, "other": other}


def test_lying_blob_missing_blob_and_bad_sources_are_failures(tmp_path) -> None:
    """A blob whose bytes do not hash to its digest, a layout whose blob file is gone, a source that does not
    exist and a registry nobody serves each become a failures row naming what is wrong; every other layer and
    image is indexed, and the lying layer leaves no files rows."""
    a, b, layers = _small_layouts(tmp_path)
    blobs = layout_blobs(b)
    other_digest = "sha256:" + hashlib.sha256(layers["other"]).hexdigest()
    data = bytearray(blobs[other_digest].read_bytes())
    data[600] ^= 0xFF  # inside the file's data: still a valid tar, the same size, another digest
    blobs[other_digest].write_bytes(bytes(data))
    app_digest = "sha256:" + hashlib.sha256(layers["app"]).hexdigest()
    layout_blobs(a)[app_digest].unlink()
    out = tmp_path / "ds"
    res = scan([f"oci:{a}", f"oci:{b}", f"oci:{tmp_path / 'nowhere'}", "docker://127.0.0.1:1/x:y"], str(out),
               workers=1, processes=False)
    fails = table(out, "failures")
    by_diff = {f["diff_id"]: f for f in fails if f["stage"] == "layer"}
    assert by_diff[other_digest]["error"] == "DigestMismatch"
    assert other_digest in by_diff[other_digest]["reason"]
    src_fails = {f["source"]: f for f in fails if f["stage"] == "source"}
    # an OCI layout refuses to list an image whose blob is missing: that source is the failure, named
    assert src_fails[f"oci:{a}"]["error"] == "BlobNotFound"
    assert app_digest.split(":")[1] in src_fails[f"oci:{a}"]["reason"]
    assert "no such file" in src_fails[f"oci:{tmp_path / 'nowhere'}"]["reason"]
    assert "connection refused" in src_fails["docker://127.0.0.1:1/x:y"]["reason"]  # nothing serves port 1
    assert res.failures == 4
    base_diff = "sha256:" + hashlib.sha256(layers["base"]).hexdigest()
    assert [r["diff_id"] for r in table(out, "layers")] == [base_diff]
    assert {r["diff_id"] for r in table(out, "files")} == {base_diff}
    assert len(table(out, "images")) == 1  # image b is listed; its lying layer is a failure
    assert queries.waste(out)[1] == []  # no image is complete, so none is scored

    # the blob repaired and put back: a re-scan indexes exactly the two missing layers
    blobs[other_digest].write_bytes(layers["other"])
    (a / "blobs" / "sha256" / app_digest.split(":")[1]).write_bytes(layers["app"])
    res2 = scan([f"oci:{a}", f"oci:{b}"], str(out), workers=1, processes=False)
    assert (res2.images, res2.layers, res2.failures) == (1, 2, 0)
    assert len(queries.waste(out)[1]) == 2


def test_a_lying_copy_falls_back_to_another_source(tmp_path) -> None:
    """The same layer in two layouts, the first copy lying: the layer is still indexed once, from the second
    copy, and nothing is a failure; with no good copy left the failure counts the copies tried."""
    a, b, layers = _small_layouts(tmp_path)
    good = write_layout(tmp_path / "good", [layers["other"]], "good:1")
    other = "sha256:" + hashlib.sha256(layers["other"]).hexdigest()
    blob = layout_blobs(b)[other]
    data = bytearray(blob.read_bytes())
    data[600] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "ds"
    res = scan([f"oci:{b}", f"oci:{good}"], str(out), workers=1, processes=False)
    assert res.failures == 0 and res.layers == 2, res.failure_rows
    assert sum(1 for r in table(out, "files") if r["diff_id"] == other) == 1
    layout_blobs(good)[other].write_bytes(bytes(data))  # now both copies lie
    out2 = tmp_path / "ds2"
    res = scan([f"oci:{b}", f"oci:{good}"], str(out2), workers=1, processes=False)
    (f,) = res.failure_rows
    assert f["error"] == "DigestMismatch" and f["reason"].endswith("(1 other copies failed too)"), f
    assert not [r for r in table(out2, "files") if r["diff_id"] == other]


def test_not_a_tar_is_a_failure(tmp_path) -> None:
    """A layer whose digest and diff_id are right but whose bytes are no tar: InvalidArchive, no rows."""
    junk = b"this is not a tar archive\n" * 40
    lay = write_layout(tmp_path / "l", [junk], "junk:1")
    out = tmp_path / "ds"
    res = scan([f"oci:{lay}"], str(out), workers=1, processes=False)
    (f,) = res.failure_rows
    assert f["error"] == "InvalidArchive" and "not a valid tar" in f["reason"], f
    assert table(out, "files") == [] and table(out, "layers") == []


def test_names_that_are_not_utf8(tmp_path) -> None:
    """A Latin-1 file name in a layer (GNU tar, as old tools write them) and a lone surrogate in a history
    entry: both are written, the bytes that are not UTF-8 as ``\\xNN`` escapes; nothing fails."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        ti = tarfile.TarInfo("caf\xe9.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"ok"))
    lay = write_layout(tmp_path / "l", [buf.getvalue()], "latin:1")
    # a history entry with a lone surrogate, as a JSON escape can make one
    index = json.loads((lay / "index.json").read_text())
    blobs = layout_blobs(lay)
    manifest = json.loads(blobs[index["manifests"][0]["digest"]].read_text())
    cpath = blobs[manifest["config"]["digest"]]
    cpath.write_text(cpath.read_text().replace('"layer 0"', '"RUN \\udc80"'))
    cdigest = "sha256:" + hashlib.sha256(cpath.read_bytes()).hexdigest()
    cpath.rename(cpath.with_name(cdigest.split(":")[1]))
    manifest["config"].update(digest=cdigest, size=cpath.with_name(cdigest.split(":")[1]).stat().st_size)
    mbytes = json.dumps(manifest).encode()
    mdigest = hashlib.sha256(mbytes).hexdigest()
    (lay / "blobs" / "sha256" / mdigest).write_bytes(mbytes)
    index["manifests"][0].update(digest="sha256:" + mdigest, size=len(mbytes))
    (lay / "index.json").write_text(json.dumps(index))
    out = tmp_path / "ds"
    res = scan([f"oci:{lay}"], str(out), workers=1, processes=False)
    assert res.failures == 0, res.failure_rows
    assert [r["path"] for r in table(out, "files")] == ["/caf\\xe9.txt"]
    # the lone surrogate is read as the escaped byte it stands for (surrogateescape), then escaped as text
    assert [r["created_by"] for r in table(out, "image_layers")] == ["RUN \\x80"]


def test_a_task_run_twice_writes_the_same_parts(tmp_path) -> None:
    """What Dask does when a worker dies after writing: the task runs again. Its parts come out with the
    same names and bytes, so the files table holds each row once."""
    a, _, layers = _small_layouts(tmp_path)
    digest = "sha256:" + hashlib.sha256(layers["base"]).hexdigest()
    task = LayerTask(digest, digest, len(layers["base"]), "base", Locator("file", str(layout_blobs(a)[digest])),
                     "test")
    out = tmp_path / "ds"
    ds.create(out)
    def parts() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ds.parts(out, "files")}

    first = index_layer(task, str(out), contents=True)
    written = parts()
    second = index_layer(task, str(out), contents=True)
    assert parts() == written and len(written) == 1  # the same names, the same bytes
    assert first["layer"]["entries"] == second["layer"]["entries"] == len(table(out, "files")) == 2
    # parts of a layer that was never committed (the client died) go before the next scan plans
    assert ds.remove_orphans(out) == 1 and ds.parts(out, "files") == []


# ---- real worker processes -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scan_on_a_dask_scheduler_with_worker_processes(tmp_path) -> None:
    """``layerkit scan --scheduler``: a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1,
    started here and stopped by PID; the workers open the layers from the layout themselves, and, scanning a
    real ``docker-registry`` that ``skopeo copy`` filled with the same images, fetch the blobs from it
    themselves: the same rows. A scan of the registry loses a worker in the middle of a layer and still
    writes every row once. Then the CLI answers ``fleet`` questions about the first dataset."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.fail("the dask command is missing: pip install 'layerkit[fleet]' (distributed)")
    require("tar")
    a, b, _ = _small_layouts(tmp_path)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    log = open(tmp_path / "dask.log", "wb")
    registry = start_registry(tmp_path / "registry", access_log=False)
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=log, stderr=log, env=env, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    pytest.fail(f"dask scheduler did not start: {(tmp_path / 'dask.log').read_text()[-2000:]}")
                time.sleep(0.2)
        for n in range(2):
            procs.append(subprocess.Popen([str(dask), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                           "--host", "127.0.0.1", "--name", f"w{n}", "--no-dashboard"],
                                          stdout=log, stderr=log, env=env, start_new_session=True))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
        out = tmp_path / "ds"
        p = subprocess.run([sys.executable, "-m", "layerkit", "scan", f"oci:{a}", f"oci:{b}", "-o", str(out),
                            "--scheduler", f"tcp://127.0.0.1:{port}", "--contents"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "layers indexed: 3" in p.stdout and "failures: 0" in p.stdout, p.stdout
        workers = {r["worker"] for r in table(out, "layers")}
        assert workers <= {"w0", "w1"} and workers, workers

        # the same images in a registry: the workers fetch the blobs, the rows are the layout's
        for layout, name in ((a, "team/a:1"), (b, "team/b:1")):
            skopeo_copy(f"oci:{layout}", f"docker://{registry.host}/{name}", "--dest-tls-verify=false")
        out_reg = tmp_path / "ds-registry"
        p = subprocess.run([sys.executable, "-m", "layerkit", "scan", f"docker://{registry.host}", "-o", str(out_reg),
                            "--scheduler", f"tcp://127.0.0.1:{port}", "--contents"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0 and "failures: 0" in p.stdout, (p.stdout, p.stderr)
        assert {r["reference"] for r in table(out_reg, "images")} == {f"{registry.host}/team/a:1",
                                                                       f"{registry.host}/team/b:1"}

        def files_of(d: Path) -> list[tuple]:
            return sorted((r["diff_id"], r["path"], r["type"], r["size"], r["sha256"]) for r in table(d, "files"))

        assert files_of(out_reg) == files_of(out)
        assert {r["worker"] for r in table(out_reg, "layers")} <= {"w0", "w1"}

        # a worker killed in the middle of a layer: Dask runs its task again on the other worker, whose
        # parts have the same names and bytes, so no row is written twice
        big = [layer_tar([F(f"big{k}/d{i // 1000}/f{i}") for i in range(100_000)]) for k in range(2)]
        c_layout = write_layout(tmp_path / "c", big, "big:1")
        hexes = [hashlib.sha256(x).hexdigest() for x in big]
        del big
        skopeo_copy(f"oci:{c_layout}", f"docker://{registry.host}/big:1", "--dest-tls-verify=false")
        out2 = tmp_path / "ds2"
        scanning = subprocess.Popen([sys.executable, "-m", "layerkit", "scan", f"docker://{registry.host}/big:1",
                                     "-o", str(out2),
                                     "--scheduler", f"tcp://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120
        while not all(list((out2 / "files").glob(f"{h}.0.*.parquet")) for h in hexes):  # both mid-layer
            assert scanning.poll() is None and time.monotonic() < deadline, scanning.communicate()
            time.sleep(0.02)
        os.killpg(procs[1].pid, signal.SIGKILL)  # w0, its nanny with it
        stdout, stderr = scanning.communicate(timeout=300)
        assert scanning.returncode == 0 and "failures: 0" in stdout, (stdout, stderr)
        layers2 = table(out2, "layers")
        assert sorted(r["diff_id"] for r in layers2) == sorted("sha256:" + h for h in hexes)
        assert {r["worker"] for r in layers2} == {"w1"}  # w0's layer was indexed again, on w1
        rows = table(out2, "files")
        assert len(rows) == 200_000 == sum(r["entries"] for r in layers2)
        assert len({(r["diff_id"], r["seq"]) for r in rows}) == len(rows)
        for h in hexes:  # 100,000 rows in batches of 32,768: four parts each, whoever wrote them
            assert len(list((out2 / "files").glob(f"{h}.*.parquet"))) == 4
        assert not [p for p in (out2 / "files").iterdir() if p.name.startswith(".tmp-")]
    finally:
        registry.stop()
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    # the CLI's fleet verbs over what the workers wrote
    p = subprocess.run([sys.executable, "-m", "layerkit", "fleet", "summary", str(out), "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    (s,) = json.loads(p.stdout)
    assert (s["images"], s["layers"], s["layer_references"]) == (2, 3, 4)
    assert s["pushed_bytes"] == sum(r["compressed_size"] for r in table(out, "layers"))


def test_scan_on_a_local_cluster_of_processes_and_the_cli(tmp_path, capsys) -> None:
    """The default: a LocalCluster of worker processes (``--workers 2``), through ``layerkit scan``; then
    ``fleet sql``, ``duplicates`` and the errors of the fleet verbs, in-process."""
    a, b, _ = _small_layouts(tmp_path)
    out = tmp_path / "ds"
    assert main(["scan", f"oci:{a}", f"oci:{b}", "-o", str(out), "--workers", "2", "--contents"]) == 0
    said = capsys.readouterr().out
    # the LocalCluster serves Dask's dashboard (bokeh is in the fleet extra) and the scan names it
    link = next(line for line in said.splitlines() if line.startswith("Dask dashboard: "))
    assert link.startswith("Dask dashboard: http://127.0.0.1:") and link.endswith("/status"), said
    assert main(["fleet", "sql", "SELECT count(DISTINCT diff_id) AS n FROM files", str(out), "--format",
                 "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 3}]
    assert main(["fleet", "duplicates", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the shared base is one layer: no duplicate content
    assert main(["fleet", "sql", "SELEC 1", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("layerkit: error: query failed:") and err.count("\n") == 1
    assert main(["fleet", "waste", str(tmp_path / "nothing")]) == 1
    assert "not a fleet dataset" in capsys.readouterr().err
    assert main(["fleet"]) == 2
    assert main(["scan", f"oci:{a}", "-o", str(tmp_path / "x"), "--workers", "0"]) == 2
    (tmp_path / "afile").write_text("")
    assert main(["scan", f"oci:{a}", "-o", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"layerkit: error: {tmp_path / 'afile'}: exists and is not a directory\n"), err


def test_duplicates_finds_content_copied_into_several_layers(tmp_path) -> None:
    """The same bytes under different paths in two unrelated layers: one duplicate row, 2 copies in 2
    layers used by 2 images, reclaimable = its size once."""
    payload = b"z" * 4096
    l1 = layer_tar([F("opt/a/lib.so", payload), F("x", b"1")])
    l2 = layer_tar([F("usr/lib/copy.so", payload), F("y", b"2")])
    write_layout(tmp_path / "a", [l1], "a:1")
    write_layout(tmp_path / "b", [l2], "b:1")
    out = tmp_path / "ds"
    events = []
    scan([f"oci:{tmp_path / 'a'}", f"oci:{tmp_path / 'b'}"], str(out), workers=1, contents=True, processes=False,
         progress=events.append)
    # progress: each layer announced, then done, with its size (the faces draw bytes and rate from these)
    digests = {"sha256:" + hashlib.sha256(x).hexdigest(): len(x) for x in (l1, l2)}
    notes = [e.note for e in events if e.note]  # the dashboard's address, once (bokeh is in the fleet extra)
    assert len(notes) == 1 and notes[0].startswith("Dask dashboard: http://127.0.0.1:"), notes
    assert sorted((e.digest, e.status.value, e.total) for e in events if not e.note) == sorted(
        [(d, "done", n) for d, n in digests.items()] + [(d, "waiting", n) for d, n in digests.items()])
    _, rows = queries.duplicates(out)
    assert rows == [{"sha256": hashlib.sha256(payload).hexdigest(), "size": 4096, "copies": 2, "layers": 2,
                     "images": 2, "reclaimable_bytes": 4096, "path": "/opt/a/lib.so", "paths": 2}]
    _, (s,) = queries.summary(out)
    assert s["unique_content_bytes"] == 4096 + 2 and s["file_bytes"] == 2 * 4096 + 2
    shutil.rmtree(out)


def test_lk_fleet_and_sql_cell_return_dataframes(tmp_path) -> None:
    """``%lk scan`` / ``%lk fleet ...`` go through the shared verb table and return DataFrames;
    ``%%lk sql DATASET`` runs the cell's SQL."""
    pd = pytest.importorskip("pandas")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    a, b, _ = _small_layouts(tmp_path)
    out = tmp_path / "ds"
    scan([f"oci:{a}", f"oci:{b}"], str(out), workers=1, processes=False)
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    try:
        sh.run_line_magic("load_ext", "layerkit")
        sh.run_line_magic("lk", f"store {tmp_path / 'store'}")
        with capture_output():
            waste = sh.run_line_magic("lk", f"fleet waste {out}")
            summary = sh.run_line_magic("lk", f"fleet summary {out}")
            largest = sh.run_line_magic("lk", f"fleet largest {out} -n 2")
            cell = sh.run_cell_magic("lk", f"sql {out}", "SELECT path, size FROM files\nWHERE type = 'file'\n"
                                                        "ORDER BY size DESC")
        assert isinstance(waste, pd.DataFrame) and len(waste) == 2
        assert set(waste["reference"]) == {"docker.io/library/app:1", "docker.io/library/other:1"}
        assert summary.loc[0, "images"] == 2 and summary.loc[0, "layers"] == 3
        assert set(largest) == {"Largest layers", "Largest files"} and len(largest["Largest files"]) == 2
        assert list(cell.columns) == ["path", "size"]
        assert cell["path"].tolist()[:2] == ["/srv/data.bin", "/bin/tool"]
    finally:
        InteractiveShell.clear_instance()


def test_without_the_fleet_extra_the_verbs_name_it(tmp_path, monkeypatch, capsys) -> None:
    """With DuckDB missing, ``fleet`` is one error line naming the extra to install (exit status 1)."""
    for name in [m for m in sys.modules if m.startswith("layerkit.fleet")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb raises ImportError
    assert main(["fleet", "summary", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == ("layerkit: error: scan and fleet need pyarrow, duckdb and distributed (duckdb is missing): "
                   "pip install 'layerkit[fleet]'\n"), err


def test_a_second_scan_of_a_dataset_being_written_is_refused(tmp_path, capsys) -> None:
    """Another process (util-linux ``flock``, as a first scan would) holds the dataset's writer lock: a
    second scan says so in one line and touches nothing, not even the parts an unfinished scan left, which
    it would otherwise remove as orphans."""
    a, _, _ = _small_layouts(tmp_path)
    out = tmp_path / "ds"
    ds.create(out)
    unfinished = ds.table_dir(out, "files") / ("ab" * 32 + ".0.x.parquet")
    unfinished.write_bytes(b"being written")
    holder = subprocess.Popen(["flock", str(out / ".lock"), "sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(out / ".lock"), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "flock did not take the lock"
            time.sleep(0.05)
        capsys.readouterr()
        assert main(["scan", f"oci:{a}", "-o", str(out), "--workers", "1"]) == 1
        err = capsys.readouterr().err
        assert err == f"layerkit: error: {out}: another scan is writing this dataset; wait for it to finish, " \
                      "or scan into another directory\n"
        assert unfinished.read_bytes() == b"being written"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep that holds the lock with it
        holder.wait()
    assert main(["scan", f"oci:{a}", "-o", str(out), "--workers", "1"]) == 0  # the lock went with its holder
    assert not unfinished.exists()  # and the next scan removes what the unfinished one left
