"""The image pipeline: ``copy_image`` between any source and destination, and the table of transports.

- a transport is one module and one registration: a small in-memory transport registered here takes part
  in ``copy`` both ways, and what it hands on is what skopeo reads;
- ``copy_image`` copies between two transports without the store: a docker-archive into an OCI layout
  (blobs stored as they came, so a layer's digest is its diff_id), an OCI layout with gzip layers into a
  docker-archive (inflated, checked against the config's diff_ids), and a docker-archive straight to a
  registry (spooled once, digest checked); skopeo judges each result;
- a layer that does not hash to its digest stops the copy and leaves the destination as it was.

Needs ``skopeo`` and ``busybox`` (and ``docker-registry`` for the registry case).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import builders
import pytest
from realtools import require, run_bytes, skopeo_copy
from services import start_registry

from layerkit.engine.store import Store
from layerkit.errors import DigestMismatch
from layerkit.examples import busybox_archive
from layerkit.formats.archive_writers import DockerArchiveDestination, OciLayoutDestination
from layerkit.formats.copy import copy
from layerkit.formats.imagesource import LayerSource, SourceImage
from layerkit.formats.pipeline import Listed, copy_image, spool
from layerkit.formats.registry.pushing import RegistryDestination
from layerkit.formats.transports import registry as table

BB = "lk.test/busybox:1"


def config_of(ref: str, *flags: str) -> bytes:
    """The raw config skopeo reads at ``ref``."""
    return run_bytes(["skopeo", "inspect", *flags, "--config", "--raw", ref])


def image_id(ref: str, *flags: str) -> str:
    """The image ID (sha256 of the config) skopeo reads at ``ref``."""
    return "sha256:" + hashlib.sha256(config_of(ref, *flags)).hexdigest()


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    """A busybox docker-archive and its image ID."""
    require("skopeo", "busybox")
    root = tmp_path_factory.mktemp("transports")
    path = busybox_archive(root / "bb.tar", tag=BB)
    return path, image_id(f"docker-archive:{path}")


# ---- a transport of one module ---------------------------------------------------------------------------

MEMORY: dict[str, tuple[SourceImage, dict[str, bytes]]] = {}  # name -> (image, its layer blobs by digest)


class MemorySource:
    """``mem:NAME``: an image this test's destination kept, its layers read from memory."""

    def __init__(self, name: str) -> None:
        self.label = f"mem:{name}"
        self.name = name

    def images(self):
        image, blobs = MEMORY[self.name]
        layers = [LayerSource(open=lambda d=la.digest: io.BytesIO(blobs[d]), label=f"{self.label}: {la.digest}",
                              size=len(blobs[la.digest]), digest=la.digest) for la in image.layers]
        yield SourceImage(image.config_bytes, layers, image.names, self.label, image.expected_id,
                          image.manifest_bytes, image.media_types)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemoryDestination:
    """``mem:NAME`` as a destination: layers read (and digest-checked) into memory, visible at commit."""

    def __init__(self, name: str) -> None:
        self.label = f"mem:{name}"
        self.name = name
        self.pending: list[tuple[SourceImage, dict[str, bytes]]] = []

    def has_blob(self, digest: str) -> bool:
        return any(digest in blobs for _, blobs in MEMORY.values())

    def put_image(self, image, names, progress=None) -> None:
        blobs = {}
        for layer in image.layers:
            buf = io.BytesIO()
            digest, _, _ = spool(layer, buf)  # size and digest checked as the bytes pass
            blobs[digest] = buf.getvalue()
        layers = [LayerSource(open=None, label="", size=len(blobs[d]), digest=d) for d in blobs]
        self.pending.append((SourceImage(image.config_bytes, layers, names, self.label, image.expected_id,
                                         image.manifest_bytes, image.media_types), blobs))

    def commit(self) -> list:
        for entry in self.pending:
            MEMORY[self.name] = entry
        return [image.expected_id for image, _ in self.pending]

    def abort(self) -> None:
        self.pending = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.abort()


def test_a_transport_is_one_module_and_one_registration(bb, tmp_path):
    path, bb_id = bb
    table.register("mem", source=lambda loc, **_: MemorySource(loc.path),
                   destination=lambda loc, **_: MemoryDestination(loc.path))
    try:
        store = Store(tmp_path / "store")
        res = copy(store, f"docker-archive:{path}", "mem:bb")
        assert res["id"] == bb_id and res["names"] == [BB]  # the names the archive gave it
        image, blobs = MEMORY["bb"]
        assert image.expected_id == bb_id and blobs
        # and out of it again, into a fresh store and on to an OCI archive skopeo reads
        out = tmp_path / "bb-oci.tar"
        res = copy(Store(tmp_path / "fresh"), "mem:bb", f"oci-archive:{out}:again")
        assert res["id"] == bb_id
        assert image_id(f"oci-archive:{out}:again") == bb_id
        # straight through the pipeline too, no store involved
        with table.open_source("mem:bb") as src:
            layout = tmp_path / "layout"
            copy_image(src, OciLayoutDestination(layout, name="direct"))
        assert image_id(f"oci:{layout}:direct") == bb_id
    finally:
        table._TABLE.pop("mem", None)
        MEMORY.clear()


# ---- between transports, without the store -------------------------------------------------------------

