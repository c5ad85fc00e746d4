"""``layerkit scan docker://...``: a real docker-registry on 127.0.0.1 scanned whole, on a LocalCluster.

The registry is filled by ``skopeo copy`` with images that share a base: the session's busybox base
(``buildah``), the several-layer image built FROM it (``podman build``, under two tags), an image built
here with ``buildah`` FROM the base, plus two small layouts whose layer lies (its blob file in the
registry's storage overwritten with other bytes after the push) or is no tar. What the scan found is
checked against the registry as others read it: its catalog with curl, each repository's tags with
``skopeo list-tags``, each manifest and config with ``skopeo inspect --raw``, each layer blob fetched with
curl and listed by GNU ``tar -t``, and each image's efficiency by ``layerkit efficiency docker://...``.
The catalog is read two names a page, so the scan follows the registry's own ``Link`` headers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
import requests

try:  # a missing extra fails the run, naming what to install (nothing is skipped in CI)
    import distributed  # noqa: F401
    import pyarrow  # noqa: F401
except ImportError as exc:
    raise ImportError(f"{exc.name} is missing: pip install 'layerkit[fleet]' (pyarrow, duckdb, distributed)") \
        from exc

from builders import F, layer_tar, write_layout  # noqa: E402
from conftest import BASE  # noqa: E402
from realtools import require, run, run_bytes, skopeo_copy  # noqa: E402
from services import free_port, start_registry  # noqa: E402
from test_fleet import gnu_tar_members, table  # noqa: E402

from layerkit.cli import main  # noqa: E402
from layerkit.fleet import queries  # noqa: E402
from layerkit.fleet.registry import parse_source  # noqa: E402
from layerkit.fleet.scan import scan  # noqa: E402
from layerkit.formats.registry import listing  # noqa: E402

pytestmark = pytest.mark.tools


def curl(url: str, out: Path | None = None) -> bytes:
    """``curl -sf URL`` (to ``out`` when given)."""
    return run_bytes(["curl", "-sf", url, *(["-o", str(out)] if out else [])])


def blob_file(registry, digest: str) -> Path:
    """Where docker-registry's filesystem driver keeps a blob's bytes."""
    hexd = digest.split(":")[1]
    return registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def stored_gzip(tar: bytes) -> bytes:
    """``tar`` gzipped without compression (level 0): its length depends on the tar's length only."""
    return gzip.compress(tar, compresslevel=0, mtime=0)


def gzip_layout(dest: Path, tar: bytes, tag: str) -> Path:
    """An OCI layout of one image whose one layer is ``tar`` as a level-0 gzip blob (pushed as it is)."""
    lay = write_layout(dest, [tar], tag)
    blobs = lay / "blobs" / "sha256"
    index = json.loads((lay / "index.json").read_text())
    mpath = blobs / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(mpath.read_bytes())
    gz = stored_gzip(tar)
    (blobs / hashlib.sha256(gz).hexdigest()).write_bytes(gz)
    manifest["layers"] = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": "sha256:" + hashlib.sha256(gz).hexdigest(), "size": len(gz)}]
    data = json.dumps(manifest).encode()
    (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    index["manifests"][0].update(digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data))
    (lay / "index.json").write_text(json.dumps(index))
    return lay


