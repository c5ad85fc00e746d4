"""Bytes a layer adds that a later layer deletes or overwrites: who wasted what, layer by layer.

dive's efficiency (:mod:`.efficiency`) scores an image path by path; a slimming user asks the other way
round: *which step* put bytes into the image that a later step threw away, and *which* later step did.
:func:`superseded` answers from the layer indexes alone (no layer data is read):

* a regular file of layer ``i`` is **superseded** by the nearest layer ``j > i`` that has an entry at the
  same path (overwritten: a new copy, a chmod that copies the file up, a symlink in its place), a whiteout
  of the path or of one of its parents, an opaque marker on one of its parents, or a non-directory in place
  of one of its parents (all deleted). Its bytes are in the image's tars but not in its root filesystem.
  Unlike dive's score, ``rm -rf DIR`` of a directory full of files counts every file it hides.
* a regular file still visible in the image under a package manager's cache directory (apt's lists and
  archives, apk, dnf/yum, pip, npm) is **left**: bytes a step could have removed in the same step.

Sizes are regular files' tar header sizes (what a layer's tar holds for them); hardlinks, symlinks and
directories cost 0, as in dive.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .layerindex import LayerIndex, marker_target

__all__ = ["CACHE_DIRS", "LayerWaste", "superseded"]

# directories package managers fill and a Dockerfile should empty in the step that filled them
CACHE_DIRS = {
    "/var/lib/apt/lists": "apt package lists",
    "/var/cache/apt": "apt's package cache",
    "/var/cache/apk": "apk's package cache",
    "/var/cache/dnf": "dnf's cache",
    "/var/cache/yum": "yum's cache",
    "/root/.cache/pip": "pip's cache",
    "/root/.npm": "npm's cache",
}


@dataclass
class LayerWaste:
    """What layer ``layer`` (0 = bottom) wastes: ``by_layer`` maps a later layer to the bytes of this
    layer's files it deleted or overwrote; ``cache`` maps a cache directory (a key of :data:`CACHE_DIRS`)
    to the bytes this layer left in it; ``paths`` maps each such later layer to the largest files it
    superseded, ``(bytes, path, how)`` with ``how`` ``deleted`` or ``overwritten``."""

    layer: int
    by_layer: dict[int, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)
    paths: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)

    @property
    def superseded_bytes(self) -> int:
        """Bytes of this layer's files that later layers deleted or overwrote."""
        return sum(self.by_layer.values())

    @property
    def cache_bytes(self) -> int:
        """Bytes this layer left in package-manager caches that the image still holds."""
        return sum(self.cache.values())


def _ancestors(path: str):
    i = path.rfind("/")
    while i > 0:
        path = path[:i]
        yield path
        i = path.rfind("/")


def _cache_dir(path: str) -> str | None:
    for d in CACHE_DIRS:
        if path.startswith(d + "/"):
            return d
    return None


def superseded(layers: list[LayerIndex], top_paths: int = 5) -> list[LayerWaste]:
    """One :class:`LayerWaste` per layer of ``layers`` (bottom first): bytes each layer adds that a later
    layer deletes or overwrites, and bytes it leaves in package-manager caches; ``top_paths`` largest files
    kept per layer and superseding layer."""
    # Walk top down so that, when layer i is read, the maps hold the *nearest* layer above that hides a
    # path (each layer overwrites the values of the layers above it).
    at_path: dict[str, tuple[int, str]] = {}  # path -> (nearest upper layer with an entry there, how)
    under: dict[str, int] = {}  # dir -> nearest upper layer hiding everything below it
    out = [LayerWaste(i) for i in range(len(layers))]
    for i in range(len(layers) - 1, -1, -1):
        cols = layers[i].columns
        waste = out[i]
        paths, types, sizes = cols.paths, cols.types, cols.sizes
        found: dict[int, list[tuple[int, str, str]]] = {}
        for k, code in enumerate(types):
            if code != "f":
                continue
            path = paths[k]
            size = sizes[k]
            hit = at_path.get(path)
            by, how = (hit[0], hit[1]) if hit else (None, "")
            if under:
                for parent in _ancestors(path):
                    j = under.get(parent)
                    if j is not None and (by is None or j < by):
                        by, how = j, "deleted"
            if by is None:
                cache = _cache_dir(path)
                if cache is not None and size:
                    waste.cache[cache] = waste.cache.get(cache, 0) + size
                continue
            if size:
                waste.by_layer[by] = waste.by_layer.get(by, 0) + size
                found.setdefault(by, []).append((size, path, how))
        waste.paths = {j: heapq.nsmallest(top_paths, f, key=lambda t: (-t[0], t[1])) for j, f in found.items()}
        # this layer now hides what is below it
        for k, code in enumerate(types):
            path = paths[k]
            if code == "w":
                target = marker_target(path, code)
                at_path[target] = (i, "deleted")
                under[target] = i
            elif code == "o":
                under[marker_target(path, code)] = i
            else:
                at_path[path] = (i, "overwritten")
                if code != "d":
                    under[path] = i  # a file where a directory was hides the directory's contents
    return out
