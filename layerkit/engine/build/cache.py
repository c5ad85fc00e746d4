"""The classic builder's cache: a step is reused when an image already exists whose parent is the step's
parent image and whose ``container_config`` (the run config with the expanded instruction as its Cmd: for
COPY and ADD it names the checksum of the sources) equals the step's (moby ``image/cache``: ``compare``
of the candidate's ContainerConfig, the newest match wins).

Every step of a build is recorded as an image (untagged: Docker's dangling intermediate images) with its
parent, so the next build finds them; ``prune`` removes them as it removes any dangling image.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..store import Store


def canonical(value: object) -> str:
    """A JSON value as one comparable string (keys sorted; ``None``, empty lists and maps dropped, as
    Go's ``omitempty`` and Docker's comparison treat them alike)."""
    return json.dumps(_pruned(value), sort_keys=True, separators=(",", ":"))


def _pruned(value: object) -> object:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v not in (None, [], {}, "", False)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _adds(history: list, before: int, created_by: str | None) -> bool:
    if created_by is None:
        return len(history) == before
    return len(history) == before + 1 and history[-1].get("created_by") == created_by


class BuildCache:
    """The store's images by parent, to probe for a step already built."""

    def __init__(self, store: Store, enabled: bool = True) -> None:
        self.enabled = enabled
        self.children: dict[str | None, list[Image]] = {}
        if enabled:
            for img in store.images():
                self.children.setdefault(img.parent, []).append(img)

    def probe(self, parent: str | None, container_config: dict, history_len: int | None = None,
              created_by: str | None = None) -> Image | None:
        """The newest image built from ``parent`` with this ``container_config``, or None. With
        ``history_len`` (the parent's number of history entries), only an image that added exactly the
        entry ``created_by`` (none when it is None) matches: the two ``--format`` styles of one step share
        a container_config but not a history."""
        if not self.enabled:
            return None
        want = canonical(container_config)
        hits = [img for img in self.children.get(parent, ())
                if "container_config" in img.config and canonical(img.config["container_config"]) == want
                and (history_len is None or _adds(img.config.get("history") or [], history_len, created_by))]
        if not hits:
            return None
        return max(hits, key=lambda i: i.config.get("created", ""))

    def add(self, image: Image) -> None:
        """Remember an image this build made (a later step of the same build may probe for it)."""
        self.children.setdefault(image.parent, []).append(image)
