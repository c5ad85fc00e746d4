"""``copy SRC DST`` between skopeo's transports (issue 6, "copy"), checked against skopeo itself.

What layerkit writes to ``oci:DIR:NAME``, ``oci-archive:PATH:NAME``, ``docker-archive:PATH:REF`` and
``docker://REF`` (a real ``docker-registry`` on 127.0.0.1, private storage, stopped by PID) is read back
with ``skopeo inspect``; what skopeo writes there, layerkit copies into its store with the same image ID.
Names are parsed as skopeo parses them (the path ends at the first colon); unknown transports and refused
references are one clear error, before anything moves. ``docker-daemon:`` copies are tested with the
Podman service in ``test_engine_api.py``. Needs the Debian packages ``skopeo``, ``docker-registry`` and
``busybox-static``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import builders
import pytest
from realtools import require, run, run_bytes, skopeo_copy
from services import start_registry

from layerkit.engine.reference import parse_reference
from layerkit.engine.store import Store
from layerkit.errors import ImageNotFound, InvalidReference, LayerkitError
from layerkit.examples import busybox_archive
from layerkit.formats.copy import TransportError, copy, parse_location
from layerkit.formats.docker_archive import save_docker_archive
from layerkit.formats.load import load_path

BB = "lk.test/bb:1"
REF_NAME = "org.opencontainers.image.ref.name"


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _archive_id(path: Path) -> str:
    """The image ID of a one-image docker-archive (its config member is named by its digest)."""
    with tarfile.open(path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    return "sha256:" + manifest[0]["Config"].split("/")[-1].removesuffix(".json")


def skopeo_config_digest(ref: str, *flags: str) -> str:
    """The config digest in the manifest skopeo reads at ``ref``."""
    return json.loads(run_bytes(["skopeo", "inspect", *flags, "--raw", ref]))["config"]["digest"]


def skopeo_image_id(ref: str, *flags: str) -> str:
    """sha256 of the raw config skopeo reads at ``ref`` (the image ID)."""
    return "sha256:" + hashlib.sha256(run_bytes(["skopeo", "inspect", *flags, "--config", "--raw", ref])).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A busybox docker-archive and a small second image (as an OCI layout), and their IDs."""
    require("skopeo", "busybox")
    root = tmp_path_factory.mktemp("copy")
    bb = busybox_archive(root / "bb.tar", tag=BB)
    small = builders.write_layout(root / "small", [_layer({"small.txt": b"a small image\n"})], "lk.test/small:1")
    small_id = load_path(Store(root / "scratch"), str(small))[0].id
    return {"root": root, "bb": bb, "bb_id": _archive_id(bb), "small": small, "small_id": small_id}


# ---- files and layouts ------------------------------------------------------------------------------

def test_docker_archive_to_oci_name_as_skopeo_reads_it(work, tmp_path):
    store = Store(tmp_path / "store")
    out = tmp_path / "layout"
    res = copy(store, f"docker-archive:{work['bb']}", f"oci:{out}:t")
    assert res["id"] == work["bb_id"] and res["names"] == ["t"]
    assert skopeo_config_digest(f"oci:{out}:t") == work["bb_id"]
    assert json.loads(run(["skopeo", "inspect", f"oci:{out}:t"]))["Digest"] == res["manifest_digest"]
    # a name holding colons and slashes is written verbatim, beside the first one
    copy(store, f"docker-archive:{work['bb']}", f"oci:{out}:lk.test/bb:v2")
    names = [m["annotations"][REF_NAME] for m in json.loads((out / "index.json").read_text())["manifests"]]
    assert sorted(names) == ["lk.test/bb:v2", "t"]
    assert skopeo_image_id(f"oci:{out}:lk.test/bb:v2") == work["bb_id"]
    # the source image is in the store now, with the name the archive gave it
    assert store.image(BB).id == work["bb_id"]


