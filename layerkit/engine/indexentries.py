"""index.json's manifest entries as :meth:`~layerkit.engine.store.Store.add_images` updates them: a tag, an
image's bare entry and a lost image's untagged entry found in constant time, so recording the images of
an archive is linear in their tags (100,000 tags were quadratic when each image rewrote the list)."""

from __future__ import annotations

from .mediatypes import REF_NAME


class IndexEntries:
    """index.json's manifest entries, updated image by image in constant time per tag.

    The rules of one image (as ``docker load`` and ``docker tag``): each of its tags is taken from whatever
    image held it; its entries are one per tag, or one bare entry when it has none; an image that loses its
    last entry stays as a bare (untagged) entry. Entries keep their order; new ones are appended.
    """

    def __init__(self, manifests: list) -> None:
        # key -> an entry: a dict as read, or (manifest digest, name) for a tag recorded here (a dict per
        # tag costs 420 bytes; made only by result())
        self._entries: dict[int, object] = {}
        self._by_name: dict[str, int | list[int]] = {}  # a list only where an index names a tag twice
        self._bare: dict[str, list[int]] = {}
        self._count: dict[str, int] = {}
        self._desc: dict[str, dict] = {}  # digest -> its descriptor without annotations
        self._next = 0
        for d in manifests:
            self._append(d)

    def _append(self, d: object) -> None:
        key = self._next
        self._next += 1
        self._entries[key] = d
        if isinstance(d, tuple):
            digest, name = d
        elif isinstance(d, dict):
            digest = d.get("digest")
            ann = d.get("annotations")
            name = ann.get(REF_NAME) if isinstance(ann, dict) else None
            if not (isinstance(name, str) and name):
                name = None
                if not ann and isinstance(digest, str):
                    self._bare.setdefault(digest, []).append(key)
            if isinstance(digest, str) and digest not in self._desc:
                self._desc[digest] = {k: v for k, v in d.items() if k != "annotations"}
        else:
            return
        if name is not None:
            had = self._by_name.setdefault(name, key)
            if had != key:
                self._by_name[name] = (had if isinstance(had, list) else [had]) + [key]
        if isinstance(digest, str):
            self._count[digest] = self._count.get(digest, 0) + 1

    def _drop(self, keys: int | list[int], lost: list[str]) -> None:
        for key in keys if isinstance(keys, list) else [keys]:
            d = self._entries.pop(key, None)
            digest = d[0] if isinstance(d, tuple) else d.get("digest") if isinstance(d, dict) else None
            if isinstance(digest, str):
                self._count[digest] -= 1
                if self._count[digest] == 0:
                    lost.append(digest)

    def digests(self) -> list[str]:
        """The distinct manifest digests, in order."""
        return list(self._count)

    def base(self, mdigest: str) -> dict:
        """An entry of ``mdigest`` without its annotations (the descriptor a new tag entry copies)."""
        return dict(self._desc[mdigest])

    def record(self, mdesc: dict, names: list[str]) -> None:
        """Give the image of ``mdesc`` these tags (normalized names), by the rules above."""
        mdigest = mdesc["digest"]
        self._desc.setdefault(mdigest, {k: v for k, v in mdesc.items() if k != "annotations"})
        lost: list[str] = []
        for name in names:
            self._drop(self._by_name.pop(name, []), lost)
        self._drop(self._bare.pop(mdigest, []), lost)
        for name in dict.fromkeys(names):
            self._append((mdigest, name))
        if self._count.get(mdigest, 0) == 0:
            self._append(dict(self._desc[mdigest]))
        for digest in lost:  # an image that lost its last tag to another stays, untagged
            if self._count.get(digest, 0) == 0:
                self._append(dict(self._desc[digest]))

    def tags(self) -> dict[str, list[str]]:
        """manifest digest -> the names its entries carry."""
        out: dict[str, list[str]] = {}
        for d in self._entries.values():
            if isinstance(d, dict):
                ann = d.get("annotations")
                name = ann.get(REF_NAME) if isinstance(ann, dict) else None
                d = (d.get("digest"), name)
            if isinstance(d, tuple) and isinstance(d[0], str) and isinstance(d[1], str) and d[1]:
                out.setdefault(d[0], []).append(d[1])
        return out

    def result(self) -> list:
        """The entries, in order, as index.json holds them (this object is spent afterwards)."""
        out = []
        for d in self._entries.values():
            if isinstance(d, tuple):
                d = {**self._desc[d[0]], "annotations": {REF_NAME: d[1]}}
            out.append(d)
        self._entries.clear()
        self._by_name.clear()
        return out
