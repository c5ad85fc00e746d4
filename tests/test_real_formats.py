"""layerkit against the real tools, no mocks: images built by buildah and podman, exported by podman and
skopeo in every format, loaded into layerkit, and saved back into podman.

Every expected value comes from a real tool at test time: image IDs are the sha256 of the config bytes
``skopeo inspect --config --raw`` returns, layer digests and sizes come from ``skopeo inspect --raw``,
history rows from the config and from ``podman history``, tags from what podman and skopeo wrote into
the archives, Docker's file-size figure from GNU tar's listing of the layer tars. The fixtures are in
``conftest.py`` and are built once per session.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BASE, MULTI, Built, Export
from realtools import (
    Engine,
    archive_tags,
    docker_archive_layers,
    docker_ellipsis,
    docker_human_size,
    familiar,
    gnu_tar_docker_size,
    parse_rfc3339,
    require,
    run,
    skopeo_config,
    skopeo_copy,
    skopeo_manifest,
    tree_listing,
)

from layerkit import Store
from layerkit.cli import main

pytestmark = pytest.mark.tools

MULTI_EXPORTS = [
    "podman-docker-archive",
    "podman-oci-archive",
    "skopeo-docker-archive",
    "skopeo-oci-archive",
    "skopeo-oci-layout-plain",
    "skopeo-oci-layout-gzip",
    "skopeo-oci-layout-zstd",
]
# DESIGN.md section 3: the JSON keys of each row
HISTORY_KEYS = ["id", "created", "created_by", "size", "comment", "empty_layer", "diff_id"]
IMAGES_KEYS = ["repository", "tag", "id", "digest", "created", "size", "shared_size", "unique_size",
               "containers", "layers"]
LAYERS_KEYS = ["index", "diff_id", "digest", "media_type", "size", "tar_size", "compressed_size", "files", "whiteouts",
               "created_by", "shared_by"]
AGO = re.compile(r"^(Less than a second|About an? \w+|\d+ \w+) ago$")


# ---- helpers -----------------------------------------------------------------------------------

def cli(*argv: str | Path) -> tuple[int, str, str]:
    """Run ``layerkit ARGV`` in-process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def cli_ok(*argv: str | Path) -> str:
    """Run ``layerkit ARGV``, insist on success, return stdout."""
    rc, out, err = cli(*argv)
    assert rc == 0, f"layerkit {' '.join(map(str, argv))} exited {rc}: {err}"
    return out


def cli_json(*argv: str | Path):
    """Run a listing verb with ``--format json`` and parse what it prints."""
    return json.loads(cli_ok(*argv, "--format", "json"))


def load_into(store_dir: Path, load_arg: str) -> tuple[Store, list[str]]:
    """``layerkit --store DIR load ARG``; returns the store and the lines it printed."""
    out = cli_ok("--store", store_dir, "load", load_arg)
    return Store(store_dir), out.splitlines()


def blob_files(store_dir: Path) -> list[str]:
    """The digests of every blob file in a store."""
    return sorted("sha256:" + p.name for p in (store_dir / "blobs" / "sha256").iterdir())


def referenced_blobs(store: Store) -> set[str]:
    """Every blob the store's images reference: manifests, configs and layers."""
    out: set[str] = set()
    for img in store.images():
        out |= {img.manifest_digest, img.id, *(la.digest for la in img.layers)}
    return out


def table_rows(text: str, headers: list[str]) -> list[dict[str, str]]:
    """Split a docker-style table into cells by the header's column starts."""
    lines = text.rstrip("\n").splitlines()
    head = lines[0]
    starts = [head.index(h) for h in headers]
    assert starts == sorted(starts), f"columns out of order: {head!r}"
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, h in enumerate(headers):
            end = starts[i + 1] if i + 1 < len(headers) else None
            cells[h] = line[starts[i]:end].strip()
        rows.append(cells)
    return rows


# ---- session fixtures on the layerkit side ------------------------------------------------------