def test_oci_archive_and_docker_archive_destinations(work, tmp_path):
    store = Store(tmp_path / "store")
    copy(store, f"docker-archive:{work['bb']}", "layerkit:")
    oa = tmp_path / "bb-oci.tar"
    copy(store, BB, f"oci-archive:{oa}:busybox:v1")
    assert skopeo_config_digest(f"oci-archive:{oa}:busybox:v1") == work["bb_id"]
    da = tmp_path / "bb-docker.tar"
    res = copy(store, BB, f"docker-archive:{da}:lk.test/named")  # :latest added, as skopeo does
    assert res["names"] == ["lk.test/named:latest"]
    with tarfile.open(da) as tf:
        assert json.load(tf.extractfile("manifest.json"))[0]["RepoTags"] == ["lk.test/named:latest"]
    assert skopeo_config_digest(f"docker-archive:{da}") == work["bb_id"]
    # without REF the archive carries the name the source was addressed by (as `docker save NAME`)
    da2 = tmp_path / "bb-plain.tar"
    copy(store, f"layerkit:{BB}", f"docker-archive:{da2}")
    with tarfile.open(da2) as tf:
        assert json.load(tf.extractfile("manifest.json"))[0]["RepoTags"] == [BB]
    # an OCI layout without NAME gets no ref.name, as skopeo writes it
    plain = tmp_path / "plain"
    copy(store, BB, f"oci:{plain}")
    copy(store, BB, f"oci:{plain}")  # again: still one entry, or skopeo could not pick "the only image"
    manifests = json.loads((plain / "index.json").read_text())["manifests"]
    assert len(manifests) == 1 and "annotations" not in manifests[0]
    assert skopeo_config_digest(f"oci:{plain}") == work["bb_id"]


def test_what_skopeo_writes_copies_into_layerkit(work, tmp_path):
    src = f"docker-archive:{work['bb']}"
    sk_oci, sk_oa, sk_da = (f"oci:{tmp_path / 'sk'}:sk:1", f"oci-archive:{tmp_path / 'sk-oci.tar'}:a/b",
                            f"docker-archive:{tmp_path / 'sk-docker.tar'}:lk.test/sk:2")
    for dst in (sk_oci, sk_oa, sk_da):
        skopeo_copy(src, dst)
    # skopeo rewrites the config when it converts to OCI: the ID to expect is the one skopeo reports
    oci_id = skopeo_config_digest(sk_oci)
    assert skopeo_config_digest(sk_oa) == oci_id
    store = Store(tmp_path / "store")
    res = copy(store, sk_oci, "lk.test/from-oci:1")
    assert res["id"] == oci_id and store.image("lk.test/from-oci:1").id == oci_id
    copy(store, sk_oa, "layerkit:lk.test/from-oci-archive:1")
    assert store.image("lk.test/from-oci-archive:1").id == oci_id
    copy(store, sk_da, "lk.test/from-docker:1")
    assert store.image("lk.test/from-docker:1").id == work["bb_id"] == store.image("lk.test/sk:2").id
    # and back out again: skopeo reads layerkit's copy of skopeo's layout
    copy(store, sk_oci, f"oci:{tmp_path / 'back'}:again")
    assert skopeo_image_id(f"oci:{tmp_path / 'back'}:again") == oci_id


def test_docker_archive_with_several_images(work, tmp_path):
    st = Store(tmp_path / "two")
    load_path(st, str(work["bb"]))
    load_path(st, str(work["small"]))
    both = tmp_path / "both.tar"
    save_docker_archive(st, [(st.image(BB), [parse_reference(BB)]),
                             (st.image("lk.test/small:1"), [parse_reference("lk.test/small:1")])], both)
    store = Store(tmp_path / "store")
    with pytest.raises(LayerkitError, match="holds 2 images; choose one"):
        copy(store, f"docker-archive:{both}", "lk.test/x:1")
    assert store.images() == []  # refused before anything was imported
    assert copy(store, f"docker-archive:{both}:lk.test/small:1", "lk.test/x:1")["id"] == work["small_id"]
    assert copy(store, f"docker-archive:{both}:@0", "lk.test/y:1")["id"] == work["bb_id"]
    assert {i.id for i in store.images()} == {work["bb_id"], work["small_id"]}
    with pytest.raises(ImageNotFound, match="no image tagged lk.test/absent:1"):
        copy(store, f"docker-archive:{both}:lk.test/absent:1", "lk.test/z:1")
    with pytest.raises(ImageNotFound, match="out of range"):
        copy(store, f"docker-archive:{both}:@2", "lk.test/z:1")


