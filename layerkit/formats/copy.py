"""``copy SRC DST``: move an image between the transports skopeo names, through the layerkit store.

Transports, parsed as skopeo (containers/image) parses them: the transport is what precedes the first
colon, and

* ``docker-archive:PATH[:REF]``: the path ends at the next colon; REF is a Docker reference (``:latest``
  added when it has no tag, digests refused), or ``@N`` (the N-th image of the archive, sources only).
  As a source REF picks the image by its RepoTags; as a destination it is the RepoTags entry written.
* ``oci:DIR[:NAME]`` and ``oci-archive:PATH[:NAME]``: the path ends at the first colon; NAME is the
  ``org.opencontainers.image.ref.name`` annotation, verbatim (``oci:/x:busybox:v1`` names the image
  ``busybox:v1``), so ``skopeo inspect oci:DIR:NAME`` finds what layerkit wrote and the other way round.
* ``docker://REF``: a registry (pull / push, with the store's layer dedup); ``:latest`` when REF has no tag.
* ``docker-daemon:REF``: a running Docker or Podman (``docker save`` / ``docker load``); REF is a tag
  (``:latest`` added) or, as a source, an image ID ``sha256:HEX``.
* layerkit's own store: ``layerkit:REF`` or a bare reference (``busybox``, ``lk.test/app:1``, an image ID).

A source that is not the store is first imported into it (as ``load``, ``pull`` or ``load --from-engine``
would, keeping the names it carries); the image is then exported to the destination from the store. A
destination REF or NAME names the image there; without one, a docker-archive or daemon destination gets
the names the source was addressed by (as ``docker save NAME`` does), an OCI destination gets no name
(as skopeo writes it).
"""

from __future__ import annotations

import difflib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..engine.image import Image
from ..engine.mediatypes import REF_NAME
from ..engine.progress import Progress
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store, user_reference_error
from ..errors import ImageNotFound, InvalidArchive, InvalidReference, LayerkitError, NotFound
from .sources import Source
from .transports.location import _KNOWN, OTHER_SKOPEO_TRANSPORTS, TRANSPORTS, Location, TransportError, parse_location

# ---- sources ----------------------------------------------------------------------------------------

@dataclass
class _Imported:
    image: Image
    names: list[Reference] = field(default_factory=list)  # what the source called it (tags only)
    pull: dict | None = None
    lines: list[str] = field(default_factory=list)


class _ManifestOverride(Source):
    """A docker-archive source whose ``manifest.json`` lists only the chosen entry."""

    def __init__(self, inner: Source, manifest: list) -> None:
        self.inner = inner
        self.label = inner.label
        self._manifest = json.dumps(manifest).encode()

    def has(self, name: str) -> bool:
        return name == "manifest.json" or self.inner.has(name)

    def size(self, name: str) -> int:
        return len(self._manifest) if name == "manifest.json" else self.inner.size(name)

    def open(self, name: str) -> BinaryIO:
        return io.BytesIO(self._manifest) if name == "manifest.json" else self.inner.open(name)

    def offset(self, name: str) -> int | None:
        return None if name == "manifest.json" else self.inner.offset(name)


def _refs(tags: list[str]) -> list[Reference]:
    out = []
    for t in tags:
        try:
            out.append(parse_reference(t))
        except InvalidReference:
            continue
    return out


def _names_in(entry: dict) -> list[Reference]:
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    return _refs([t for t in tags if isinstance(t, str)]) if isinstance(tags, list) else []


def _from_docker_archive(store: Store, loc: Location, progress: Progress | None) -> _Imported:
    from .docker_archive import load_docker_archive
    from .load import open_source

    src, _, tmp = open_source(store, loc.path)
    try:
        if not src.has("manifest.json"):
            raise InvalidArchive(f"{loc}: not a docker-archive (no manifest.json)")
        _, manifest = src.read_json("manifest.json", "manifest")
        if not isinstance(manifest, list) or not manifest:
            raise InvalidArchive(f"{loc}: manifest.json is not a non-empty list")
        if loc.index is not None:
            if loc.index >= len(manifest):
                raise ImageNotFound(f"{loc}: index @{loc.index} out of range (the archive holds "
                                    f"{len(manifest)} images)")
            chosen = manifest[loc.index]
        elif loc.ref is not None:
            hits = [e for e in manifest if any(r.normalized == loc.ref.normalized for r in _names_in(e))]
            if not hits:
                raise ImageNotFound(f"{loc}: no image tagged {loc.ref.familiar} in the archive")
            chosen = hits[0]
        elif len(manifest) == 1:
            chosen = manifest[0]
        else:
            raise LayerkitError(f"{loc}: the archive holds {len(manifest)} images; choose one with "
                                f"docker-archive:PATH:REF or docker-archive:PATH:@N")
        loaded = load_docker_archive(store, _ManifestOverride(src, [chosen]), progress=progress)
    finally:
        src.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    names = [loc.ref] if loc.ref is not None else _refs(loaded[0].tags)
    return _Imported(loaded[0].image, names)


