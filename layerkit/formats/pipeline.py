"""The image pipeline's one copy, ``copy_image``: every image a source names, into a destination, all or nothing.

What containers/image's ``copy.Image`` does, split as layerkit splits the work:

* platform choice is the source's (a registry's or a layout's index is resolved to one manifest for the
  platform asked for, through :func:`layerkit.engine.mediatypes.choose_platform`, when it is opened);
* the config is checked against the digest the source names for it (the image ID) before anything is put;
* blob reuse and compression are the destination's: it skips a blob it holds (:meth:`has_blob`: the store
  by diff_id, a registry by ``HEAD`` or a cross-repository mount, a layout by file), and writes a layer in
  the form its format needs (a docker-archive holds uncompressed tars; a layout and a registry keep the
  blob as it came, so the source's manifest and its digest survive);
* every blob a destination writes is checked against its digest while it streams (:func:`spool` for the
  destinations that are not the store; the store checks blob digests and diff_ids itself), an
  uncompressed one against its diff_id too (:func:`check_plain_layer`: the same hash), and a destination
  makes the images visible only in its :meth:`commit`.

Reading layers is lazy: a layer is opened only when the destination streams it.

(Here, beside the format modules, rather than in :mod:`.transports`: the registry's ``pull`` and ``push``
and the archive formats' ``save`` are copies too, and the transports' table imports them; so the copy and
the store's side of it, :mod:`.stored`, import no transport module and no cycle forms.)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine.digests import sha256_bytes
from ..engine.layer import detect_compression
from ..engine.mediatypes import OCI_CONFIG, OCI_MANIFEST
from ..engine.progress import Progress
from ..engine.reference import Reference
from ..engine.shapes import parse_json, want_object
from ..errors import DigestMismatch, InvalidArchive, InvalidManifest
from .imagesource import ImageDestination, ImageSource, LayerSource, SourceImage

CHUNK = 1 << 20


@dataclass
class FileLayer(LayerSource):
    """A layer whose blob is a file holding exactly the blob (layerkit's store): checked when it was
    stored, so a destination may link it (an OCI layout), re-read it from any offset (a registry's chunked
    upload, a retried one) and inflate it knowing the tar's length beforehand (a docker-archive's member).

    ``tar_size()`` is the uncompressed tar's length; it may index the layer first (a pulled layer's tar
    length is known once it is indexed)."""

    path: Path | None = None
    media_type: str = ""
    tar_size: Callable[[], int] | None = None


Names = list[Reference] | Callable[[SourceImage], list[Reference]] | None


def check_config(image: SourceImage) -> None:
    """The config hashes to the image ID its source names (when it names one)."""
    if image.expected_id:
        got = sha256_bytes(image.config_bytes)
        if got != image.expected_id:
            raise DigestMismatch(f"{image.label}: config hashes to {got}, expected {image.expected_id}")


def copy_image(src: ImageSource, dst: ImageDestination, names: Names = None,
               progress: Progress | None = None) -> list:
    """Put every image ``src`` yields into ``dst`` and commit them together; returns ``dst.commit()``.

    ``names`` are the references each image takes at the destination: a list (every image the same), a
    function of the :class:`~.imagesource.SourceImage`, or None for the names the source gives it. ``progress``
    receives the destination's events (:mod:`layerkit.engine.progress`). On any error the destination is
    aborted (nothing of the copy is visible there) and the error raised."""
    with dst:
        for image in src.images():
            check_config(image)
            taken = image.names if names is None else names(image) if callable(names) else list(names)
            dst.put_image(image, taken, progress)
        return dst.commit()


class Listed:
    """Images already at hand (or yielded by a generator) as an :class:`~.imagesource.ImageSource`: what a
    format module passes to :func:`copy_image` after opening its input itself."""

    def __init__(self, label: str, images: Iterable[SourceImage]) -> None:
        self.label = label
        self._images = images

    def images(self) -> Iterator[SourceImage]:
        """The images, in order."""
        yield from self._images

    def close(self) -> None:
        """Nothing to release: whoever opened the input closes it."""

    def __enter__(self) -> Listed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Verifying:
    """Read a layer, counting and hashing what passes; :meth:`check` compares with the layer's claims (a
    destination that writes as it reads calls it at the end, and aborts on a lie)."""

    def __init__(self, f: BinaryIO, layer: LayerSource) -> None:
        self._f = f
        self._layer = layer
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(CHUNK if n is None or n < 0 else n)
        if data:
            if len(self.head) < 512:
                self.head += data[:512 - len(self.head)]
            self.hash.update(data)
            self.size += len(data)
            if self._layer.size is not None and self.size > self._layer.size:
                raise InvalidArchive(f"{self._layer.label}: more than the {self._layer.size} bytes its "
                                     f"descriptor says")
        return data

    def check(self) -> str:
        """The blob's digest, once its size and digest are what the source said."""
        layer = self._layer
        if layer.size is not None and self.size != layer.size:
            raise InvalidArchive(f"{layer.label}: {self.size} bytes, but its descriptor says {layer.size}")
        digest = "sha256:" + self.hash.hexdigest()
        if layer.digest and digest != layer.digest:
            raise DigestMismatch(f"{layer.label}: blob hashes to {digest}, expected {layer.digest}")
        return digest


