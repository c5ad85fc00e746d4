"""``docker save`` archives: the classic form (``manifest.json`` + ``ID/layer.tar``) and the form Docker
25+ writes (an OCI layout inside the tar, still with ``manifest.json``)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..engine.digests import hex_of
from ..engine.image import Image
from ..engine.layer import open_uncompressed
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store
from ..errors import InvalidManifest, InvalidReference
from .imagesource import SourceImage
from .importer import ImportBatch, LayerSource, LoadedImage
from .oci import check_layout_sizes
from .sources import Source, shown


def _expected_digest(name: str) -> str | None:
    """``blobs/sha256/HEX`` and ``HEX.json`` member names carry the digest of their content."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256" and len(parts[2]) == 64:
        return "sha256:" + parts[2]
    base = parts[-1]
    if base.endswith(".json") and len(base) == 69:
        return "sha256:" + base[:64]
    return None


def archive_entries(src: Source) -> list:
    """The entries of the archive's ``manifest.json`` (a non-empty list; each entry checked when read)."""
    manifest = src.read_json("manifest.json", "manifest")[1]  # not its bytes: up to 16 MiB
    if not isinstance(manifest, list) or not manifest:
        raise InvalidManifest(f"{src.label}: manifest.json is not a non-empty list")
    if src.has("index.json") and src.has("oci-layout"):
        check_layout_sizes(src)  # Docker 25+: the layout's descriptors must not lie either
    return manifest


def entry_names(entry: object) -> list[Reference]:
    """The references an entry's RepoTags give, skipping any that does not parse (for choosing by name)."""
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    out = []
    for t in tags if isinstance(tags, list) else []:
        try:
            out.append(parse_reference(t))
        except (InvalidReference, TypeError, AttributeError):
            continue
    return out


def source_images(src: Source, entries: list | None = None) -> Iterator[SourceImage]:
    """Each image of the archive (or of ``entries``, a part of its ``manifest.json``) as a
    :class:`~.imagesource.SourceImage`: entry shape, RepoTags and the config read and checked here,
    layers opened lazily as bounded slices of the archive."""
    for i, entry in enumerate(archive_entries(src) if entries is None else entries):
        yield _entry_image(src, i, entry)


def load_docker_archive(store: Store, src: Source, progress: Progress | None = None) -> list[LoadedImage]:
    """Import every image listed in ``manifest.json``; ``progress`` receives each layer's events
    (:class:`~.importer.ImportBatch`)."""
    manifest = archive_entries(src)
    with ImportBatch(store, defer=True) as batch:
        for img in source_images(src, manifest):
            batch.add_image(img, progress=progress)
        manifest.clear()  # the batch holds what it needs (100,000 tags: 8 MB)
        # nothing is recorded until every image of the archive has been verified
        return [LoadedImage(image, [_tag_string(t) for t in taken]) for image, taken in batch.commit()]


def _entry_image(src: Source, i: int, entry: object) -> SourceImage:
    """Verify one ``manifest.json`` entry's shape and names and read its config; layers stay unread."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
            or not isinstance(entry.get("Layers"), list):
        raise InvalidManifest(f"{src.label}: manifest.json entry {i} lacks Config or Layers")
    repo_tags = entry.get("RepoTags") or []
    if not isinstance(repo_tags, list):
        raise InvalidManifest(f"{src.label}: manifest.json entry {i} has RepoTags that is not a list")
    tags: list[Reference] = []
    for t in repo_tags:
        if not isinstance(t, str):
            raise InvalidReference(f"{src.label}: RepoTags entry {t!r} is not a string")
        try:
            tags.append(parse_reference(t))
        except InvalidReference as exc:
            raise InvalidReference(f"{src.label}: RepoTags entry {t!r}: {exc}") from exc
    config_name = entry["Config"]
    config_bytes = src.read(config_name)
    layers = []
    for name in entry["Layers"]:
        if not isinstance(name, str):
            raise InvalidManifest(f"{src.label}: manifest.json entry {i} has a non-string layer")
        layers.append(LayerSource(open=lambda n=name: src.open(n), label=f"{src.label}: layer {shown(name)}",
                                  size=src.size(name), digest=_expected_digest(name), offset=src.offset(name)))
    return SourceImage(config_bytes, layers, tags, f"{src.label}: {shown(config_name)}",
                       expected_id=_expected_digest(config_name))


def _tag_string(ref: Reference) -> str:
    return ref.familiar if ref.tag else ref.familiar + ":latest"


def save_docker_archive(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write a classic docker-archive (as skopeo and ``docker save`` before 25 do) that ``docker load``,
    ``podman load`` and ``skopeo copy docker-archive:`` accept.

    Layers are written uncompressed (``HEX.tar`` named by diff_id) because the diff_ids in the config
    must match the archive's layer files; the archive is written to a temporary file and renamed.
    """
    out = Path(out)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix="." + out.name + ".")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.copybufsize = 1 << 20
            written: set[str] = set()
            manifest = []
            repositories: dict[str, dict[str, str]] = {}
            for image, tags in images:
                # a pulled layer's diff_id is checked (and its tar size known) once it is indexed
                store.index_layers(image.layers)
                config_bytes = store.blobs.read_bytes(image.id)
                config_name = hex_of(image.id) + ".json"
                if config_name not in written:
                    _add_bytes(tf, config_name, config_bytes)
                    written.add(config_name)
                layer_names = []
                for layer in image.layers:
                    name = hex_of(layer.diff_id) + ".tar"
                    if name not in written:
                        ti = tarfile.TarInfo(name)
                        ti.size = layer.tar_size
                        ti.mode = 0o644
                        with store.blobs.open(layer.digest) as f:
                            tf.addfile(ti, open_uncompressed(f))
                        written.add(name)
                    layer_names.append(name)
                repo_tags = [_tag_string(t) for t in tags]
                manifest.append({"Config": config_name, "RepoTags": repo_tags or None,
                                 "Layers": layer_names})
                for t in tags:
                    repositories.setdefault(t.familiar_name, {})[t.tag or "latest"] = hex_of(image.id)
            _add_bytes(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
            if repositories:
                _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))
