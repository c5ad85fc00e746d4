"""OCI image layouts (a directory) and OCI archives (the same tree in a tar).

Media types, descriptors and the platform an index entry is chosen by come from
:mod:`layerkit.engine.mediatypes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..engine import mediatypes as mt
from ..engine.digests import sha256_bytes
from ..engine.image import Image
from ..engine.mediatypes import CONTAINERD_NAME, REF_NAME, Descriptor
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.shapes import parse_json, want_list, want_object
from ..engine.store import Store
from ..errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidArchive,
    InvalidManifest,
    InvalidReference,
    UnsupportedMediaType,
)
from .archive_writers import OciArchiveDestination, OciLayoutDestination
from .imagesource import SourceImage
from .importer import LayerSource, LoadedImage
from .pipeline import Listed, copy_image
from .sources import Source, blob_name
from .stored import StoreDestination, StoreSource


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this machine in OCI terms (:func:`layerkit.engine.mediatypes.host_platform`
    has the variant too)."""
    p = mt.host_platform()
    return p.os, p.architecture


def check_size(src: Source, desc: Descriptor, what: str) -> str:
    """The member name of the descriptor's blob, once its size is what the descriptor says.

    The image spec: "If the length of the retrieved content does not match the specified length, the
    content SHOULD NOT be trusted"; checked before a byte of it is read.
    """
    name = blob_name(desc.digest)
    actual = src.size(name)
    if actual != desc.size:
        raise InvalidArchive(f"{src.label}: {what} {desc.digest} has {actual} bytes, but its descriptor "
                             f"says {desc.size}")
    return name


def _read_blob(src: Source, desc: Descriptor, what: str) -> bytes:
    data = src.read(check_size(src, desc, what))
    got = sha256_bytes(data)
    if got != desc.digest:
        raise DigestMismatch(f"{src.label}: {what} {desc.digest} hashes to {got}")
    return data


def _json(data: bytes, label: str, what: str) -> dict:
    return want_object(parse_json(data, f"{label}: {what}"), f"{label}: {what}")


def _manifests(index: dict, where: str) -> list[Descriptor]:
    """The checked descriptors of an index's ``manifests``."""
    descs = index.get("manifests")
    if descs is None:
        raise InvalidManifest(f"{where} lacks manifests")
    return [Descriptor.from_json(d, where) for d in want_list(descs, f"{where} manifests")]


def _pick_manifest(src: Source, desc: Descriptor, depth: int = 0) -> Descriptor:
    """Follow image indexes down to one manifest for this machine's platform (an index of one entry:
    that entry, whatever its platform)."""
    if mt.is_manifest(desc.media_type):
        return desc
    if not mt.is_index(desc.media_type) or depth > 4:
        raise UnsupportedMediaType(f"{src.label}: unsupported manifest media type {desc.media_type!r} for "
                                   f"{desc.digest}")
    index = _json(_read_blob(src, desc, "index"), src.label, f"index {desc.digest}")
    want = mt.host_platform()
    candidates = _manifests(index, f"{src.label}: index {desc.digest}")
    chosen = mt.choose_platform(candidates, want)
    if chosen is None and len(candidates) == 1:
        chosen = candidates[0]
    if chosen is None:
        raise InvalidManifest(f"{src.label}: index {desc.digest} has no manifest for {want}")
    return _pick_manifest(src, chosen, depth + 1)


def check_layout_sizes(src: Source) -> None:
    """Check every descriptor of an OCI layout inside an archive against the blob it names, where the blob
    is there: index.json's manifests, nested indexes, and each manifest's config and layers.

    For the form ``docker save`` writes since Docker 25, which is loaded through ``manifest.json`` but
    also carries the layout; a descriptor that lies about its blob's size is refused there too.
    """
    _, layout = src.read_json("oci-layout", "oci-layout")
    want_object(layout, f"{src.label}: oci-layout")
    todo = [(d, 0) for d in _manifests(_json(src.read("index.json"), src.label, "index.json"),
                                         f"{src.label}: index.json")]
    seen: set[str] = set()
    while todo:
        desc, depth = todo.pop()
        if desc.digest in seen or not src.has(blob_name(desc.digest)):
            continue  # another platform's manifest a single-platform save leaves out
        seen.add(desc.digest)
        if mt.is_index(desc.media_type) and depth < 4:
            index = _json(_read_blob(src, desc, "index"), src.label, f"index {desc.digest}")
            todo.extend((d, depth + 1) for d in _manifests(index, f"{src.label}: index {desc.digest}"))
        elif mt.is_manifest(desc.media_type):
            manifest = _json(_read_blob(src, desc, "manifest"), src.label, f"manifest {desc.digest}")
            where = f"{src.label}: manifest {desc.digest}"
            check_size(src, Descriptor.from_json(manifest.get("config"), f"{where} config"), "config")
            for ld in want_list(manifest.get("layers") or [], f"{where} layers"):
                ld = Descriptor.from_json(ld, f"{where} layer")
                if src.has(blob_name(ld.digest)):
                    check_size(src, ld, "layer")
        else:
            check_size(src, desc, "blob")