def test_oci_layout_with_several_images_needs_a_name(work, tmp_path):
    layout = tmp_path / "multi"
    skopeo_copy(f"docker-archive:{work['bb']}", f"oci:{layout}:one")
    skopeo_copy(f"oci:{work['small']}", f"oci:{layout}:two")
    store = Store(tmp_path / "store")
    with pytest.raises(LayerkitError, match="more than one image in oci, choose an image"):
        copy(store, f"oci:{layout}", "lk.test/x:1")
    assert copy(store, f"oci:{layout}:two", "lk.test/x:1")["id"] == work["small_id"]
    with pytest.raises(ImageNotFound, match="no image tagged 'three'"):
        copy(store, f"oci:{layout}:three", "lk.test/x:1")


def test_store_to_store(work, tmp_path):
    store = Store(tmp_path / "store")
    load_path(store, str(work["bb"]))
    res = copy(store, BB, "layerkit:lk.test/renamed:2")
    assert res["names"] == ["lk.test/renamed:2"] and store.image("lk.test/renamed:2").id == work["bb_id"]
    copy(store, work["bb_id"][7:19], "lk.test/by-id:1")  # a short image ID is a store source too
    assert store.image("lk.test/by-id:1").id == work["bb_id"]


# ---- parsing and bad names ----------------------------------------------------------------------------

def test_parse_like_skopeo():
    loc = parse_location("oci:/tmp/x:busybox:v1")
    assert (loc.transport, loc.path, loc.name) == ("oci", "/tmp/x", "busybox:v1")
    loc = parse_location("oci-archive:/tmp/a.tar")
    assert (loc.path, loc.name) == ("/tmp/a.tar", None)
    loc = parse_location("docker-archive:/tmp/x.tar:busybox")
    assert (loc.path, loc.ref.normalized) == ("/tmp/x.tar", "docker.io/library/busybox:latest")
    assert parse_location("docker-archive:/tmp/x.tar:@3").index == 3
    assert parse_location("docker://127.0.0.1:5000/a/b").ref.normalized == "127.0.0.1:5000/a/b:latest"
    assert parse_location("docker-daemon:busybox").ref.tag == "latest"
    assert parse_location("docker-daemon:sha256:" + "a" * 64).image_id == "sha256:" + "a" * 64
    for bare in ("busybox", "busybox:1", "localhost:5000/a/b:1", "sha256:" + "b" * 64, "0123abcd"):
        assert parse_location(bare).transport == "layerkit"
    assert parse_location("layerkit:lk.test/a:1").store_name == "lk.test/a:1"