@pytest.fixture(scope="module")
def filled(engine, base_image, multi_image, tmp_path_factory):
    """The registry, filled; yields what was pushed where."""
    require("docker-registry", "skopeo", "curl", "tar")
    root = tmp_path_factory.mktemp("fleet-registry")
    reg = start_registry(root / "registry")
    push = ("--dest-tls-verify=false",)
    try:
        skopeo_copy(engine.storage_ref(base_image.name), f"docker://{reg.host}/lk/busybox:1", *push)
        for tag in ("1", "2"):
            skopeo_copy(engine.storage_ref(multi_image.name), f"docker://{reg.host}/lk/multi:{tag}", *push)
        # another image on the same base, built here with buildah
        (root / "tool.sh").write_text("#!/bin/sh\necho tool\n")
        ctr = engine.buildah("from", "--pull-never", BASE).strip()
        try:
            engine.buildah("copy", "--chmod", "0755", ctr, root / "tool.sh", "/usr/local/bin/tool")
            engine.buildah("commit", "--quiet", ctr, "localhost/lk-tool:v1")
        finally:
            engine.buildah("rm", ctr)
        skopeo_copy(engine.storage_ref("localhost/lk-tool:v1"), f"docker://{reg.host}/tools/tool:v1", *push)
        # a layer that will lie, and one that is no tar
        liar = layer_tar([F("srv/data.bin", b"d" * 5000)])
        skopeo_copy(f"oci:{gzip_layout(root / 'liar', liar, 'liar:v1')}:liar:v1",
                    f"docker://{reg.host}/liar:v1", *push)
        junk = b"this is not a tar archive\n" * 40
        skopeo_copy(f"oci:{write_layout(root / 'junk', [junk], 'junk:v1')}:junk:v1",
                    f"docker://{reg.host}/junk:v1", *push)
        f = blob_file(reg, "sha256:" + hashlib.sha256(stored_gzip(liar)).hexdigest())
        lie = bytearray(liar)
        lie[600] ^= 0xFF  # inside the file's data: a valid gzip of a valid tar, the same length, other bytes
        f.write_bytes(stored_gzip(bytes(lie)))  # the registry now serves them as the blob
        yield {"registry": reg, "liar": "sha256:" + hashlib.sha256(liar).hexdigest(),
               "junk": "sha256:" + hashlib.sha256(junk).hexdigest(),
               "root": root}
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def scanned(filled):
    """The whole registry scanned by a LocalCluster of two worker processes, with a 404 tag, a repository
    the registry does not have and a registry nobody serves as further sources."""
    reg = filled["registry"]
    dead = f"127.0.0.1:{free_port()}"
    sources = [f"docker://{reg.host}", f"docker://{reg.host}/lk/multi:nosuchtag", f"docker://{reg.host}/no/such",
               f"docker://{dead}"]
    out = filled["root"] / "ds"
    mark = reg.mark()
    page, listing.PAGE = listing.PAGE, 2
    try:
        res = scan(sources, str(out), workers=2, processes=True)
    finally:
        listing.PAGE = page
    return {"dataset": out, "result": res, "sources": sources, "dead": dead, "log": reg.requests(mark)}


def what_the_registry_holds(host: str) -> dict:
    """(reference -> (image ID, diff_ids, layer digests)) as curl and skopeo read the registry."""
    repos = json.loads(curl(f"http://{host}/v2/_catalog?n=1000"))["repositories"]
    out = {}
    for repo in repos:
        tags = json.loads(run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repo}"]))["Tags"]
        for tag in tags:
            ref = f"docker://{host}/{repo}:{tag}"
            manifest = json.loads(run_bytes(["skopeo", "inspect", "--raw", "--tls-verify=false", ref]))
            raw = run_bytes(["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", ref])
            out[f"{host}/{repo}:{tag}"] = ("sha256:" + hashlib.sha256(raw).hexdigest(),
                                            json.loads(raw)["rootfs"]["diff_ids"],
                                            [ld["digest"] for ld in manifest["layers"]], repo)
    return out


def test_sources_name_a_registry_a_repository_or_an_image() -> None:
    """``docker://HOST:PORT`` is the catalog, ``docker://HOST/REPO`` its tags, a tag or digest one image."""
    assert parse_source("docker://127.0.0.1:5000").repository is None
    assert parse_source("docker://registry.example.com/").repository is None
    s = parse_source("docker://127.0.0.1:5000/team/app")
    assert (s.domain, s.repository, s.ref) == ("127.0.0.1:5000", "team/app", None)
    s = parse_source("docker://127.0.0.1:5000/team/app:v1")
    assert (s.repository, s.ref.tag) == ("team/app", "v1")
    d = "sha256:" + "a" * 64
    assert parse_source(f"docker://localhost:5000/app@{d}").ref.digest == d
    s = parse_source("docker://busybox")  # a Hub repository (every tag), not a host
    assert (s.domain, s.repository, s.ref) == ("docker.io", "library/busybox", None)