def _from_oci(store: Store, loc: Location, progress: Progress | None) -> _Imported:
    from .load import open_source
    from .oci import load_oci

    p = Path(loc.path)
    if loc.transport == "oci" and p.exists() and not p.is_dir():
        raise InvalidArchive(f"{loc}: {loc.path} is a file, not an OCI layout directory (oci-archive: reads "
                             f"archives)")
    if loc.transport == "oci-archive" and p.is_dir():
        raise InvalidArchive(f"{loc}: {loc.path} is a directory, not an OCI archive (oci: reads layouts)")
    src, _, tmp = open_source(store, loc.path)
    try:
        if not (src.has("index.json") and src.has("oci-layout")):
            raise InvalidArchive(f"{loc}: not an OCI layout (no index.json and oci-layout)")
        if loc.name is None:
            _, index = src.read_json("index.json", "index")
            descs = index.get("manifests") if isinstance(index, dict) else None
            n = len(descs) if isinstance(descs, list) else 1  # load_oci names a wrong shape
            if n != 1:
                raise LayerkitError(f"{loc}: more than one image in oci, choose an image ({n} in the layout; "
                                    f"name one with {loc.transport}:{loc.path}:NAME)" if n else
                                    f"{loc}: the layout holds no image")
        loaded = load_oci(store, src, tag=loc.name, progress=progress)
    finally:
        src.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    if len(loaded) != 1:
        raise LayerkitError(f"{loc}: {len(loaded)} images answer to {loc.name!r}; name exactly one")
    return _Imported(loaded[0].image, _refs(loaded[0].tags))


def _import(store: Store, loc: Location, insecure: bool, progress: Progress | None,
            endpoint: str | None) -> _Imported:
    """Bring the source image into the store (or find it there)."""
    if loc.transport == "layerkit":
        if not loc.store_name:
            raise TransportError(f"{loc}: name the image to copy (layerkit:REF or a bare reference)")
        try:
            img = store.image(loc.store_name)
        except ImageNotFound as exc:
            head, colon, _ = loc.text.partition(":")
            near = difflib.get_close_matches(head, TRANSPORTS + OTHER_SKOPEO_TRANSPORTS, n=1, cutoff=0.7)
            hint = ""
            if colon and near and loc.text == loc.store_name:  # dockr:busybox is a valid reference, too
                hint = f" (if {head!r} is meant as a transport, did you mean {near[0]!r}? use {_KNOWN})"
            raise ImageNotFound(f"{exc}{hint}") from exc
        names = []
        try:
            r = parse_reference(loc.store_name)
            names = [t for t in img.tags if t.normalized == r.normalized]
        except InvalidReference:
            pass
        return _Imported(img, names)
    if loc.transport == "docker-archive":
        return _from_docker_archive(store, loc, progress)
    if loc.transport in ("oci", "oci-archive"):
        return _from_oci(store, loc, progress)
    if loc.transport == "docker":
        from .registry import pull

        res = pull(store, str(loc.ref), insecure=insecure, progress=progress)
        names = [loc.ref] if not loc.ref.digest else []
        return _Imported(store.image(res.image_id), names, res.to_json(), res.lines())
    if loc.transport == "docker-daemon":
        from .engine_api import load_from_engine

        name = loc.image_id or loc.ref.familiar
        loaded = load_from_engine(store, name, endpoint=endpoint, progress=progress)
        if len(loaded) != 1:
            raise LayerkitError(f"{loc}: the engine sent {len(loaded)} images; name exactly one")
        names = [loc.ref] if loc.ref is not None and not loc.ref.digest else _refs(loaded[0].tags)
        return _Imported(loaded[0].image, names)
    raise TransportError(f"{loc}: unknown transport")  # pragma: no cover - parse_location refuses it


# ---- destinations -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LayoutName:
    """An OCI ref.name written verbatim (skopeo's ``oci:DIR:NAME``).

    ``save_oci_layout`` / ``save_oci_archive`` take (image, references) and write each reference's
    ``normalized`` form as the ref.name; this stands in for a reference so NAME is written as given.
    """

    normalized: str