def test_docker_archive_into_a_layout_keeps_the_blobs_as_they_came(bb, tmp_path):
    path, bb_id = bb
    layout = tmp_path / "layout"
    with table.open_source(f"docker-archive:{path}") as src:
        [(got_id, refs)] = copy_image(src, table.open_destination(f"oci:{layout}:bb"))
    assert got_id == bb_id and refs == ["bb"]
    assert image_id(f"oci:{layout}:bb") == bb_id
    manifest = json.loads(run_bytes(["skopeo", "inspect", "--raw", f"oci:{layout}:bb"]))
    diff_ids = json.loads(config_of(f"oci:{layout}:bb"))["rootfs"]["diff_ids"]
    # uncompressed in the archive, uncompressed in the layout: the blob digest is the diff_id
    assert [la["digest"] for la in manifest["layers"]] == diff_ids
    assert {la["mediaType"] for la in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}
    assert not list(layout.glob("blobs/sha256/.*"))  # no temporary file left behind


def test_gzip_layout_into_a_docker_archive_is_inflated_and_checked(bb, tmp_path):
    path, _ = bb
    gz = tmp_path / "gz"
    skopeo_copy(f"docker-archive:{path}", f"oci:{gz}:bb")  # skopeo gzips every layer for an OCI layout
    manifest = json.loads(run_bytes(["skopeo", "inspect", "--raw", f"oci:{gz}:bb"]))
    assert all(la["mediaType"].endswith("+gzip") for la in manifest["layers"])
    gz_id = image_id(f"oci:{gz}:bb")  # skopeo rewrites the config for OCI: another ID
    out = tmp_path / "bb.tar"
    with table.open_source(f"oci:{gz}:bb") as src:
        copy_image(src, DockerArchiveDestination(out), names=lambda image: image.names)
    assert image_id(f"docker-archive:{out}") == gz_id
    with tarfile.open(out) as tf:
        entry = json.load(tf.extractfile("manifest.json"))[0]
        for name in entry["Layers"]:  # each member is the uncompressed tar its name (the diff_id) says
            data = tf.extractfile(name).read()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == "sha256:" + name.removesuffix(".tar")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _lying_image(bb_archive: Path) -> SourceImage:
    """The busybox archive's image with its first layer's bytes changed (its digest still the old one)."""
    with table.open_source(f"docker-archive:{bb_archive}") as src:
        [image] = list(src.images())
        real = image.layers[0]
        with real.open() as f:
            data = bytearray(f.read())
    digest = "sha256:" + hashlib.sha256(data).hexdigest()  # what the bytes were: the config's diff_id
    data[-1] ^= 1
    fake = LayerSource(open=lambda: io.BytesIO(bytes(data)), label="fake layer", size=len(data), digest=digest)
    return SourceImage(image.config_bytes, [fake, *image.layers[1:]], image.names, "lying image",
                       image.expected_id)


def test_a_layer_that_lies_leaves_the_destination_as_it_was(bb, tmp_path):
    path, _ = bb
    lying = _lying_image(path)
    layout = tmp_path / "layout"
    with pytest.raises(DigestMismatch, match="fake layer: blob hashes to sha256:"):
        copy_image(Listed("lying", [lying]), OciLayoutDestination(layout, name="x"))
    assert not layout.exists()
    out = tmp_path / "x.tar"  # the blob is the tar (digest = diff_id): streamed in, checked at its end
    with pytest.raises(DigestMismatch, match="fake layer: blob hashes to sha256:"):
        copy_image(Listed("lying", [lying]), DockerArchiveDestination(out))
    assert list(tmp_path.iterdir()) == []


def test_docker_archive_straight_to_a_registry(bb, tmp_path, monkeypatch):
    require("docker-registry")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    path, bb_id = bb
    reg = start_registry(tmp_path / "registry", access_log=False)
    try:
        store = Store(tmp_path / "store")  # holds only the registry state and the spooled layers
        with table.open_source(f"docker-archive:{path}") as src:
            [res] = copy_image(src, RegistryDestination(store, f"{reg.host}/lk/bb:1"))
        assert res.image_id == bb_id and res.transferred_bytes > 0
        assert image_id(f"docker://{reg.host}/lk/bb:1", "--tls-verify=false") == bb_id
        assert store.images() == [] and not any(store.blobs.tmp_dir.iterdir())
        # the same again: every blob is there already
        with table.open_source(f"docker-archive:{path}") as src:
            [again] = copy_image(src, RegistryDestination(store, f"{reg.host}/lk/bb:1"))
        assert again.transferred_bytes == 0
    finally:
        reg.stop()


def test_an_archive_layer_that_is_not_its_diff_id_is_refused(tmp_path):
    """A docker-archive's layer whose tar is not what the config's diff_id says never reaches a layout or a
    registry (a plain tar's blob digest is its diff_id, so the copy checks it as it hashes)."""
    said = builders.layer_tar([builders.F("said.txt", b"what the config claims\n")])
    sent = builders.layer_tar([builders.F("sent.txt", b"what the archive holds\n")])
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(said).hexdigest()]}
                         }).encode()
    archive = tmp_path / "lie.tar"
    with tarfile.open(archive, "w") as tf:
        builders.add_member(tf, "config.json", config)
        builders.add_member(tf, "layer/layer.tar", sent)
        builders.add_member(tf, "manifest.json", json.dumps(
            [{"Config": "config.json", "RepoTags": ["lk.test/lie:1"], "Layers": ["layer/layer.tar"]}]).encode())
    layout = tmp_path / "layout"
    with table.open_source(f"docker-archive:{archive}") as src, \
            pytest.raises(DigestMismatch, match=r"layer/layer.tar: uncompressed layer hashes to sha256:\w+, but "
                                                r"the config's diff_id is sha256:"):
        copy_image(src, table.open_destination(f"oci:{layout}:lie"))
    assert not layout.exists()