def test_counts_equal_what_the_registry_holds(scanned, filled) -> None:
    """Every tag of every repository is an images row under its reference; each distinct layer of the
    registry is indexed once (a layer that lies or is no tar is a failure instead), whatever number of
    repositories and tags share it; each image's layers are the diff_ids of its config; the catalog was
    read page by page, following the registry's Link headers."""
    reg = filled["registry"]
    d = scanned["dataset"]
    held = what_the_registry_holds(reg.host)
    assert len(held) == 6
    images = table(d, "images")
    assert {(r["reference"], r["image_id"]) for r in images} == {(ref, v[0]) for ref, v in held.items()}
    assert all(r["repository"] == f"{reg.host}/{held[r['reference']][3]}" for r in images)
    diff_ids = {x for v in held.values() for x in v[1]}
    bad = {filled["liar"], filled["junk"]}  # their diff_ids
    layers = table(d, "layers")
    assert sorted(r["diff_id"] for r in layers) == sorted(diff_ids - bad)
    il = table(d, "image_layers")
    for image_id, ids, digests, _ in held.values():
        rows = sorted((r for r in il if r["image_id"] == image_id and r["position"] is not None),
                      key=lambda r: r["position"])
        assert [(r["diff_id"], r["digest"]) for r in rows] == list(zip(ids, digests, strict=True))
    catalog_pages = [p for m, p, s in scanned["log"] if m == "GET" and p.startswith("/v2/_catalog")]
    assert len(catalog_pages) == 3 and all("n=2" in p for p in catalog_pages), catalog_pages  # 5 repos, 2 a page
    assert "last=" in catalog_pages[-1]
    # the workers fetched each good layer once from the registry (a layer several repositories hold too)
    blob_gets = [p for m, p, s in scanned["log"] if m == "GET" and "/blobs/" in p and s == 200]
    layer_digests = {r["digest"] for r in layers}
    assert sorted(p.rsplit("/", 1)[1] for p in blob_gets if p.rsplit("/", 1)[1] in layer_digests) \
        == sorted(layer_digests)


def test_failures_are_rows_and_the_rest_completes(scanned, filled) -> None:
    """A blob that does not match its digest, a layer that is no tar, a 404 tag, a repository the registry
    lacks and a registry nobody serves: one failures row each, naming what is wrong."""
    reg = filled["registry"]
    fails = table(scanned["dataset"], "failures")
    assert len(fails) == 5 == scanned["result"].failures, fails
    by_diff = {f["diff_id"]: f for f in fails if f["stage"] == "layer"}
    lie = by_diff[filled["liar"]]
    assert lie["error"] == "DigestMismatch" and lie["digest"] in lie["reason"], lie
    assert by_diff[filled["junk"]]["error"] == "InvalidArchive"
    src = {f["source"]: f for f in fails if f["stage"] == "source"}
    assert src[f"docker://{reg.host}/lk/multi:nosuchtag"]["error"] == "ManifestNotFound"
    assert "nosuchtag" in src[f"docker://{reg.host}/lk/multi:nosuchtag"]["reason"]
    assert "no/such" in src[f"docker://{reg.host}/no/such"]["reason"]
    dead = src[f"docker://{scanned['dead']}"]
    assert dead["error"] == "RegistryUnreachable" and "connection refused" in dead["reason"]
    assert not {r["diff_id"] for r in table(scanned["dataset"], "files")} & {filled["liar"], filled["junk"]}


def test_files_table_equals_gnu_tar_listing_of_every_blob(scanned, filled, tmp_path) -> None:
    """Every indexed layer's rows, in order, are what GNU tar lists in its blob as curl fetches it."""
    reg = filled["registry"]
    by_layer: dict[str, list[dict]] = {}
    for r in table(scanned["dataset"], "files"):
        by_layer.setdefault(r["diff_id"], []).append(r)
    il = {r["diff_id"]: r["digest"] for r in table(scanned["dataset"], "image_layers") if r["diff_id"]}
    repo_of = {}
    for _, ids, _, repo in what_the_registry_holds(reg.host).values():
        for x in ids:
            repo_of.setdefault(x, repo)
    layers = table(scanned["dataset"], "layers")
    for layer in layers:
        blob = tmp_path / layer["digest"].split(":")[1]
        curl(f"http://{reg.host}/v2/{repo_of[layer['diff_id']]}/blobs/{il[layer['diff_id']]}", blob)
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"]
        rows = sorted(by_layer.get(layer["diff_id"], []), key=lambda r: r["seq"])
        assert layer["entries"] == len(rows)
        assert [r["path"] for r in rows] == [m[0] for m in gnu_tar_members(blob)], layer["diff_id"]
    assert len(layers) >= 4


