"""Images as the store holds them: a config, a manifest, and layers bottom first.

An :class:`Image` and its :class:`Layer` objects are values (the documents and descriptors) plus a
reference to an :class:`IndexProvider`, the narrow protocol they read layer indexes and recorded parents
through. :class:`~layerkit.engine.store.Store` satisfies it; this module never imports the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from .humanize import parse_time
from .reference import Reference

if TYPE_CHECKING:  # pragma: no cover
    from .layerindex import LayerIndex

MAX_LAYERS = 127  # the limit the Docker documentation gives for an image's depth


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID of each layer (OCI image-spec config.md): a layer together with everything below it."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class IndexProvider(Protocol):
    """What images and layers read through (the store provides it): layer indexes, built or cached, and
    the recorded parents of an image for ``history``'s IMAGE column."""

    def layer_index(self, diff_id: str, digest: str | None = None) -> LayerIndex:
        """The index of the layer with this diff_id (its blob ``digest``)."""
        ...

    def index_layers(self, layers: list[Layer]) -> None:
        """Index the layers whose content was never checked, several at once."""
        ...

    def ancestry(self, image: Image) -> list[Image]:
        """The image and its recorded parents, nearest first."""
        ...


@dataclass
class Layer:
    """One layer of an image: its descriptor in the manifest and its (cached) index figures."""

    source: IndexProvider = field(repr=False)
    index_in_image: int
    diff_id: str
    digest: str
    media_type: str
    compressed_size: int
    chain_id: str

    def index(self) -> LayerIndex:
        """The layer's tar index (entries, sizes); built once and cached by diff_id."""
        return self.source.layer_index(self.diff_id, self.digest)

    @property
    def size(self) -> int:
        """Docker's size: file bytes with hardlinks once and symlinks as their target length."""
        return self.index().size

    @property
    def tar_size(self) -> int:
        """Length of the uncompressed tar."""
        return self.index().tar_size

    @property
    def files(self) -> int:
        """Entries other than directories and whiteout markers."""
        return self.index().files


@dataclass
class HistoryRow:
    """One row of ``history``, newest first, as ``docker history`` shows it."""

    id: str | None
    created: datetime | None
    created_by: str
    size: int
    comment: str
    empty_layer: bool
    diff_id: str | None
    author: str = ""


@dataclass
class Image:
    """An image in the store. ``id`` is the sha256 of the config bytes."""

    source: IndexProvider = field(repr=False)
    id: str
    manifest_digest: str
    manifest: dict = field(repr=False)
    config: dict = field(repr=False)
    tags: list[Reference] = field(default_factory=list)
    parent: str | None = None

    @property
    def short_id(self) -> str:
        """The 12-hex ID Docker prints."""
        return self.id.split(":", 1)[1][:12]

    @property
    def diff_ids(self) -> list[str]:
        """The config's rootfs.diff_ids, bottom first."""
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @cached_property
    def chain_ids(self) -> list[str]:
        """ChainIDs of the layers, bottom first."""
        return chain_ids(self.diff_ids)

    @cached_property
    def layers(self) -> list[Layer]:
        """The layers, bottom first."""
        out = []
        chains = self.chain_ids
        for i, (desc, diff_id) in enumerate(zip(self.manifest.get("layers", []), self.diff_ids, strict=False)):
            out.append(Layer(self.source, i, diff_id, desc["digest"], desc.get("mediaType", ""),
                             int(desc.get("size", 0)), chains[i]))
        return out

    @property
    def created(self) -> datetime | None:
        """When the config says the image was created."""
        return parse_time(self.config.get("created"))

    @property
    def size(self) -> int:
        """Docker's image size: the sum of its layers' sizes."""
        self.source.index_layers(self.layers)
        return sum(layer.size for layer in self.layers)

    @property
    def name(self) -> str:
        """The first tag in familiar form, or the short ID."""
        return self.tags[0].familiar if self.tags else self.short_id

    @property
    def history_entries(self) -> list[dict]:
        """The config's history, oldest first."""
        return list(self.config.get("history") or [])

    def history(self) -> list[HistoryRow]:
        """Rows as ``docker history`` prints them, newest first.

        A non-empty entry is matched to the next layer bottom up. The ID column names a locally known
        image whose top entry the row is: this image and its recorded parents (from ``commit``); other
        rows are ``None`` (printed ``<missing>``).
        """
        layers = self.layers
        entries = self.history_entries
        if not entries:
            # An image without history: one synthetic row per layer, as Docker shows them.
            entries = [{"created": self.config.get("created"), "created_by": ""} for _ in layers]
        rows: list[HistoryRow] = []
        li = 0
        for h in entries:
            empty = bool(h.get("empty_layer", False))
            size = 0
            diff_id = None
            if not empty and li < len(layers):
                size = layers[li].size
                diff_id = layers[li].diff_id
                li += 1
            rows.append(HistoryRow(None, parse_time(h.get("created")), h.get("created_by", ""), size,
                                   h.get("comment", ""), empty, diff_id, h.get("author", "")))
        # the image itself and its ancestors own their top rows
        known = self.source.ancestry(self)
        for img in known:
            n = len(img.history_entries) or len(img.layers)
            if 0 < n <= len(rows):
                rows[n - 1].id = img.id
        rows.reverse()
        return rows