def _check_destination(loc: Location) -> None:
    """Refuse a destination that cannot be written, before anything is imported."""
    if loc.transport == "layerkit":
        if loc.store_name:
            try:
                r = parse_reference(loc.store_name)
            except InvalidReference as exc:
                raise TransportError(user_reference_error(loc.store_name, exc)) from exc
            if r.digest:
                raise TransportError(f"{loc}: refusing to create a tag with a digest reference")
    elif loc.transport == "docker-archive":
        if loc.index is not None:
            raise TransportError(f"{loc}: a source index (@N) cannot be a destination")
        _check_parent(loc)
        if Path(loc.path).is_dir():
            raise TransportError(f"{loc}: {loc.path} is a directory")
    elif loc.transport == "oci-archive":
        _check_parent(loc)
        if Path(loc.path).is_dir():
            raise TransportError(f"{loc}: {loc.path} is a directory (oci: writes layouts)")
    elif loc.transport == "oci":
        p = Path(loc.path)
        if p.exists() and not p.is_dir():
            raise TransportError(f"{loc}: {loc.path} is not a directory (oci-archive: writes archives)")
    elif loc.transport == "docker":
        if loc.ref.digest:
            raise TransportError(f"{loc}: cannot push to a digest reference; give a tag")
    elif loc.transport == "docker-daemon":
        if loc.image_id or loc.ref.digest:
            raise TransportError(f"{loc}: a docker-daemon destination must be a tag (NAME:TAG)")


def _has_unnamed(layout: Path, manifest_digest: str) -> bool:
    """True when the layout already lists this manifest without a name (and holds its blob)."""
    try:
        index = json.loads((layout / "index.json").read_text())
        return (layout / "blobs" / "sha256" / manifest_digest[7:]).is_file() and any(
            m.get("digest") == manifest_digest and not (m.get("annotations") or {}).get(REF_NAME)
            for m in index.get("manifests") or [])
    except (OSError, ValueError, AttributeError):
        return False


def _check_parent(loc: Location) -> None:
    parent = Path(loc.path).parent
    if not parent.is_dir():
        raise NotFound(f"{loc}: {parent}: no such directory")


def _export(store: Store, imp: _Imported, loc: Location, insecure: bool, progress: Progress | None,
            endpoint: str | None) -> dict:
    """Write the stored image to the destination; returns what was written (names, push result)."""
    img = imp.image
    out: dict = {"names": [], "push": None, "engine_ids": None}
    if loc.transport == "layerkit":
        if loc.store_name:
            r = store.tag(img.id, loc.store_name)
            out["names"] = [r.familiar]
        else:
            out["names"] = [t.familiar for t in imp.names]
    elif loc.transport == "docker-archive":
        from .docker_archive import save_docker_archive

        names = [loc.ref] if loc.ref is not None else [n for n in imp.names if not n.digest]
        save_docker_archive(store, [(img, names)], Path(loc.path))
        out["names"] = [n.familiar for n in names]
    elif loc.transport in ("oci", "oci-archive"):
        from .oci import save_oci_archive, save_oci_layout

        names = [_LayoutName(loc.name)] if loc.name else []
        if loc.transport == "oci":
            if names or not _has_unnamed(Path(loc.path), img.manifest_digest):  # never list it twice
                save_oci_layout(store, [(img, names)], Path(loc.path))
        else:
            save_oci_archive(store, [(img, names)], Path(loc.path))
        out["names"] = [loc.name] if loc.name else []
    elif loc.transport == "docker":
        from .registry import push

        res = push(store, img.id, str(loc.ref), insecure=insecure, progress=progress)
        out["push"] = res.to_json()
        out["names"] = [str(loc.ref)]
        out["lines"] = res.lines()
    elif loc.transport == "docker-daemon":
        from .engine_api import save_images_to_engine

        ref = loc.ref
        out["engine_ids"] = save_images_to_engine(store, [(img, [ref])], endpoint=endpoint)
        out["names"] = [ref.familiar]
    return out


def copy(store: Store, src: str, dst: str, insecure: bool = False, progress: Progress | None = None,
         endpoint: str | None = None) -> dict:
    """Copy the image ``src`` names to ``dst`` (both in skopeo's ``TRANSPORT:REFERENCE`` form, or a bare
    store reference), through the store.

    ``insecure`` allows plain HTTP / unverified TLS for ``docker://`` registries other than localhost;
    ``endpoint`` is the engine for ``docker-daemon:`` (default ``DOCKER_HOST``); ``progress`` receives the
    events of the load, pull or push (:mod:`layerkit.engine.progress`). Both sides are parsed and the
    destination checked before anything moves. Returns ``{"source", "destination", "id",
    "manifest_digest", "names" (what the destination calls the image), "pull", "push" (the registry
    transfers, or None), "engine_ids", "lines"}``.
    """
    s = parse_location(src)
    d = parse_location(dst)
    _check_destination(d)
    imp = _import(store, s, insecure, progress, endpoint)
    img = store.image(imp.image.id)  # as recorded (the manifest the store kept)
    out = _export(store, _Imported(img, imp.names), d, insecure, progress, endpoint)
    lines = list(imp.lines) + out.pop("lines", [])
    lines.append(f"Copied {img.id} from {s} to {d}")
    return {"source": s.text, "destination": d.text, "id": img.id, "manifest_digest": img.manifest_digest,
            "names": out["names"], "pull": imp.pull, "push": out["push"], "engine_ids": out["engine_ids"],
            "lines": lines}
