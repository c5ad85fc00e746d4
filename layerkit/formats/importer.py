"""Bringing one image (config + layer streams) into the store, all or nothing.

Every layer is streamed into a temporary blob and verified (blob digest and diff_id) before anything is
made visible; only when all layers and the config check out are the blobs renamed into place and the
index updated. A layer whose diff_id the store already holds is not read again, whatever compression
it came in: the new image's manifest points at the stored blob.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from ..engine.digests import is_digest, sha256_bytes
from ..engine.image import MAX_LAYERS, Image
from ..engine.layer import OCI_TYPE_FOR, ingest_layer
from ..engine.reference import Reference
from ..engine.store import NewLayer, Store
from ..errors import DigestMismatch, InvalidManifest, MaxDepthExceeded


@dataclass
class LayerSource:
    """Where to read one layer blob from, and what it should hash to."""

    open: Callable[[], BinaryIO]
    label: str
    size: int | None = None
    digest: str | None = None


@dataclass
class LoadedImage:
    """One image brought in: the tags it took (familiar form) and its ID."""

    image: Image
    tags: list[str]

    @property
    def id(self) -> str:
        """The image ID (sha256 of the config)."""
        return self.image.id


def parse_config(config_bytes: bytes, label: str) -> dict:
    """Parse an image config and check the fields an image needs (rootfs.diff_ids)."""
    try:
        config = json.loads(config_bytes)
    except ValueError as exc:
        raise InvalidManifest(f"{label}: config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InvalidManifest(f"{label}: config is not a JSON object")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidManifest(f"{label}: config lacks rootfs.diff_ids")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not is_digest(d):
            raise InvalidManifest(f"{label}: config has an invalid diff_id {d!r}")
    return config


def import_image(
    store: Store,
    config_bytes: bytes,
    layers: list[LayerSource],
    tags: list[Reference],
    label: str,
    expected_id: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[Image, list[Reference]]:
    """Stream the layers into the store, verify everything, then record the image with its tags."""
    image_id = sha256_bytes(config_bytes)
    if expected_id and image_id != expected_id:
        raise DigestMismatch(f"{label}: config hashes to {image_id}, expected {expected_id}")
    config = parse_config(config_bytes, label)
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layers):
        raise InvalidManifest(f"{label}: config lists {len(diff_ids)} diff_ids but the manifest has "
                              f"{len(layers)} layers")
    if len(layers) > MAX_LAYERS:
        raise MaxDepthExceeded(f"{label}: max depth exceeded ({len(layers)} layers, at most {MAX_LAYERS})")
    known = store.known_layers()
    pending = []  # (writer, index) to commit once everything is verified
    new_layers: list[NewLayer] = []
    try:
        for src, diff_id in zip(layers, diff_ids, strict=False):
            hit = known.get(diff_id)
            if hit is not None and store.blobs.has(hit[0]):
                new_layers.append(NewLayer(hit[0], diff_id, hit[1], hit[2]))
                if progress:
                    progress(f"{diff_id[7:19]}: Already exists", 0)
                continue
            with src.open() as f:
                res = ingest_layer(store.blobs, f, label=src.label, limit=src.size,
                                   expected_digest=src.digest, expected_diff_id=diff_id)
            pending.append(res)
            known[diff_id] = (res.digest, OCI_TYPE_FOR[res.compression], res.compressed_size)
            new_layers.append(NewLayer(res.digest, diff_id, OCI_TYPE_FOR[res.compression],
                                       res.compressed_size))
            if progress:
                progress(f"{diff_id[7:19]}: Loaded", res.compressed_size)
    except BaseException:
        for res in pending:
            res.writer.abort()
        raise
    # everything verified: make the blobs visible, then the image
    done = 0
    try:
        for res in pending:
            res.writer.commit()
            done += 1
            store.save_layer_index(res.index)
    except BaseException:
        for res in pending[done:]:
            res.writer.abort()
        raise
    return store.add_image(config_bytes, new_layers, tags)