def test_waste_equals_layerkit_efficiency_of_the_registry_image(scanned, filled, tmp_path, capsys) -> None:
    """dive's figures in SQL over the scanned registry equal ``layerkit efficiency docker://...``."""
    _, rows = queries.waste(scanned["dataset"])
    got = {r["image_id"]: r for r in rows}
    refs = {r["image_id"]: r["reference"] for r in table(scanned["dataset"], "images")}
    assert len(got) == 3  # busybox, multi (two tags, one image), tool: the liar and the junk are incomplete
    for image_id, row in got.items():
        capsys.readouterr()
        assert main(["--store", str(tmp_path / "store"), "efficiency", f"docker://{refs[image_id]}",
                     "--format", "json"]) == 0
        want = json.loads(capsys.readouterr().out)
        assert row["efficiency"] == pytest.approx(want["efficiency"], abs=1e-12), refs[image_id]
        for k in ("size_bytes", "wasted_bytes", "reclaimable_bytes"):
            assert row[k] == want[k], (refs[image_id], k)
    assert any(r["wasted_bytes"] > 0 for r in got.values())  # the multi image rewrites and deletes files


def test_a_second_scan_adds_nothing(scanned, filled) -> None:
    """The same registry again (threads this time): no image, layer or files row is added; only the
    failures are recorded again (a re-scan retries what failed)."""
    d = scanned["dataset"]
    before = {t: len(table(d, t)) for t in ("images", "image_layers", "layers", "files")}
    res = scan([f"docker://{filled['registry'].host}"], str(d), workers=1, processes=False)
    assert (res.images, res.layers) == (0, 0)
    assert res.skipped_images == 6
    assert {f["diff_id"] for f in res.failure_rows} == {filled["liar"], filled["junk"]}
    assert {t: len(table(d, t)) for t in before} == before


