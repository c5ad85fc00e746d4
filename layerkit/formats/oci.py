"""OCI image layouts (a directory) and OCI archives (the same tree in a tar)."""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..engine.digests import hex_of, is_digest, sha256_bytes
from ..engine.image import Image
from ..engine.layer import media_type_compression
from ..engine.reference import Reference, parse_reference
from ..engine.store import OCI_INDEX, REF_NAME, Store
from ..errors import DigestMismatch, ImageNotFound, InvalidManifest, InvalidReference, UnsupportedMediaType
from .importer import ImportBatch, LayerSource, LoadedImage
from .sources import Source, blob_name

CONTAINERD_NAME = "io.containerd.image.name"
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
INDEX_TYPES = {
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
CONFIG_TYPES = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this machine in OCI terms."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        platform.machine(), platform.machine())
    return "linux", arch


def _descriptor(d: object, where: str) -> dict:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not is_digest(d["digest"]):
        raise InvalidManifest(f"{where}: descriptor lacks a valid digest")
    if not isinstance(d.get("mediaType", ""), str):
        raise InvalidManifest(f"{where}: descriptor has an invalid mediaType")
    return d


def _read_blob(src: Source, desc: dict, what: str) -> bytes:
    data = src.read(blob_name(desc["digest"]))
    got = sha256_bytes(data)
    if got != desc["digest"]:
        raise DigestMismatch(f"{src.label}: {what} {desc['digest']} hashes to {got}")
    return data


def _json(data: bytes, label: str, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidManifest(f"{label}: {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{label}: {what} is not a JSON object")
    return doc


def _pick_manifest(src: Source, desc: dict, depth: int = 0) -> dict:
    """Follow image indexes down to one manifest for this machine's platform."""
    mt = desc.get("mediaType", "")
    if mt in MANIFEST_TYPES:
        return desc
    if mt not in INDEX_TYPES or depth > 4:
        raise UnsupportedMediaType(f"{src.label}: unsupported manifest media type {mt!r} for {desc['digest']}")
    index = _json(_read_blob(src, desc, "index"), src.label, f"index {desc['digest']}")
    want_os, want_arch = host_platform()
    candidates = [_descriptor(d, src.label) for d in index.get("manifests", [])]
    for d in candidates:
        p = d.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch:
            return _pick_manifest(src, d, depth + 1)
    if len(candidates) == 1:
        return _pick_manifest(src, candidates[0], depth + 1)
    raise InvalidManifest(f"{src.label}: index {desc['digest']} has no manifest for {want_os}/{want_arch}")


def _name_of(desc: dict) -> Reference | None:
    ann = desc.get("annotations") or {}
    for key in (CONTAINERD_NAME, REF_NAME):
        name = ann.get(key)
        if isinstance(name, str) and name:
            try:
                return parse_reference(name)
            except InvalidReference:
                continue
    return None


def load_oci(store: Store, src: Source, tag: str | None = None, progress=None) -> list[LoadedImage]:
    """Import the images an OCI layout's index.json names (or only the one tagged ``tag``)."""
    _, layout = src.read_json("oci-layout", "oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise InvalidManifest(f"{src.label}: oci-layout lacks imageLayoutVersion")
    index = _json(src.read("index.json"), src.label, "index.json")
    descs = index.get("manifests")
    if not isinstance(descs, list):
        raise InvalidManifest(f"{src.label}: index.json lacks manifests")
    descs = [_descriptor(d, f"{src.label}: index.json") for d in descs]
    if tag is not None:
        chosen = []
        for d in descs:
            ann = d.get("annotations") or {}
            names = {ann.get(REF_NAME), ann.get(CONTAINERD_NAME)}
            ref = _name_of(d)
            if tag in names or (ref is not None and _matches(ref, tag)):
                chosen.append(d)
        if not chosen:
            raise ImageNotFound(f"{src.label}: no image tagged {tag!r} in the layout")
        descs = chosen
    # group descriptors by manifest so an image with several names loads once with all its tags
    groups: dict[str, tuple[dict, list[Reference]]] = {}
    for d in descs:
        ref = _name_of(d)
        g = groups.setdefault(d["digest"], (d, []))
        if ref is not None:
            g[1].append(ref)
    with ImportBatch(store) as batch:
        for desc, tags in groups.values():
            _add_image(batch, src, desc, tags, progress)
        # nothing is recorded until every image of the layout has been verified
        return [LoadedImage(image, [t.familiar if t.tag else t.familiar + ":latest" for t in taken])
                for image, taken in batch.commit()]


def _add_image(batch: ImportBatch, src: Source, desc: dict, tags: list[Reference], progress) -> None:
    """Verify one image of the layout and stream its new layers into the batch."""
    mdesc = _pick_manifest(src, desc)
    manifest_bytes = _read_blob(src, mdesc, "manifest")
    manifest = _json(manifest_bytes, src.label, f"manifest {mdesc['digest']}")
    cdesc = manifest.get("config")
    if not isinstance(manifest.get("layers"), list) or cdesc is None:
        raise InvalidManifest(f"{src.label}: manifest {mdesc['digest']} lacks config or layers")
    cdesc = _descriptor(cdesc, f"{src.label}: manifest {mdesc['digest']} config")
    if cdesc.get("mediaType") and cdesc["mediaType"] not in CONFIG_TYPES:
        raise UnsupportedMediaType(f"{src.label}: unsupported config media type {cdesc['mediaType']!r}")
    config_bytes = _read_blob(src, cdesc, "config")
    layers = []
    for ld in manifest["layers"]:
        ld = _descriptor(ld, f"{src.label}: manifest {mdesc['digest']} layer")
        try:
            media_type_compression(ld.get("mediaType", ""))  # raises on an unknown layer type
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(f"{src.label}: layer {ld['digest']}: {exc}") from None
        name = blob_name(ld["digest"])
        layers.append(LayerSource(open=lambda n=name: src.open(n),
                                  label=f"{src.label}: layer {ld['digest']}",
                                  size=src.size(name), digest=ld["digest"]))
    batch.add(config_bytes, layers, tags, f"{src.label}: {mdesc['digest']}", progress=progress,
              manifest_bytes=manifest_bytes)


def _matches(ref: Reference, tag: str) -> bool:
    try:
        return parse_reference(tag).normalized == ref.normalized
    except InvalidReference:
        return ref.tag == tag


def _index_for(images: list[tuple[Image, list[Reference]]], store: Store) -> tuple[dict, list[str]]:
    manifests = []
    blobs: list[str] = []
    for image, tags in images:
        msize = store.blobs.size(image.manifest_digest)
        base = {"mediaType": image.manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json",
                "digest": image.manifest_digest, "size": msize}
        if tags:
            for t in tags:
                manifests.append({**base, "annotations": {REF_NAME: t.normalized}})
        else:
            manifests.append(base)
        for d in [image.manifest_digest, image.id] + [la.digest for la in image.layers]:
            if d not in blobs:
                blobs.append(d)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, blobs


def save_oci_layout(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write (or add to) an OCI layout directory; existing names are replaced."""
    out = Path(out)
    index, blobs = _index_for(images, store)
    (out / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for d in blobs:
        dest = out / blob_name(d)
        if dest.exists():
            continue
        tmp = dest.with_name("." + dest.name + ".tmp")
        try:
            os.link(store.blobs.path(d), tmp)  # blobs are immutable: a hard link is a safe copy
        except OSError:
            shutil.copyfile(store.blobs.path(d), tmp)
        os.replace(tmp, dest)
    layout = out / "oci-layout"
    if not layout.exists():
        layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    idx_path = out / "index.json"
    if idx_path.exists():
        old = _json(idx_path.read_bytes(), str(out), "index.json")
        new_names = {(m.get("annotations") or {}).get(REF_NAME) for m in index["manifests"]} - {None}
        kept = [m for m in old.get("manifests", [])
                if (m.get("annotations") or {}).get(REF_NAME) not in new_names]
        index["manifests"] = kept + index["manifests"]
    tmp = idx_path.with_name(".index.json.tmp")
    tmp.write_text(json.dumps(index, separators=(",", ":")))
    os.replace(tmp, idx_path)


def save_oci_archive(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write an OCI archive: the layout streamed into a tar (written to a temp file, then renamed)."""
    out = Path(out)
    index, blobs = _index_for(images, store)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix="." + out.name + ".")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.copybufsize = 1 << 20
            _add_bytes(tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
            for d in blobs:
                ti = tarfile.TarInfo(f"blobs/sha256/{hex_of(d)}")
                ti.size = store.blobs.size(d)
                ti.mode = 0o644
                with store.blobs.open(d) as f:
                    tf.addfile(ti, f)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))
