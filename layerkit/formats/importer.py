"""Bringing one image (config + layer streams) into the store, all or nothing.

Every layer is streamed into a temporary blob and verified (blob digest and diff_id) before anything is
made visible; only when all layers and the config check out are the blobs renamed into place and the
index updated; an archive of several images is verified whole before any of them is recorded
(:class:`ImportBatch`). A layer whose diff_id the store already holds is not read again, whatever compression
it came in: the new image's manifest points at the stored blob.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from ..engine.digests import is_digest, sha256_bytes
from ..engine.humanize import parse_time
from ..engine.image import MAX_LAYERS, Image
from ..engine.layer import OCI_TYPE_FOR, IngestResult, ingest_layer
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
    _check_config_types(config, label)
    return config


_STR_FIELDS = ("created", "author", "architecture", "os", "variant")
_HISTORY_STR = ("created", "created_by", "author", "comment")
_RUN_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_RUN_STR = ("User", "WorkingDir", "StopSignal")


def _check_config_types(config: dict, label: str) -> None:
    """Refuse fields of the wrong JSON type among those layerkit reads later.

    Docker (Go, typed structs) refuses such a config at load; accepted here, it would be stored and then
    break ``images``, ``history`` or ``run`` for the whole store (``"created": 5`` did).
    """
    def bad(what: str) -> InvalidManifest:
        return InvalidManifest(f"{label}: config field {what} has the wrong type or format")

    for k in _STR_FIELDS:
        if config.get(k) is not None and not isinstance(config[k], str):
            raise bad(k)
    if config.get("created") and parse_time(config["created"]) is None:
        raise bad("created")
    history = config.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise bad("history")
        for i, h in enumerate(history):
            if not isinstance(h, dict):
                raise bad(f"history[{i}]")
            for k in _HISTORY_STR:
                if h.get(k) is not None and not isinstance(h[k], str):
                    raise bad(f"history[{i}].{k}")
            if h.get("created") and parse_time(h["created"]) is None:
                raise bad(f"history[{i}].created")
            if h.get("empty_layer") is not None and not isinstance(h["empty_layer"], bool):
                raise bad(f"history[{i}].empty_layer")
    run = config.get("config")
    if run is None:
        return
    if not isinstance(run, dict):
        raise bad("config")
    for k in _RUN_LISTS:
        v = run.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise bad(f"config.{k}")
    for k in _RUN_STR:
        if run.get(k) is not None and not isinstance(run[k], str):
            raise bad(f"config.{k}")
    for k in ("Labels", "ExposedPorts", "Volumes"):
        if run.get(k) is not None and not isinstance(run[k], dict):
            raise bad(f"config.{k}")


class ImportBatch:
    """Images brought in together (one ``load``), all or nothing.

    :meth:`add` streams an image's new layers into temporary blobs and verifies them (blob digest and
    diff_id) and the config; nothing is visible until :meth:`commit`, which renames the blobs into place
    and records the images. If any image of an archive is bad, :meth:`abort` (or leaving the ``with``
    block by an exception) drops every temporary blob, so the store is left exactly as it was. A layer
    shared by several images of the batch is read once.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known = store.known_layers()
        self._pending: dict[str, IngestResult] = {}  # diff_id -> verified, uncommitted layer
        self._images: list[tuple[bytes, list[NewLayer], list[Reference], bytes | None]] = []

    def __enter__(self) -> ImportBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add(
        self,
        config_bytes: bytes,
        layers: list[LayerSource],
        tags: list[Reference],
        label: str,
        expected_id: str | None = None,
        progress: Callable[[str, int], None] | None = None,
        manifest_bytes: bytes | None = None,
    ) -> None:
        """Verify one image and stream its new layers into temporary blobs.

        ``manifest_bytes`` (from an OCI layout or a registry) is kept byte for byte when the store ends
        up holding exactly the blobs it names, so the manifest digest survives the round trip."""
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
        new_layers: list[NewLayer] = []
        for src, diff_id in zip(layers, diff_ids, strict=True):
            res = self._pending.get(diff_id)
            if res is not None:
                new_layers.append(NewLayer(res.digest, diff_id, OCI_TYPE_FOR[res.compression],
                                           res.compressed_size))
                continue
            hit = self._known.get(diff_id)
            if hit is not None and self.store.blobs.has(hit[0]):
                new_layers.append(NewLayer(hit[0], diff_id, hit[1], hit[2]))
                if progress:
                    progress(f"{diff_id[7:19]}: Already exists", 0)
                continue
            with src.open() as f:
                res = ingest_layer(self.store.blobs, f, label=src.label, limit=src.size,
                                   expected_digest=src.digest, expected_diff_id=diff_id)
            self._pending[diff_id] = res
            new_layers.append(NewLayer(res.digest, diff_id, OCI_TYPE_FOR[res.compression],
                                       res.compressed_size))
            if progress:
                progress(f"{diff_id[7:19]}: Loaded", res.compressed_size)
        self._images.append((config_bytes, new_layers, tags, manifest_bytes))

    def commit(self) -> list[tuple[Image, list[Reference]]]:
        """Everything verified: make the blobs visible, then record the images in order."""
        pending = list(self._pending.values())
        self._pending = {}
        done = 0
        try:
            for res in pending:
                res.writer.commit()
                done += 1
                self.store.save_layer_index(res.index)
        except BaseException:
            for res in pending[done:]:
                res.writer.abort()
            raise
        return [self.store.add_image(config_bytes, new_layers, tags, manifest_bytes=manifest_bytes)
                for config_bytes, new_layers, tags, manifest_bytes in self._images]

    def abort(self) -> None:
        """Drop every temporary blob of the batch."""
        for res in self._pending.values():
            res.writer.abort()
        self._pending = {}
        self._images = []


def import_image(
    store: Store,
    config_bytes: bytes,
    layers: list[LayerSource],
    tags: list[Reference],
    label: str,
    expected_id: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    manifest_bytes: bytes | None = None,
) -> tuple[Image, list[Reference]]:
    """Stream the layers of one image into the store, verify everything, then record it with its tags."""
    with ImportBatch(store) as batch:
        batch.add(config_bytes, layers, tags, label, expected_id=expected_id, progress=progress,
                  manifest_bytes=manifest_bytes)
        return batch.commit()[0]
