"""Docker's prune rules: which images and containers ``image prune``, ``container prune`` and
``system prune`` remove, and how much space that gives back.

- A container is prunable when it is not running.
- An image is *dangling* when it has no tag and neither it nor any image built on it (its children, from
  ``commit`` or a build, transitively) has a tag or a container: Docker removes dangling leaf images and,
  with each, the untagged parents nothing else needs (moby's ``ImagesPrune`` with ``prune=true``).
- ``-a`` prunes every image that no container uses, tagged or not, except the parents of images that a
  container uses (they cannot go while their child stays).

Images are removed children first, so a parent is free by the time its turn comes; a layer goes only when
no remaining image uses it (:meth:`~layerkit.engine.store.Store.remove_image`). The space reclaimed is the
Docker size of the layers really deleted, which is what ``df`` counts as reclaimable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .container import container_users, list_containers, remove_container
from .image import Image

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


@dataclass
class PruneResult:
    """What a prune removed: untagged references, deleted image and layer IDs, removed containers, and the
    bytes given back (Docker's size of the deleted layers and writable layers)."""

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    reclaimed: int = 0

    def add(self, other: PruneResult) -> PruneResult:
        """Both results together (``system prune``: containers, then images)."""
        return PruneResult(self.untagged + other.untagged, self.deleted + other.deleted,
                           self.containers + other.containers, self.reclaimed + other.reclaimed)


def prunable_containers(store: Store) -> list:
    """The containers ``container prune`` removes: every one that is not running."""
    return [c for c in list_containers(store) if c.state != "running"]


def prune_containers(store: Store) -> PruneResult:
    """Remove every stopped container and its writable layer."""
    result = PruneResult()
    for c in prunable_containers(store):
        size = c.writable_index().size
        remove_container(store, c.id)
        result.containers.append(c.id)
        result.reclaimed += size
    return result


def prunable_images(store: Store, all: bool = False) -> list[Image]:
    """The images an image prune removes (``all``: ``-a``), children before their parents."""
    images = store.images()
    by_id = {i.id: i for i in images}
    used = {c.image_id for c in list_containers(store)}

    def ancestors(img: Image) -> list[str]:
        out, cur, seen = [], img.parent, {img.id}
        while cur and cur in by_id and cur not in seen:
            out.append(cur)
            seen.add(cur)
            cur = by_id[cur].parent
        return out

    # what must stay: images a container uses (and, without -a, tagged ones), with all their parents
    roots = [i for i in images if i.id in used or (not all and i.tags)]
    keep = {i.id for i in roots}
    for i in roots:
        keep.update(ancestors(i))
    doomed = [i for i in images if i.id not in keep]
    depth = {i.id: len(ancestors(i)) for i in doomed}
    return sorted(doomed, key=lambda i: -depth[i.id])  # deepest (children) first


def prune_images(store: Store, all: bool = False) -> PruneResult:
    """Remove dangling images (``all``: every image no container uses) and the layers nothing else uses."""
    result = PruneResult()
    doomed = prunable_images(store, all)
    sizes = {la.diff_id: la.size for img in doomed for la in img.layers}
    for img in doomed:
        res = store.remove_image(img.id, force=True)
        result.untagged += res["untagged"]
        result.deleted += res["deleted"]
        result.reclaimed += sum(sizes.get(d, 0) for d in res["deleted"])
    return result


def remove_image(store: Store, name: str, force: bool = False) -> dict[str, list[str]]:
    """``rmi``: :meth:`Store.remove_image`, then, as ``docker rmi`` does unless ``--no-prune``, the untagged
    parents that only the deleted image needed (no tag, no other child, no container), nearest first."""
    users = container_users(store)
    img = store.image(name)
    res = store.remove_image(name, force=force, users=users)
    deleted = list(res["deleted"])
    parent = img.parent if img.id in deleted else None
    while parent is not None:
        images = store.images()
        p = next((i for i in images if i.id == parent), None)
        if p is None or p.tags or p.id in users or any(o.parent == p.id for o in images):
            break
        more = store.remove_image(p.id, users=users)
        if p.id not in more["deleted"]:
            break
        deleted += more["deleted"]
        parent = p.parent
    return {"untagged": res["untagged"], "deleted": deleted}