BAD = [
    ("foo://bar", r"unknown transport 'foo'"),
    ("docker-achive:/tmp/x.tar", r"unknown transport 'docker-achive'"),
    ("dir:/tmp/x", r"transport 'dir' is not supported"),
    ("containers-storage:busybox", r"transport 'containers-storage' is not supported"),
    ("docker:busybox", r"does not start with //"),
    ("docker-archive:", r"isn't of the form <path>\[:<reference>\]"),
    ("docker-archive:/tmp/x.tar:busybox@sha256:" + "c" * 64, r"doesn't support digest references"),
    ("oci:", r"empty path"),
    ("oci:/tmp/x:Bad Name", r"Invalid image Bad Name"),
    ("docker://UPPER/Case", r"must be lowercase"),
    ("", r"name a transport"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_names_are_clear(work, tmp_path, text, message):
    store = Store(tmp_path / "store")
    dst = tmp_path / "never.tar"
    with pytest.raises(InvalidReference, match=message) as exc:
        copy(store, text, f"docker-archive:{dst}")
    assert "\n" not in str(exc.value)
    with pytest.raises(TransportError, match=message):
        copy(store, f"docker-archive:{work['bb']}", text)
    assert not dst.exists() and store.images() == []  # refused before anything moved


def test_bad_destinations_refused_before_import(work, tmp_path):
    store = Store(tmp_path / "store")
    src = f"docker-archive:{work['bb']}"
    for dst, message in [("docker-archive:/tmp/x.tar:@1", "source index"),
                         (f"docker-archive:{tmp_path}/no/such/dir/x.tar", "no such directory"),
                         (f"oci:{work['bb']}", "is not a directory"),
                         ("docker-daemon:sha256:" + "d" * 64, "must be a tag"),
                         ("lk.test/a@sha256:" + "e" * 64, "digest")]:
        with pytest.raises(LayerkitError, match=message):
            copy(store, src, dst)
    assert store.images() == []


def test_missing_store_image_hints_at_transports(tmp_path):
    with pytest.raises(ImageNotFound, match=r"No such image: dockr:busybox \(if 'dockr' is meant as a transport, "
                                            r"did you mean 'docker'\?"):
        copy(Store(tmp_path / "s"), "dockr:busybox", f"oci:{tmp_path / 'o'}")
    with pytest.raises(ImageNotFound, match=r"^No such image: busybox:1$"):
        copy(Store(tmp_path / "s"), "busybox:1", f"oci:{tmp_path / 'o'}")


# ---- a registry ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """``docker-registry`` on a free 127.0.0.1 port with storage under a temporary directory: its host."""
    require("docker-registry")
    reg = start_registry(tmp_path_factory.mktemp("registry"), access_log=False)
    yield reg.host
    reg.stop()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """No test reads or writes the real registry credentials."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_docker_transport_both_ways(work, registry, tmp_path):
    store = Store(tmp_path / "store")
    res = copy(store, f"docker-archive:{work['bb']}", f"docker://{registry}/lk/bb:1")
    assert res["push"]["image_id"] == work["bb_id"]
    assert skopeo_config_digest(f"docker://{registry}/lk/bb:1", "--tls-verify=false") == work["bb_id"]
    # what skopeo pushed, layerkit copies out of the registry (into a fresh store) to an OCI layout
    skopeo_copy(f"oci:{work['small']}:lk.test/small:1", f"docker://{registry}/lk/small:2", "--dest-tls-verify=false")
    fresh = Store(tmp_path / "fresh")
    out = tmp_path / "pulled"
    res = copy(fresh, f"docker://{registry}/lk/small:2", f"oci:{out}:pulled")
    assert res["id"] == work["small_id"] and res["pull"]["image_id"] == work["small_id"]
    assert skopeo_image_id(f"oci:{out}:pulled") == work["small_id"]
    # registry to registry through the store: the layers are mounted from the repository they came from,
    # and a second copy finds them all there; no layer byte is sent either time
    res = copy(fresh, f"docker://{registry}/lk/small:2", f"docker://{registry}/lk/other:3")
    assert res["push"]["transferred_bytes"] == 0
    assert all(la["action"] == "Mounted from lk/small" for la in res["push"]["layers"])
    again = copy(fresh, f"docker://{registry}/lk/small:2", f"docker://{registry}/lk/other:3")
    assert again["push"]["transferred_bytes"] == 0
    assert all(la["action"] == "Layer already exists" for la in again["push"]["layers"])
    assert skopeo_image_id(f"docker://{registry}/lk/other:3", "--tls-verify=false") == work["small_id"]


def test_cli_copy_verb(tmp_path, capsys):
    """``layerkit copy`` is wired to the same copy; skopeo reads what it wrote."""
    import json as _json
    import subprocess as _sp

    from layerkit.cli import main
    from layerkit.examples import busybox_archive

    archive = busybox_archive(tmp_path / "bb.tar")
    st = str(tmp_path / "store")
    assert main(["--store", st, "copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'lay'}:t"]) == 0
    assert "Copied" in capsys.readouterr().out
    cfg = _sp.run(["skopeo", "inspect", "--config", f"oci:{tmp_path / 'lay'}:t"], capture_output=True,
                  check=True).stdout
    assert _json.loads(cfg)["rootfs"]["diff_ids"]
    assert main(["--store", st, "copy", "nosuch:x", f"oci:{tmp_path / 'lay'}:t"]) == 1
