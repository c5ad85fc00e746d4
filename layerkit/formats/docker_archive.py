"""``docker save`` archives: the classic form (``manifest.json`` + ``ID/layer.tar``) and the form Docker
25+ writes (an OCI layout inside the tar, still with ``manifest.json``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..engine.image import Image
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store
from ..errors import InvalidManifest, InvalidReference
from .archive_writers import DockerArchiveDestination, tag_string
from .imagesource import SourceImage
from .importer import LayerSource, LoadedImage
from .oci import check_layout_sizes
from .pipeline import Listed, copy_image
from .sources import Source, shown
from .stored import StoreDestination, StoreSource


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

    def images() -> Iterator[SourceImage]:
        yield from source_images(src, manifest)
        manifest.clear()  # the store's batch holds what it needs (100,000 tags: 8 MB)

    # nothing is recorded until every image of the archive has been verified
    done = copy_image(Listed(src.label, images()), StoreDestination(store, defer=True), progress=progress)
    return [LoadedImage(image, [_tag_string(t) for t in taken]) for image, taken in done]


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


_tag_string = tag_string  # the loader's name for it


def save_docker_archive(store: Store, images: list[tuple[Image, list[Reference]]], out: Path) -> None:
    """Write a classic docker-archive (as skopeo and ``docker save`` before 25 do) that ``docker load``,
    ``podman load`` and ``skopeo copy docker-archive:`` accept: the stored images, each with the tags
    given (:class:`~.archive_writers.DockerArchiveDestination` says how).

    Layers are written uncompressed (``HEX.tar`` named by diff_id) because the diff_ids in the config
    must match the archive's layer files; the archive is written to a temporary file and renamed.
    """
    copy_image(StoreSource(store, images), DockerArchiveDestination(out))