def test_cli_scan_of_one_repository(filled, tmp_path, capsys) -> None:
    """``layerkit scan docker://HOST/REPO`` from the command line: every tag of one repository."""
    reg = filled["registry"]
    out = tmp_path / "ds"
    assert main(["scan", f"docker://{reg.host}/lk/multi", "-o", str(out), "--workers", "1",
                 "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["images"], got["failures"]) == (1, 0), got
    assert {r["reference"] for r in table(out, "images")} == {f"{reg.host}/lk/multi:1", f"{reg.host}/lk/multi:2"}


def test_progress_counts_layers_and_bytes_and_names_the_dashboard(filled, tmp_path) -> None:
    """Each layer to index is announced ``waiting`` with its size, then ``done`` once; the bytes the events
    add up to are the compressed bytes scanned; the dashboard of the scheduler used is a note, given once,
    and its address answers."""
    from distributed import Client, LocalCluster

    from layerkit.engine.progress import Status, Tally

    events = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as lc, \
            Client(lc):
        res = scan([f"docker://{filled['registry'].host}/lk/multi"], str(tmp_path / "ds"),
                   scheduler=lc.scheduler_address, progress=events.append)
        assert requests.get(res.dashboard, timeout=10).status_code == 200  # the scheduler's HTTP server
    notes = [e.note for e in events if e.note]
    assert len(notes) == 1 and notes[0] == f"Dask dashboard: {res.dashboard}" and res.dashboard.startswith("http")
    layers = [e for e in events if e.note is None]
    waiting = {e.digest: e.total for e in layers if e.status == Status.WAITING}
    done = [e.digest for e in layers if e.status == Status.DONE]
    assert len(waiting) == res.layers > 1 and sorted(done) == sorted(waiting)
    tally = Tally()
    for e in layers:
        tally.add(e)
    assert tally.total == res.compressed_bytes == sum(waiting.values())


def test_a_registry_behind_basic_auth_is_scanned_with_the_saved_credentials(filled, tmp_path, monkeypatch) -> None:
    """A registry with htpasswd auth: without credentials its catalog is a failure naming the refusal; with
    the credentials ``layerkit login`` saves, the catalog, the tags and the blobs are read with them."""
    from test_registry import PASSWORD, USER, bcrypt_hash

    from layerkit.formats.registry import credentials

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    root = tmp_path / "auth-registry"
    root.mkdir()
    (root / "htpasswd").write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    reg = start_registry(root, f"auth:\n  htpasswd:\n    realm: layerkit-test\n    path: {root / 'htpasswd'}\n")
    try:
        skopeo_copy(f"docker://{filled['registry'].host}/tools/tool:v1", f"docker://{reg.host}/private/tool:v1",
                    "--src-tls-verify=false", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}")
        res = scan([f"docker://{reg.host}"], str(tmp_path / "ds0"), workers=1, processes=False)
        (f,) = res.failure_rows
        assert (f["stage"], f["error"]) == ("source", "RegistryAuthError") and "unauthorized" in f["reason"], f
        credentials.login(reg.host, USER, PASSWORD)
        res = scan([f"docker://{reg.host}"], str(tmp_path / "ds"), workers=1, processes=False)
        assert (res.images, res.failures) == (1, 0), res.failure_rows
        held = what_the_registry_holds(filled["registry"].host)[f"{filled['registry'].host}/tools/tool:v1"]
        assert sorted(r["diff_id"] for r in table(tmp_path / "ds", "layers")) == sorted(held[1])
    finally:
        reg.stop()


def test_one_image_by_digest(filled, tmp_path) -> None:
    """``docker://HOST/REPO@sha256:...``: that one image, named by its digest (no tag), its manifest digest
    the one the registry names."""
    host = filled["registry"].host
    raw = run_bytes(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/tools/tool:v1"])
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    res = scan([f"docker://{host}/tools/tool@{digest}"], str(tmp_path / "ds"), workers=1, processes=False)
    assert (res.images, res.failures) == (1, 0), res.failure_rows
    (row,) = table(tmp_path / "ds", "images")
    assert (row["reference"], row["tag"], row["manifest_digest"]) == (f"{host}/tools/tool@{digest}", None, digest)


def test_an_index_resolves_to_the_platform_skopeo_and_pull_choose(filled, tmp_path) -> None:
    """A tag naming an image index (two platforms) is scanned as the one image of this machine's platform,
    the one ``skopeo inspect`` picks on this machine, as ``pull`` does."""
    reg = start_registry(tmp_path / "index-registry")
    try:
        src = filled["registry"].host
        entries = []
        for tag, from_repo, plat in (("mine", "tools/tool:v1", None), ("other", "lk/busybox:1", "other")):
            skopeo_copy(f"docker://{src}/{from_repo}", f"docker://{reg.host}/plat/app:{tag}",
                        "--src-tls-verify=false", "--dest-tls-verify=false")
            raw = run_bytes(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/plat/app:{tag}"])
            entries.append((raw, plat))
        from layerkit.engine.mediatypes import host_platform

        here = host_platform()
        other = "arm64" if here.architecture != "arm64" else "amd64"
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": json.loads(raw)["mediaType"], "digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
             "size": len(raw), "platform": {"os": "linux", "architecture": other if plat else here.architecture}}
            for raw, plat in reversed(entries)]}
        put = requests.put(f"http://{reg.host}/v2/plat/app/manifests/1", data=json.dumps(index).encode(),
                           headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}, timeout=30)
        assert put.status_code == 201, put.text
        res = scan([f"docker://{reg.host}/plat/app:1"], str(tmp_path / "ds"), workers=1, processes=False)
        assert (res.images, res.failures) == (1, 0), res.failure_rows
        (row,) = table(tmp_path / "ds", "images")
        raw_config = run_bytes(["skopeo", "inspect", "--config", "--raw", "--tls-verify=false",
                                f"docker://{reg.host}/plat/app:1"])
        assert row["image_id"] == "sha256:" + hashlib.sha256(raw_config).hexdigest()
        assert row["manifest_digest"] == "sha256:" + hashlib.sha256(entries[0][0]).hexdigest()  # the tool's
    finally:
        reg.stop()