def spool(layer: LayerSource, out: BinaryIO) -> tuple[str, int, str]:
    """Stream a layer blob into ``out``, checking its size and digest; (digest, size, compression of
    the blob by its first bytes: ``tar``, ``gzip`` or ``zstd``)."""
    with layer.open() as f:
        reader = Verifying(f, layer)
        while data := reader.read(CHUNK):
            out.write(data)
        digest = reader.check()
    return digest, reader.size, detect_compression(reader.head)


def spool_to_file(layer: LayerSource, path: Path) -> tuple[str, int, str]:
    """:func:`spool` into a new file at ``path`` (flushed, not fsynced: the caller renames or reads it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        return spool(layer, out)


def _keeps(manifest_bytes: bytes | None, config_digest: str, digests: list[str]) -> dict | None:
    """The source's manifest, parsed, when it names exactly this config and these layer blobs."""
    if not manifest_bytes:
        return None
    try:
        m = json.loads(manifest_bytes)
        if m.get("config", {}).get("digest") == config_digest \
                and [d.get("digest") for d in m.get("layers", [])] == digests:
            return m
    except (ValueError, AttributeError):
        pass
    return None


def manifest_for(image: SourceImage, layers: list[tuple[str, int, str]]) -> tuple[bytes, str]:
    """The manifest to write for the image whose layer blobs are ``(digest, size, media type)``: the
    source's own when it names exactly these blobs, else an OCI manifest; (bytes, media type)."""
    image_id = sha256_bytes(image.config_bytes)
    kept = _keeps(image.manifest_bytes, image_id, [d for d, _, _ in layers])
    if kept is not None:
        return image.manifest_bytes, kept.get("mediaType") or OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(image.config_bytes)},
                "layers": [{"mediaType": t, "digest": d, "size": s} for d, s, t in layers]}
    return json.dumps(manifest, separators=(",", ":")).encode(), OCI_MANIFEST


def diff_ids_of(image: SourceImage) -> list[str]:
    """The config's rootfs.diff_ids, one per layer."""
    config = want_object(parse_json(image.config_bytes, f"{image.label}: config"), f"{image.label}: config")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(image.layers):
        raise InvalidManifest(f"{image.label}: config lists {len(diff_ids or [])} diff_ids but the manifest has "
                              f"{len(image.layers)} layers")
    return diff_ids


def check_plain_layer(layer: LayerSource, digest: str, compression: str, diff_id: str) -> None:
    """An uncompressed layer blob is its tar, so its digest must be the config's diff_id for it: checked
    for free wherever a layer is spooled (its digest computed anyway). A compressed one is checked when it
    is first inflated (indexed), as a pull's layers are."""
    if compression == "tar" and digest != diff_id:
        raise DigestMismatch(f"{layer.label}: uncompressed layer hashes to {digest}, but the config's diff_id "
                             f"is {diff_id}")
