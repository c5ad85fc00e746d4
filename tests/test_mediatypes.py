"""``engine/mediatypes.py``: media types, descriptors and the one platform matcher.

The media types are checked against what the real tools write (skopeo into OCI layouts uncompressed, gzip
and zstd; skopeo into a ``dir:`` as Docker schema 2), descriptors against the checks hostile input needs,
and the platform matcher against the OCI image spec's variant table with containerd's normalisation,
then against skopeo's own choice of instance from the same multi-platform index where the two tools'
rules agree (an explicit variant; arm64 with and without ``v8``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path

import pytest
from builders import F, layer_tar, write_layout
from realtools import require, run, skopeo_copy

from layerkit.engine import mediatypes as mt
from layerkit.engine.mediatypes import Descriptor, InvalidPlatform, Platform, choose_platform, platform_rank
from layerkit.errors import InvalidManifest, UnsupportedMediaType

DIGEST = "sha256:" + "ab" * 32


# ---- media types, as the real tools write them ------------------------------------------------------

@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, tuple[dict, list[str]]]:
    """skopeo's manifests of one image (an uncompressed layer in an OCI layout): copied into OCI layouts
    uncompressed, gzip and zstd, and into a ``dir:`` as Docker schema 2 (gzip); each as (manifest, [the
    media types of the layout's index.json entries])."""
    require("skopeo")
    root = tmp_path_factory.mktemp("mediatypes")
    src = write_layout(root / "src", [layer_tar([F("etc/motd", b"hello\n"), F("bin/tool", bytes(5000))])], "t")
    out: dict[str, tuple[dict, list[str]]] = {}
    for kind, flags in {"tar": ["--dest-oci-accept-uncompressed-layers"],
                        "gzip": ["--dest-compress", "--dest-compress-format", "gzip"],
                        "zstd": ["--dest-compress", "--dest-compress-format", "zstd"]}.items():
        d = root / f"oci-{kind}"
        skopeo_copy(f"oci:{src}:t", f"oci:{d}:t", *flags)
        index = json.loads((d / "index.json").read_text())
        desc = index["manifests"][0]
        manifest = json.loads((d / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
        out[kind] = (manifest, [m["mediaType"] for m in index["manifests"]])
    d = root / "dir-v2s2"
    skopeo_copy(f"oci:{src}:t", f"dir:{d}", "--format", "v2s2", "--dest-compress")
    out["docker"] = (json.loads((d / "manifest.json").read_text()), [])
    return out


@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
def test_oci_types_as_skopeo_writes_them(written, kind):
    manifest, index_types = written[kind]
    assert index_types == [mt.OCI_MANIFEST]
    assert mt.is_manifest(manifest["mediaType"]) and manifest["mediaType"] == mt.OCI_MANIFEST
    config = Descriptor.from_json(manifest["config"], "config")
    assert config.media_type == mt.OCI_CONFIG and mt.is_config(config.media_type)
    for raw in manifest["layers"]:
        layer = Descriptor.from_json(raw, "layer")
        assert mt.is_layer(layer.media_type) and mt.is_distributable(layer.media_type)
        assert mt.compression_of(layer.media_type) == kind
        assert mt.oci_layer_type(kind) == layer.media_type
        assert layer.to_json() == raw  # nothing read is lost, nothing added


def test_docker_types_as_skopeo_writes_them(written):
    manifest, _ = written["docker"]
    assert manifest["mediaType"] == mt.DOCKER_MANIFEST and mt.is_manifest(manifest["mediaType"])
    assert manifest["config"]["mediaType"] == mt.DOCKER_CONFIG and mt.is_config(mt.DOCKER_CONFIG)
    for raw in manifest["layers"]:
        assert raw["mediaType"] == mt.DOCKER_LAYER_GZIP
        assert mt.compression_of(raw["mediaType"]) == "gzip"


def test_kinds_never_overlap():
    kinds = [mt.MANIFEST_TYPES, mt.INDEX_TYPES, mt.SCHEMA1_TYPES, mt.CONFIG_TYPES, set(mt.LAYER_COMPRESSION)]
    everything = [t for k in kinds for t in k]
    assert len(everything) == len(set(everything))
    assert mt.is_index(mt.OCI_INDEX) and mt.is_index(mt.DOCKER_MANIFEST_LIST)
    assert not mt.is_index(mt.OCI_MANIFEST) and not mt.is_manifest(mt.OCI_INDEX)
    assert mt.is_schema1(mt.DOCKER_SCHEMA1_SIGNED) and not mt.is_manifest(mt.DOCKER_SCHEMA1)
    assert set(mt.ACCEPTED_MANIFESTS) == mt.MANIFEST_TYPES | mt.INDEX_TYPES
    for t in (mt.OCI_LAYER_NONDISTRIBUTABLE, mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
              mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD, mt.DOCKER_FOREIGN_LAYER):
        assert mt.is_layer(t) and not mt.is_distributable(t)
    assert mt.compression_of(mt.DOCKER_FOREIGN_LAYER) == "gzip"
    assert mt.compression_of(mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD) == "zstd"


def test_unknown_layer_type_is_named():
    with pytest.raises(UnsupportedMediaType, match="application/vnd.example.layer"):
        mt.compression_of("application/vnd.example.layer")
    assert not mt.is_layer(mt.OCI_CONFIG)


# ---- descriptors ---------------------------------------------------------------------------------------

def test_descriptor_round_trip():
    raw = {"mediaType": mt.OCI_MANIFEST, "digest": DIGEST, "size": 7,
           "annotations": {mt.REF_NAME: "busybox:1"},
           "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}
    d = Descriptor.from_json(raw, "index.json")
    assert (d.media_type, d.digest, d.size) == (mt.OCI_MANIFEST, DIGEST, 7)
    assert d.annotations == {mt.REF_NAME: "busybox:1"}
    assert d.platform == Platform("linux", "arm", "v7") and str(d.platform) == "linux/arm/v7"
    assert d.to_json() == raw
    bare = Descriptor.from_json({"digest": DIGEST, "size": 0}, "x")
    assert (bare.media_type, bare.annotations, bare.platform) == ("", {}, None)


@pytest.mark.parametrize("raw, words", [
    ([], ["index.json: descriptor lacks a valid digest"]),
    ({"digest": "sha256:abc", "size": 1}, ["descriptor lacks a valid digest"]),
    ({"digest": "md5:" + "a" * 32, "size": 1}, ["descriptor lacks a valid digest"]),
    ({"digest": DIGEST, "size": -1}, [DIGEST, "lacks a valid size"]),
    ({"digest": DIGEST, "size": True}, [DIGEST, "lacks a valid size"]),
    ({"digest": DIGEST, "size": "1"}, [DIGEST, "lacks a valid size"]),
    ({"digest": DIGEST, "size": 1, "mediaType": 5}, [DIGEST, "invalid mediaType"]),
    ({"digest": DIGEST, "size": 1, "annotations": ["x"]}, [DIGEST, "annotations is not an object of strings"]),
    ({"digest": DIGEST, "size": 1, "annotations": {"a": 1}}, ["annotations is not an object of strings"]),
    ({"digest": DIGEST, "size": 1, "platform": "linux/amd64"}, [DIGEST, "invalid platform"]),
    ({"digest": DIGEST, "size": 1, "platform": {"os": "linux", "architecture": 64}}, ["invalid platform"]),
    ({"digest": DIGEST, "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": 7}},
     ["invalid platform"]),
    ({"digest": DIGEST, "size": 1, "platform": {"os": "windows", "architecture": "amd64", "os.features": "x"}},
     ["invalid platform"]),
], ids=["list", "short-digest", "md5", "negative-size", "bool-size", "string-size", "mediatype-number",
        "annotations-list", "annotation-number", "platform-string", "arch-number", "variant-number",
        "features-string"])
def test_descriptor_refusals_name_where_and_what(raw, words):
    with pytest.raises(InvalidManifest) as exc:
        Descriptor.from_json(raw, "index.json")
    msg = str(exc.value)
    assert msg.startswith("index.json: ") and "\n" not in msg
    for w in words:
        assert w in msg, msg


# ---- platforms: the image spec's variants, containerd's normalisation -------------------------------------

def P(text: str) -> Platform:
    return Platform.parse(text)


@pytest.mark.parametrize("have, want, rank", [
    # arm64: v8 is the base variant, written or not
    ("linux/arm64", "linux/arm64", 0),
    ("linux/arm64/v8", "linux/arm64", 0),
    ("linux/arm64", "linux/arm64/v8", 0),
    ("linux/arm64/v8.0", "linux/arm64/v8", 0),
    ("linux/aarch64", "linux/arm64/v8", 0),
    ("linux/arm64/v8.2", "linux/arm64", None),  # newer than the machine
    ("linux/arm64/v8", "linux/arm64/v8.2", 2),
    ("linux/arm64/v8.1", "linux/arm64/v8.2", 1),
    ("linux/arm64/v9", "linux/arm64/v9.1", 1),
    ("linux/arm64/v8.6", "linux/arm64/v9.1", 2),  # v9.x runs v8.(x+5)
    ("linux/arm64/v8.7", "linux/arm64/v9.1", None),
    ("linux/arm/v7", "linux/arm64", None),  # another architecture, never
    # arm: the machine's variant, then the older ones; v7 when none is written
    ("linux/arm/v7", "linux/arm/v7", 0),
    ("linux/arm/v6", "linux/arm/v7", 1),
    ("linux/arm/v5", "linux/arm/v7", 2),
    ("linux/arm/v8", "linux/arm/v7", None),
    ("linux/arm/v7", "linux/arm/v6", None),
    ("linux/arm/v6", "linux/arm/v6", 0),
    ("linux/arm/v5", "linux/arm/v6", 1),
    ("linux/arm", "linux/arm/v7", 0),
    ("linux/arm/v7", "linux/arm", 0),
    ("linux/arm", "linux/arm/v6", None),
    ("linux/arm/7", "linux/arm/v7", 0),
    ("linux/armhf", "linux/arm/v7", 0),
    ("linux/armel", "linux/arm/v6", 0),
    ("linux/arm/v7", "linux/arm/v8", 1),
    # amd64: v1 is the base; a v3 machine runs v3, v2, v1
    ("linux/amd64", "linux/amd64", 0),
    ("linux/amd64/v1", "linux/amd64", 0),
    ("linux/x86_64", "linux/amd64", 0),
    ("linux/amd64/v2", "linux/amd64", None),
    ("linux/amd64/v3", "linux/amd64/v3", 0),
    ("linux/amd64/v2", "linux/amd64/v3", 1),
    ("linux/amd64", "linux/amd64/v3", 2),
    ("linux/amd64/v4", "linux/amd64/v3", None),
    ("linux/386", "linux/amd64", None),
    ("linux/i386", "linux/386", 0),
    # the rest: exact, any case
    ("windows/amd64", "linux/amd64", None),
    ("Linux/AMD64", "linux/amd64", 0),
    ("linux/s390x", "linux/s390x", 0),
    ("linux/riscv64/rva22", "linux/riscv64", None),
    ("linux/riscv64/rva22", "linux/riscv64/rva22", 0),
])
def test_platform_rank(have, want, rank):
    assert platform_rank(P(have), P(want)) == rank


def test_no_platform_matches_nothing():
    assert platform_rank(None, P("linux/amd64")) is None
    assert platform_rank(Platform("", ""), P("linux/amd64")) is None


def test_choose_prefers_the_machines_own_variant_then_index_order():
    descs = [Descriptor(mt.OCI_MANIFEST, "sha256:" + c * 64, 1, platform=P(p))
             for c, p in zip("12345", ["linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64",
                                       "linux/arm64/v8"], strict=True)]
    descs.append(Descriptor(mt.OCI_MANIFEST, "sha256:" + "6" * 64, 1))  # no platform
    assert choose_platform(descs, P("linux/arm/v7")) is descs[2]
    assert choose_platform(descs, P("linux/arm/v6")) is descs[1]
    assert choose_platform(descs, P("linux/arm/v5")) is descs[0]
    assert choose_platform(descs, P("linux/arm64")) is descs[3]  # arm64 and arm64/v8 tie: the first
    assert choose_platform(descs[::-1], P("linux/arm64")) is descs[4]
    assert choose_platform(descs, P("linux/amd64")) is None


@pytest.mark.parametrize("text", ["amd64", "linux/", "/amd64", "linux/arm/v7/x", ""])
def test_platform_text_refused(text):
    with pytest.raises(InvalidPlatform, match="expected os/arch"):
        Platform.parse(text)


def test_platform_text_and_json():
    assert P(" Linux/ARM64/V8 ") == Platform("linux", "arm64", "v8")
    assert Platform("windows", "amd64", os_version="10.0.17763.1").to_json() == \
        {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1"}
    assert Platform.from_json({"os": "linux", "architecture": "arm", "variant": "v6"}, "x") == P("linux/arm/v6")


def test_host_platform_is_podmans():
    """This machine's platform as Podman (Go's GOOS/GOARCH) names it."""
    require("podman")
    host = mt.host_platform()
    assert f"{host.os}/{host.architecture}" == run(["podman", "version", "--format", "{{.Client.OsArch}}"]).strip()
    assert host.variant == ("v" + platform.machine()[4] if platform.machine().startswith("armv") else "")


# ---- against skopeo's choice from a real multi-platform layout -----------------------------------------

PLATFORMS = ["linux/amd64", "linux/arm64/v8", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/s390x"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> tuple[Path, list[Descriptor]]:
    """An OCI layout whose ``multi`` entry is an image index of one tiny image per platform of PLATFORMS."""
    root = tmp_path_factory.mktemp("multi")
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    entries = []
    for text in PLATFORMS:
        p = P(text)
        layer = layer_tar([F("platform", text.encode())])
        config = json.dumps({**p.to_json(), "rootfs": {"type": "layers", "diff_ids": [
            "sha256:" + hashlib.sha256(layer).hexdigest()]}, "config": {}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                               "config": {"mediaType": mt.OCI_CONFIG, **put(config)},
                               "layers": [{"mediaType": mt.OCI_LAYER, **put(layer)}]}).encode()
        entries.append({"mediaType": mt.OCI_MANIFEST, **put(manifest), "platform": p.to_json()})
    inner = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_INDEX, **put(inner), "annotations": {mt.REF_NAME: "multi"}}]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root, [Descriptor.from_json(e, "index") for e in entries]


def _skopeo_choice(layout: Path, out: Path, want: Platform) -> Platform:
    """The platform of the image skopeo copies out of the index for a machine of platform ``want`` (read
    from the copied image's config, which each image of the index has its platform in)."""
    flags = ["--override-os", want.os, "--override-arch", want.architecture]
    if want.variant:
        flags += ["--override-variant", want.variant]
    subprocess.run(["skopeo", *flags, "copy", "--quiet", "--dest-oci-accept-uncompressed-layers",
                    f"oci:{layout}:multi", f"oci:{out}:x"], check=True, capture_output=True, timeout=120)
    blobs = out / "blobs" / "sha256"
    manifest = json.loads((blobs / json.loads((out / "index.json").read_text())["manifests"][0]["digest"][7:])
                          .read_bytes())
    return Platform.from_json(json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes()), "config")


@pytest.mark.parametrize("want", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5", "linux/arm64/v8",
                                  "linux/arm64", "linux/amd64", "linux/s390x"])
def test_same_choice_as_skopeo(multi, tmp_path, want):
    require("skopeo")
    layout, descs = multi
    chosen = choose_platform(descs, P(want))
    assert chosen is not None
    assert _skopeo_choice(layout, tmp_path / "out", P(want)) == chosen.platform


@pytest.mark.parametrize("want, falls_back_to", [("linux/arm/v7", "linux/arm/v6"), ("linux/arm/v6", "linux/arm/v5")])
def test_older_variant_chosen_as_skopeo_chooses_it(multi, tmp_path, want, falls_back_to):
    """Without the machine's own variant in the index, the next older one, by both tools."""
    require("skopeo")
    layout, descs = multi
    drop = P(want)
    rest = [d for d in descs if d.platform != drop]
    chosen = choose_platform(rest, drop)
    assert chosen is not None and chosen.platform == P(falls_back_to)
    # the same index without that entry, for skopeo
    inner_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    inner = json.loads((layout / "blobs" / "sha256" / inner_digest[7:]).read_bytes())
    inner["manifests"] = [m for m in inner["manifests"] if Platform.from_json(m["platform"], "x") != drop]
    data = json.dumps(inner).encode()
    h = hashlib.sha256(data).hexdigest()
    copy = tmp_path / "layout"
    subprocess.run(["cp", "-r", str(layout), str(copy)], check=True)
    (copy / "blobs" / "sha256" / h).write_bytes(data)
    (copy / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_INDEX, "digest": "sha256:" + h, "size": len(data),
         "annotations": {mt.REF_NAME: "multi"}}]}))
    assert _skopeo_choice(copy, tmp_path / "out", drop) == chosen.platform