def _name_of(desc: Descriptor) -> Reference | None:
    for key in (CONTAINERD_NAME, REF_NAME):
        name = desc.annotations.get(key)
        if isinstance(name, str) and name:
            try:
                return parse_reference(name)
            except InvalidReference:
                continue
    return None


def source_images(src: Source, tag: str | None = None) -> Iterator[SourceImage]:
    """The images an OCI layout's index.json names (or only those answering to ``tag``), each as a
    :class:`~.imagesource.SourceImage` (manifest and config read and checked, layers unread). An image
    listed under several names comes once, with all of them."""
    _, layout = src.read_json("oci-layout", "oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise InvalidManifest(f"{src.label}: oci-layout lacks imageLayoutVersion")
    index = _json(src.read("index.json"), src.label, "index.json")
    descs = _manifests(index, f"{src.label}: index.json")
    if tag is not None:
        chosen = []
        for d in descs:
            names = {d.annotations.get(REF_NAME), d.annotations.get(CONTAINERD_NAME)}
            ref = _name_of(d)
            if tag in names or (ref is not None and _matches(ref, tag)):
                chosen.append(d)
        if not chosen:
            raise ImageNotFound(f"{src.label}: no image tagged {tag!r} in the layout")
        descs = chosen
    # group descriptors by manifest so an image with several names loads once with all its tags
    groups: dict[str, tuple[Descriptor, list[Reference]]] = {}
    for d in descs:
        check_size(src, d, "manifest")  # each entry: the group below reads the blob through its first
        ref = _name_of(d)
        g = groups.setdefault(d.digest, (d, []))
        if ref is not None:
            g[1].append(ref)
    for desc, tags in groups.values():
        yield _image_of(src, desc, tags)


def load_oci(store: Store, src: Source, tag: str | None = None, progress: Progress | None = None
             ) -> list[LoadedImage]:
    """Import the images an OCI layout's index.json names (or only the one tagged ``tag``); ``progress``
    receives each layer's events (:class:`~.importer.ImportBatch`)."""
    images = list(source_images(src, tag))  # every document checked before a layer is read
    # nothing is recorded until every image of the layout has been verified
    done = copy_image(Listed(src.label, images), StoreDestination(store, defer=True), progress=progress)
    return [LoadedImage(image, [t.familiar if t.tag else t.familiar + ":latest" for t in taken])
            for image, taken in done]


def _image_of(src: Source, desc: Descriptor, tags: list[Reference]) -> SourceImage:
    """Verify one image of the layout (manifest, config) down to its layer descriptors."""
    mdesc = _pick_manifest(src, desc)
    manifest_bytes = _read_blob(src, mdesc, "manifest")
    manifest = _json(manifest_bytes, src.label, f"manifest {mdesc.digest}")
    where = f"{src.label}: manifest {mdesc.digest}"
    if not isinstance(manifest.get("layers"), list) or manifest.get("config") is None:
        raise InvalidManifest(f"{where} lacks config or layers")
    cdesc = Descriptor.from_json(manifest["config"], f"{where} config")
    if cdesc.media_type and not mt.is_config(cdesc.media_type):
        raise UnsupportedMediaType(f"{src.label}: unsupported config media type {cdesc.media_type!r}")
    config_bytes = _read_blob(src, cdesc, "config")
    layers = []
    media_types = []
    for ld in manifest["layers"]:
        ld = Descriptor.from_json(ld, f"{where} layer")
        try:
            mt.compression_of(ld.media_type)  # raises on an unknown layer type
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(f"{src.label}: layer {ld.digest}: {exc}") from exc
        name = check_size(src, ld, "layer")
        layers.append(LayerSource(open=lambda n=name: src.open(n),
                                  label=f"{src.label}: layer {ld.digest}",
                                  size=ld.size, digest=ld.digest, offset=src.offset(name)))
        media_types.append(ld.media_type)
    return SourceImage(config_bytes, layers, tags, f"{src.label}: {mdesc.digest}",
                       expected_id=cdesc.digest, manifest_bytes=manifest_bytes, media_types=media_types)


def _matches(ref: Reference, tag: str) -> bool:
    try:
        return parse_reference(tag).normalized == ref.normalized
    except InvalidReference:
        return ref.tag == tag


def save_oci_layout(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write (or add to) an OCI layout directory; existing names are replaced
    (:class:`~.archive_writers.OciLayoutDestination`)."""
    copy_image(StoreSource(store, images), OciLayoutDestination(out))


def save_oci_archive(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write an OCI archive: the layout streamed into a tar (written to a temp file, then renamed;
    :class:`~.archive_writers.OciArchiveDestination`)."""
    copy_image(StoreSource(store, images), OciArchiveDestination(out))
