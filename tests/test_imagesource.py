"""The file transports' sources (formats/transports/archives.py) on archives written by podman and skopeo:
each names the image skopeo would pick, reads only documents until a layer is opened, and refuses what
skopeo refuses, with the reference in the message."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
from builders import many_images_archive

from layerkit.errors import ImageNotFound, InvalidArchive, LayerkitError, NotFound
from layerkit.formats.imagesource import ImageSource
from layerkit.formats.transports.location import TransportError
from layerkit.formats.transports.registry import Transport, is_transport_reference, open_source, register, transport


def _inspect(ref: str) -> dict:
    """What skopeo says of the image a reference names (its config digest and layers)."""
    out = subprocess.run(["skopeo", "inspect", "--raw", ref], check=True, capture_output=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("key", ["podman-docker-archive", "podman-oci-archive", "skopeo-docker-archive",
                                 "skopeo-oci-archive", "skopeo-oci-layout-plain", "skopeo-oci-layout-gzip",
                                 "skopeo-oci-layout-zstd"])
def test_source_names_the_image_skopeo_reads(exports, multi_image, key: str) -> None:
    exp = exports[key]
    with open_source(exp.ref) as src:
        assert isinstance(src, ImageSource)
        images = list(src.images())
        _check_image(exp, multi_image, images)


def _check_image(exp, multi_image, images) -> None:
    assert len(images) == 1
    img = images[0]
    assert "sha256:" + hashlib.sha256(img.config_bytes).hexdigest() == multi_image.id
    config = json.loads(img.config_bytes)
    assert len(img.layers) == len(config["rootfs"]["diff_ids"])
    if exp.kind == "oci":  # skopeo reads the same manifest, byte for byte
        raw = subprocess.run(["skopeo", "inspect", "--raw", exp.ref], check=True, capture_output=True).stdout
        assert img.manifest_bytes == raw
        assert [la.digest for la in img.layers] == [d["digest"] for d in json.loads(raw)["layers"]]
    for la in img.layers:  # each layer opens as a stream of exactly the blob its digest names
        h = hashlib.sha256()
        with la.open() as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if la.digest:
            assert "sha256:" + h.hexdigest() == la.digest


def test_multi_image_archive_needs_a_choice_unless_every(exports, multi_image, base_image) -> None:
    path = exports["all-docker-archive"].path
    with open_source(f"docker-archive:{path}") as src, pytest.raises(LayerkitError, match="holds 2 images"):
        list(src.images())
    with open_source(f"docker-archive:{path}", every=True) as src:
        ids = {"sha256:" + hashlib.sha256(i.config_bytes).hexdigest() for i in src.images()}
    assert ids == {multi_image.id, base_image.id}
    with open_source(f"docker-archive:{path}:{base_image.name}") as src:
        (img,) = src.images()
    assert "sha256:" + hashlib.sha256(img.config_bytes).hexdigest() == base_image.id
    with open_source(f"docker-archive:{path}:@1") as src:
        (img1,) = src.images()
    with open_source(f"docker-archive:{path}:@2") as src, pytest.raises(ImageNotFound, match="out of range"):
        list(src.images())
    with open_source(f"docker-archive:{path}:nosuch") as src, pytest.raises(ImageNotFound, match="nosuch"):
        list(src.images())


def test_wrong_kind_of_path_is_named(tmp_path, exports) -> None:
    layout = exports["skopeo-oci-layout-plain"].path
    archive = exports["podman-oci-archive"].path
    with pytest.raises(InvalidArchive, match="is a directory, not an OCI archive"):
        open_source(f"oci-archive:{layout}")
    with pytest.raises(InvalidArchive, match="is a file, not an OCI layout"):
        open_source(f"oci:{archive}")
    with pytest.raises(InvalidArchive, match="is a directory, not a docker-archive"):
        open_source(f"docker-archive:{layout}")
    with pytest.raises(NotFound, match="no such file"):
        open_source(f"docker-archive:{tmp_path / 'missing.tar'}")
    with open_source(f"docker-archive:{archive}") as src, pytest.raises(InvalidArchive, match="no manifest.json"):
        list(src.images())


def test_every_image_of_a_large_archive_without_reading_a_layer(tmp_path) -> None:
    path, ids = many_images_archive(tmp_path / "many.tar", 50, 100, shared=True, prefix="src")
    with open_source(f"docker-archive:{path}", every=True) as src:
        got = list(src.images())
    assert {"sha256:" + hashlib.sha256(i.config_bytes).hexdigest() for i in got} == set(ids.values())
    assert sum(len(i.names) for i in got) == 100


def test_transport_table(tmp_path) -> None:
    assert is_transport_reference("docker-archive:/x.tar")
    assert is_transport_reference("oci:/x:name")
    assert not is_transport_reference("busybox")
    assert not is_transport_reference("lk.test/app:1")
    with pytest.raises(TransportError, match="dir"):
        open_source("dir:/tmp/x")
    seen = []

    class Echo:
        label = "echo"

        def __init__(self, loc, **opts):
            seen.append((loc.transport, loc.path, opts))

        def images(self):
            return iter(())

        def close(self):
            pass

    before = transport("oci-archive")
    try:
        new = register("oci-archive", source=Echo)  # replacing a transport is one registration
        assert isinstance(new, Transport) and transport("oci-archive") is new
        open_source("oci-archive:/some/where", every=True)
    finally:
        register(before.name, source=before.source, destination=before.destination)
    assert transport("oci-archive") == before
    assert seen == [("oci-archive", "/some/where", {"every": True})]