@pytest.fixture(scope="session")
def lk_store(exports: dict[str, Export], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A layerkit store loaded (through the CLI) from podman's multi-image archive: base + multi, all names."""
    d = tmp_path_factory.mktemp("lk") / "store"
    _, lines = load_into(d, exports["all-docker-archive"].load_arg)
    return d, lines


@pytest.fixture(scope="session")
def layer_tars(exports: dict[str, Export], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """diff_id -> the uncompressed layer tar, extracted by GNU tar from podman's docker-archive."""
    return docker_archive_layers(exports["all-docker-archive"].path, tmp_path_factory.mktemp("layer-tars"))


@pytest.fixture(scope="session")
def multi_config(exports: dict[str, Export]) -> tuple[str, dict]:
    """(ID, config) of the multi image as skopeo reads it from podman's docker-archive."""
    return skopeo_config(exports["podman-docker-archive"].ref)


# ---- 1. loading every export -------------------------------------------------------------------

@pytest.mark.parametrize("key", MULTI_EXPORTS)
def test_load_export_matches_tools(key: str, exports: dict[str, Export], multi_image: Built, tmp_path: Path):
    """ID, diff_ids, layer digests and sizes, history rows and tags equal what skopeo reads from the export."""
    exp = exports[key]
    image_id, config = skopeo_config(exp.ref)
    manifest = skopeo_manifest(exp.ref)
    assert image_id == multi_image.id, "the export should hold the image podman built"
    tags = archive_tags(exp.path)[image_id]
    assert tags, f"{key}: the tool wrote no name for the image"

    store, lines = load_into(tmp_path / "store", exp.load_arg)
    assert lines == [f"Loaded image: {familiar(t)}" for t in tags]

    img = store.image(tags[0])
    assert img.id == image_id
    assert img.diff_ids == config["rootfs"]["diff_ids"]
    assert [la.diff_id for la in img.layers] == config["rootfs"]["diff_ids"]
    assert [la.digest for la in img.layers] == [d["digest"] for d in manifest["layers"]]
    assert [la.compressed_size for la in img.layers] == [d["size"] for d in manifest["layers"]]
    if exp.kind == "oci":
        assert [la.media_type for la in img.layers] == [d["mediaType"] for d in manifest["layers"]]
        # an OCI source's manifest is kept byte for byte: same manifest digest as the tool reports
        raw = subprocess.run(["skopeo", "inspect", "--raw", exp.ref], capture_output=True, check=True).stdout
        assert img.manifest_digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert sorted(t.normalized for t in img.tags) == sorted(tags)
    # the stored config is the source's config, byte for byte
    assert hashlib.sha256(store.blobs.read_bytes(img.id)).hexdigest() == image_id.split(":", 1)[1]

    rows = img.history()
    want = list(reversed(config["history"]))
    assert [r.created_by for r in rows] == [h.get("created_by", "") for h in want]
    assert [r.comment for r in rows] == [h.get("comment", "") for h in want]
    assert [r.empty_layer for r in rows] == [bool(h.get("empty_layer")) for h in want]
    assert [r.created for r in rows] == [parse_rfc3339(h["created"]) for h in want]
    assert [r.diff_id for r in rows if not r.empty_layer] == list(reversed(config["rootfs"]["diff_ids"]))
    assert all(r.size == 0 for r in rows if r.empty_layer)

    # nothing but the image's blobs, and no temporary leftovers
    assert blob_files(store.root) == sorted(referenced_blobs(store))
    assert not list((store.root / "layerkit" / "tmp").glob("*"))


def test_history_and_sizes_match_podman_and_gnu_tar(lk_store, multi_image: Built, engine: Engine,
                                                    layer_tars: dict[str, Path]):
    """History rows equal ``podman history``; ``tar_size`` is podman's SIZE, ``size`` is Docker's (GNU tar)."""
    store = Store(lk_store[0])
    img = store.image(multi_image.name)
    rows = img.history()
    podman_rows = engine.history(multi_image.name)
    assert len(rows) == len(podman_rows)
    by_diff = {la.diff_id: la for la in img.layers}
    for ours, theirs in zip(rows, podman_rows, strict=True):
        assert ours.created_by == theirs["CreatedBy"]
        assert ours.comment == theirs.get("comment", "")
        # podman's history SIZE is the uncompressed tar's length
        assert (by_diff[ours.diff_id].tar_size if ours.diff_id else 0) == theirs["size"], ours.created_by
        if ours.diff_id:
            assert ours.size == gnu_tar_docker_size(layer_tars[ours.diff_id]), ours.created_by
    for layer in img.layers:
        assert layer.size == gnu_tar_docker_size(layer_tars[layer.diff_id])
        assert layer.tar_size == layer_tars[layer.diff_id].stat().st_size


def test_podman_inspect_agrees(lk_store, multi_image: Built, base_image: Built, engine: Engine):
    """For both images: the ID, diff_ids and names podman reports are layerkit's."""
    store = Store(lk_store[0])
    for built in (base_image, multi_image):
        info = engine.inspect(built.name)
        img = store.image(built.name)
        assert img.id == "sha256:" + info["Id"]
        assert img.diff_ids == info["RootFS"]["Layers"]
        assert sorted(t.normalized for t in img.tags) == sorted(info["RepoTags"])


# ---- several images, sharing ------------------------------------------------------------------

def test_multi_image_archive(lk_store, exports: dict[str, Export], engine: Engine):
    """Every image and name in podman's multi-image archive loads; ``images`` lists each name once."""
    store_dir, lines = lk_store
    names = archive_tags(exports["all-docker-archive"].path)
    assert len(names) == 2
    assert sorted(lines) == sorted(f"Loaded image: {familiar(t)}" for ts in names.values() for t in ts)
    rows = cli_json("--store", store_dir, "images")
    assert all(list(r) == IMAGES_KEYS for r in rows), rows[0].keys()
    got = sorted((r["repository"], r["tag"], r["id"]) for r in rows)
    want = sorted((*familiar(t).rsplit(":", 1), image_id) for image_id, ts in names.items() for t in ts)
    assert got == want
    for r in rows:
        info = engine.inspect(r["id"].split(":", 1)[1])
        assert r["layers"] == len(info["RootFS"]["Layers"])
        assert isinstance(r["size"], int) and r["size"] > 0
    store = Store(store_dir)
    assert blob_files(store_dir) == sorted(referenced_blobs(store))


@pytest.mark.parametrize("second", ["skopeo-oci-layout-gzip", "podman-docker-archive"])
def test_base_layer_stored_once(second: str, exports: dict[str, Export], base_image: Built,
                                multi_image: Built, tmp_path: Path):
    """Loading the multi image after its base stores the base layer once, whatever compression it came in."""
    d = tmp_path / "store"
    store, _ = load_into(d, exports["base-docker-archive"].load_arg)
    base = store.image(base_image.name)
    before = blob_files(d)
    assert len(before) == 3  # manifest, config, one layer
    store, _ = load_into(d, exports[second].load_arg)
    multi = store.image(multi_image.name)
    base = store.image(base_image.name)
    source_layers = skopeo_manifest(exports[second].ref)["layers"]
    assert multi.layers[0].diff_id == base.layers[0].diff_id
    assert multi.layers[0].digest == base.layers[0].digest
    after = blob_files(d)
    new = set(after) - set(before)
    # the new blobs: the multi image's manifest and config and its layers above the base, nothing else
    assert new == {multi.manifest_digest, multi.id, *(la.digest for la in multi.layers[1:])}
    assert len(after) == len(before) + 2 + len(source_layers) - 1
    assert [la.digest for la in multi.layers[1:]] == [d_["digest"] for d_ in source_layers[1:]]
    # loading the same export again changes nothing
    index_before = (d / "index.json").read_bytes()
    load_into(d, exports[second].load_arg)
    assert blob_files(d) == after
    assert json.loads((d / "index.json").read_bytes()) == json.loads(index_before)

    _, config = skopeo_config(exports[second].ref)
    layers = cli_json("--store", d, "layers", multi_image.name)
    assert [list(r) for r in layers] == [LAYERS_KEYS] * len(layers)
    assert [r["created_by"] for r in layers] == [h.get("created_by", "") for h in config["history"]
                                                 if not h.get("empty_layer")]
    assert [(r["digest"], r["compressed_size"], r["diff_id"]) for r in layers] == \
        [(la.digest, la.compressed_size, la.diff_id) for la in multi.layers]
    assert layers[0]["shared_by"] == [familiar(base_image.name)]
    assert all(r["shared_by"] == [] for r in layers[1:])
    df = cli_json("--store", d, "df", "-v")
    counts = {r["diff_id"]: r["images"] for r in df["layers"]}
    assert len(df["layers"]) == len(multi.layers)
    assert counts[base.layers[0].diff_id] == 2


def test_untagged_image_in_and_out(engine: Engine, multi_image: Built, tmp_path: Path, new_engine):
    """An image saved by ID (no name) loads as Docker reports it (``Loaded image ID:``, ``<none>``), and
    layerkit's save of it by short ID loads back into podman with the same ID."""
    archive = tmp_path / "byid.tar"
    engine.podman("save", "--format", "docker-archive", "-o", archive, multi_image.id.split(":", 1)[1])
    assert archive_tags(archive) == {multi_image.id: []}, "podman should write no name"
    layout = tmp_path / "layout"
    skopeo_copy(engine.storage_ref(multi_image.name), f"oci:{layout}")
    assert archive_tags(layout) == {multi_image.id: []}
    for source in (archive, layout):
        d = tmp_path / f"store-{source.name}"
        store, lines = load_into(d, str(source))
        assert lines == [f"Loaded image ID: {multi_image.id}"]
        rows = cli_json("--store", d, "images")
        assert [(r["repository"], r["tag"], r["id"]) for r in rows] == [("<none>", "<none>", multi_image.id)]
        assert store.image(multi_image.id[7:19]).id == multi_image.id
    out = tmp_path / "saved.tar"
    cli_ok("--store", d, "save", multi_image.id[7:19], "-o", out)
    assert archive_tags(out) == {multi_image.id: []}
    podman = new_engine("podman")
    podman.load(out)
    assert "sha256:" + podman.inspect(multi_image.id[7:19])["Id"] == multi_image.id


# ---- the store as other tools see it ----------------------------------------------------------

def test_skopeo_and_umoci_read_the_store(lk_store):
    """``skopeo inspect oci:STORE:NAME`` and ``umoci ls --layout STORE`` read layerkit's store."""
    require("umoci", "skopeo")
    store_dir = lk_store[0]
    store = Store(store_dir)
    names = sorted(t.normalized for img in store.images() for t in img.tags)
    assert "docker.io/library/lk-multi:latest" in names
    assert sorted(run(["umoci", "ls", "--layout", store_dir]).split()) == names
    for name in names:
        img = store.image(name)
        ref = f"oci:{store_dir}:{name}"
        image_id, config = skopeo_config(ref)
        assert image_id == img.id
        assert config["rootfs"]["diff_ids"] == img.diff_ids
        manifest = skopeo_manifest(ref)
        assert [d["digest"] for d in manifest["layers"]] == [la.digest for la in img.layers]
        summary = json.loads(run(["skopeo", "inspect", ref]))
        assert summary["Layers"] == [la.digest for la in img.layers]
        assert summary["Digest"] == img.manifest_digest


def test_umoci_unpack_matches_source(lk_store, exports: dict[str, Export], multi_image: Built, tmp_path: Path):
    """``umoci unpack`` of the image in layerkit's store gives the same tree as from skopeo's own layout
    (whiteouts applied, hardlinks, symlinks and modes intact)."""
    require("umoci")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run(["umoci", "unpack", "--image", f"{lk_store[0]}:{multi_image.name}", ours])
    run(["umoci", "unpack", "--image", f"{exports['skopeo-oci-layout-plain'].path}:{multi_image.name}", theirs])
    a, b = tree_listing(ours / "rootfs"), tree_listing(theirs / "rootfs")
    assert a == b
    assert "/app/data" not in a and "/app/remove-me" not in a and "/app/hello.txt" in a


# ---- 3. round trip: layerkit save -> podman -------------------------------------------------------

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci"])
def test_save_roundtrip_into_podman(fmt: str, lk_store, base_image: Built, multi_image: Built,
                                    multi_output: str, tmp_path: Path, new_engine):
    """What ``layerkit save`` writes loads into a fresh podman with the same IDs, diff_ids and history,
    and runs: the busybox image prints ``ok``, the multi image prints what the original printed."""
    store_dir = lk_store[0]
    store = Store(store_dir)
    podman = new_engine("podman")

    # one image per output: `podman load` itself takes it
    single = tmp_path / f"base.{fmt}"
    cli_ok("--store", store_dir, "save", base_image.name, "-o", single, "--format", fmt)
    loaded = [line.removeprefix("Loaded image: ") for line in podman.load(single).splitlines()]
    assert len(loaded) == 1, loaded
    if fmt != "oci":  # podman names an image loaded from an OCI directory after the path, not ref.name
        assert loaded == [base_image.name]
    info = podman.inspect(loaded[0])
    assert "sha256:" + info["Id"] == store.image(base_image.name).id == base_image.id
    assert info["RootFS"]["Layers"] == store.image(base_image.name).diff_ids
    assert podman.run_container(loaded[0], "echo", "ok") == "ok\n"

    # two images in one output (podman load takes several only from a docker-archive; skopeo names one)
    both = tmp_path / f"both.{fmt}"
    cli_ok("--store", store_dir, "save", base_image.name, multi_image.name, "-o", both, "--format", fmt)
    other = new_engine("podman2")
    if fmt == "docker-archive":
        other.load(both)
    else:
        for name in (base_image.name, multi_image.name):
            skopeo_copy(f"{fmt}:{both}:{name}", other.storage_ref(name))
    for built in (base_image, multi_image):
        img = store.image(built.name)
        info = other.inspect(built.name)
        assert "sha256:" + info["Id"] == img.id == built.id
        assert info["RootFS"]["Layers"] == img.diff_ids
        hist = other.history(built.name)
        assert [h["CreatedBy"] for h in hist] == [r.created_by for r in img.history()]
    assert other.run_container(multi_image.name) == multi_output
    assert other.run_container(base_image.name, "echo", "ok") == "ok\n"


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
@pytest.mark.parametrize("source", ["skopeo-oci-layout-gzip", "skopeo-oci-layout-zstd"])
def test_save_from_compressed_store(source: str, fmt: str, exports: dict[str, Export], multi_image: Built,
                                    multi_output: str, tmp_path: Path, new_engine):
    """A store whose layers came gzip or zstd saves to archives podman loads (docker-archive layers are
    decompressed, OCI keeps the blobs) with the same ID and diff_ids, and the image runs the same."""
    store, _ = load_into(tmp_path / "store", exports[source].load_arg)
    img = store.image(multi_image.name)
    out = tmp_path / f"multi.{fmt}"
    cli_ok("--store", store.root, "save", multi_image.name, "-o", out, "--format", fmt)
    manifest = skopeo_manifest(f"{fmt}:{out}")
    if fmt == "oci-archive":
        assert [d["digest"] for d in manifest["layers"]] == [la.digest for la in img.layers]
    else:  # a docker-archive holds the uncompressed tars, named by diff_id
        assert [d["digest"] for d in manifest["layers"]] == img.diff_ids
    podman = new_engine("podman")
    assert podman.load(out).strip() == f"Loaded image: {multi_image.name}"
    info = podman.inspect(multi_image.name)
    assert "sha256:" + info["Id"] == img.id == multi_image.id
    assert info["RootFS"]["Layers"] == img.diff_ids
    assert podman.run_container(multi_image.name) == multi_output


def test_busybox_example_archive(tmp_path: Path, new_engine):
    """``layerkit.examples.busybox_archive`` loads into podman and layerkit with one ID, and runs."""
    from layerkit.examples import busybox_archive

    archive = busybox_archive(tmp_path / "bb.tar", tag="localhost/lk-example:1")
    image_id, config = skopeo_config(f"docker-archive:{archive}")
    podman = new_engine("podman")
    podman.load(archive)
    info = podman.inspect("localhost/lk-example:1")
    store, _ = load_into(tmp_path / "store", str(archive))
    img = store.image("localhost/lk-example:1")
    assert img.id == image_id == "sha256:" + info["Id"]
    assert img.diff_ids == config["rootfs"]["diff_ids"] == info["RootFS"]["Layers"]
    assert podman.run_container("localhost/lk-example:1", "echo", "ok") == "ok\n"


# ---- 4. history as docker history prints it -----------------------------------------------------

def test_history_table_like_docker(lk_store, multi_image: Built, multi_config, layer_tars: dict[str, Path]):
    """Header, ``<missing>`` rows, CREATED as "N units ago", CREATED BY cut at 45, SIZE in Docker's units."""
    out = cli_ok("--store", lk_store[0], "history", multi_image.name)
    headers = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert re.split(r"\s{2,}", out.splitlines()[0].strip()) == headers
    rows = table_rows(out, headers)
    image_id, config = multi_config
    want = list(reversed(config["history"]))
    assert len(rows) == len(want)
    # loaded images have no local parents: only the top row names an image, as Docker shows it
    assert rows[0]["IMAGE"] == image_id.split(":", 1)[1][:12]
    assert all(r["IMAGE"] == "<missing>" for r in rows[1:])
    non_empty = iter(reversed(config["rootfs"]["diff_ids"]))
    for r, h in zip(rows, want, strict=True):
        assert AGO.match(r["CREATED"]), r["CREATED"]
        assert r["CREATED BY"] == docker_ellipsis(h["created_by"], 45)
        size = 0 if h.get("empty_layer") else gnu_tar_docker_size(layer_tars[next(non_empty)])
        assert r["SIZE"] == docker_human_size(size)
        assert r["COMMENT"] == h.get("comment", "")
    assert any(len(h["created_by"]) > 45 for h in want), "the image should exercise truncation"

    full = cli_ok("--store", lk_store[0], "history", "--no-trunc", multi_image.name)
    rows = table_rows(full, headers)
    assert rows[0]["IMAGE"] == image_id
    assert [r["CREATED BY"] for r in rows] == [h["created_by"].strip() for h in want]


def test_history_json_keys_and_values(lk_store, multi_image: Built, multi_config, layer_tars: dict[str, Path]):
    """``history --format json``: DESIGN.md's keys, full IDs, RFC 3339 UTC times, integer sizes."""
    rows = cli_json("--store", lk_store[0], "history", multi_image.name)
    image_id, config = multi_config
    want = list(reversed(config["history"]))
    assert [list(r) for r in rows] == [HISTORY_KEYS] * len(want)
    assert rows[0]["id"] == image_id
    assert all(r["id"] == "<missing>" for r in rows[1:])  # as docker history --format json prints it
    diff_ids = iter(reversed(config["rootfs"]["diff_ids"]))
    for r, h in zip(rows, want, strict=True):
        assert r["created_by"] == h["created_by"]
        assert r["comment"] == h.get("comment", "")
        assert r["empty_layer"] is bool(h.get("empty_layer"))
        assert r["created"].endswith("Z")
        assert parse_rfc3339(r["created"]) == parse_rfc3339(h["created"])
        if h.get("empty_layer"):
            assert r["size"] == 0 and r["diff_id"] is None
        else:
            d = next(diff_ids)
            assert r["diff_id"] == d
            assert type(r["size"]) is int and r["size"] == gnu_tar_docker_size(layer_tars[d])


def test_base_image_names(lk_store, base_image: Built):
    """The buildah-built base keeps its single name and its one buildah history entry."""
    img = Store(lk_store[0]).image(BASE)
    _, config = skopeo_config(f"oci:{lk_store[0]}:{BASE}")
    assert img.id == base_image.id
    assert [r.created_by for r in img.history()] == [h.get("created_by", "") for h in reversed(config["history"])]
    assert MULTI not in [t.normalized for t in img.tags]
