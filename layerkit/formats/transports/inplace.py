"""Analysis in place: an image of any transport (``docker-archive:X``, ``oci:DIR:NAME``, ``docker://REF`` ...)
read as an :class:`~layerkit.engine.image.Image` without importing it.

:func:`open_in_place` opens the reference with the transport registry (:func:`.registry.open_source`), picks
the one image it names (:func:`choose_image`) and turns that :class:`~.base.SourceImage` into an ``Image``
whose layer indexes are built from the layer streams, in memory (:mod:`layerkit.engine.inplace`). Every
read-only verb analyses the result exactly as it analyses a stored image; nothing is written to the store or
anywhere else.

The image is what ``load`` would make of the same source, except that nothing is hashed: the layers' diff_ids
are the config's, unchecked, and their digests are the source's (for a layer whose source names no digest,
its diff_id, which is what ``load`` finds for an uncompressed layer). The manifest is the source's own when
it names this config and these layers (as ``load`` keeps it), else the one ``load`` would write, so the
manifest digest is the same too.

A process keeps the last few images it opened (:data:`KEEP`), keyed by the reference and the identity of the
file or directory it names, so the notebook's panels and a report, which ask several commands about one
target, read an archive once, and may name it afterwards by its image ID (:func:`find_opened`); the sources
stay open until they are dropped or the process ends. :func:`all_in_place` reads every image of an archive
(``images SOURCE``).
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ...engine.digests import sha256_bytes, short
from ...engine.image import Image
from ...engine.inplace import InPlaceIndexes, LayerBlob
from ...engine.mediatypes import OCI_CONFIG, OCI_MANIFEST, oci_layer_type
from ...engine.shapes import check_manifest, parse_config, parse_json
from ...errors import ImageNotFound, InvalidManifest, MaxDepthExceeded
from ..importer import MAX_STORED_LAYERS
from .location import TRANSPORTS, Location, TransportError, parse_location
from .registry import is_transport_reference as registry_says

if TYPE_CHECKING:  # pragma: no cover
    from ...engine.store import Store
    from .base import ImageSource, SourceImage

KEEP = 4  # images kept open per process


def is_transport_reference(text: str) -> bool:
    """Whether ``text`` names an image by transport (``docker-archive:PATH``, ``oci:DIR[:NAME]``,
    ``oci-archive:PATH``, ``docker://REF``, ``docker-daemon:REF``) rather than in the store.

    A text that starts with a transport's name and a colon is one even when the rest is malformed, so that
    the transport's parser, not the store's reference grammar, says what is wrong with it."""
    transport = text.partition(":")[0]
    return (transport in TRANSPORTS and transport != "layerkit") or registry_says(text)


def choose_image(images: list[SourceImage], label: str) -> SourceImage:
    """The one image a reference names: the reference's own choice when it made one (the source then yields
    only that image), else the archive's only image. Several and no choice: a one-line
    :class:`~.location.TransportError` listing their names (as skopeo refuses a docker-archive of several
    images without a reference); an image without a name is listed by its short ID."""
    if len(images) == 1:
        return images[0]
    if not images:
        raise ImageNotFound(f"{label}: holds no image")
    names = []
    for im in images:
        names += [n.familiar for n in im.names] or [short(im.expected_id or sha256_bytes(im.config_bytes))]
    raise TransportError(f"{label}: holds {len(images)} images; name one of them: " + ", ".join(names))


def image_in_place(im: SourceImage, label: str | None = None, indexes: InPlaceIndexes | None = None) -> Image:
    """The :class:`Image` of a source's image, read in place: config and manifest checked as ``load``
    checks them, layer indexes built on first use from the source's layer streams (never stored).
    ``indexes``: the provider to add the image's layers to (the images of one archive share theirs, so a
    layer they share is read once); a new one by default."""
    label = label or im.label
    image_id = sha256_bytes(im.config_bytes)
    if im.expected_id and image_id != im.expected_id:
        from ...errors import DigestMismatch

        raise DigestMismatch(f"{im.label}: config hashes to {image_id}, expected {im.expected_id}")
    config = parse_config(im.config_bytes, im.label)
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(im.layers):
        raise InvalidManifest(f"{im.label}: config lists {len(diff_ids)} diff_ids but the manifest has "
                              f"{len(im.layers)} layers")
    if len(im.layers) > MAX_STORED_LAYERS:
        raise MaxDepthExceeded(f"{im.label}: {len(im.layers)} layers, layerkit reads images of at most "
                               f"{MAX_STORED_LAYERS}")
    indexes = indexes if indexes is not None else InPlaceIndexes({}, label)
    digests = []
    for src, diff_id in zip(im.layers, diff_ids, strict=True):
        digest = src.digest or diff_id
        indexes.layers.setdefault(digest, LayerBlob(src.open, src.label, src.size))
        digests.append(digest)
    manifest = _manifest(im, image_id, digests)
    if manifest is not None:
        mbytes = im.manifest_bytes or b""
    else:
        # the manifest load writes: each layer typed by the compression its first bytes show, asked in the
        # order the layers lie in the archive (a gzipped archive is then inflated once more, not per layer)
        kinds: dict[str, str] = {}
        order = sorted(range(len(digests)), key=lambda i: im.layers[i].offset or 0)
        for i in order:
            if digests[i] not in kinds:
                kinds[digests[i]] = indexes.compression(digests[i], diff_ids[i])
        descs = [{"mediaType": oci_layer_type(kinds[d]), "digest": d, "size": src.size or 0}
                 for src, d in zip(im.layers, digests, strict=True)]
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(im.config_bytes)},
                    "layers": descs}
        mbytes = json.dumps(manifest, separators=(",", ":")).encode()  # as the store writes it
    return Image(indexes, image_id, sha256_bytes(mbytes), manifest, config, list(im.names))


def _manifest(im: SourceImage, image_id: str, digests: list[str]) -> dict | None:
    """The source's manifest when ``load`` would keep it (it names this config and these layer blobs)."""
    if not im.manifest_bytes:
        return None
    m = parse_json(im.manifest_bytes, f"{im.label}: manifest")
    if not isinstance(m, dict) or not isinstance(m.get("config"), dict) or not isinstance(m.get("layers"), list):
        return None
    m = check_manifest(m, f"{im.label}: manifest")
    if m["config"]["digest"] != image_id or [d["digest"] for d in m["layers"]] != digests:
        return None
    return m


class _Opened:
    """One reference opened in place: its source (kept open: file reads go back to it) and its image."""

    def __init__(self, source: ImageSource, image: Image) -> None:
        self.source = source
        self.image = image


_lock = threading.Lock()
_opened: dict[tuple, _Opened] = {}


def _identity(text: str) -> tuple:
    """What tells a reference's target apart from a later one of the same name: the device, inode, size and
    modification time of the longest prefix of what follows the transport that exists on disk."""
    rest = text.split("//", 1)[1] if text.startswith("docker://") else text.split(":", 1)[1]
    parts = rest.split(":")
    for n in range(len(parts), 0, -1):
        try:
            st = os.stat(":".join(parts[:n]))
        except (OSError, ValueError):
            continue
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return ()


def _options(loc: Location, store: Store | None, opts: dict) -> dict:
    """What the transport's source opener is given: ``every=True`` (every image of an archive without a REF,
    so that the refusal of several can name them) and the store (a daemon's ``docker save`` is kept under
    it while the source is open; a registry source takes a config it holds) when the opener takes them."""
    from .registry import transport

    opener = transport(loc.transport).source
    out = dict(opts)
    if _takes(opener, "every"):
        out["every"] = True
    if store is not None and _takes(opener, "store") and store.root.is_dir():
        # only a store that exists: reading in place never creates one (a daemon source then spools to the
        # system's temporary directory)
        out["store"] = store
    return out


def open_in_place(text: str, store: Store | None = None, **opts: object) -> Image:
    """The image the transport reference ``text`` names, read in place (see the module's docstring).

    ``opts`` go to the transport (``insecure``, ``engine`` ...), and ``store`` when it takes one. Errors are
    the transport's and ``load``'s one-line errors; a reference to several images without a choice is
    refused naming them."""
    from .registry import open_source

    key = (text, _identity(text), str(store.root) if store is not None else None, tuple(sorted(opts.items())))
    with _lock:
        hit = _opened.get(key)
        if hit is not None:
            _opened[key] = _opened.pop(key)  # the newest last
            return hit.image
    loc = parse_location(text)
    source = open_source(loc, **_options(loc, store, opts))
    try:
        im = choose_image(list(source.images()), getattr(source, "label", text))
        image = image_in_place(im, text)
    except BaseException:
        source.close()
        raise
    with _lock:
        _opened[key] = _Opened(source, image)
        while len(_opened) > KEEP:
            _opened.pop(next(iter(_opened))).source.close()
    return image


def find_opened(name: str) -> Image | None:
    """An image this process read in place (and still keeps, :data:`KEEP`) whose ID is ``name`` (full,
    with or without ``sha256:``, or a unique prefix of at least 12 hex digits), else None: so the faces can
    name an image they resolved once by its ID, as they name stored ones."""
    hexpart = name[7:] if name.startswith("sha256:") else name
    if not 12 <= len(hexpart) <= 64 or any(c not in "0123456789abcdef" for c in hexpart):
        return None
    with _lock:
        hits = {o.image.id: o.image for o in _opened.values() if o.image.id[7:].startswith(hexpart)}
    return next(iter(hits.values())) if len(hits) == 1 else None


@contextmanager
def all_in_place(text: str, store: Store | None = None, **opts: object) -> Iterator[list[Image]]:
    """Every image the reference names (all of an archive or layout without a REF or NAME), read in place,
    sharing one provider; the source is closed when the block ends (not kept: a listing reads each image
    once)."""
    from .registry import open_source

    loc = parse_location(text)
    source = open_source(loc, **_options(loc, store, opts))
    try:
        indexes = InPlaceIndexes({}, text)
        yield [image_in_place(im, text, indexes) for im in source.images()]
    finally:
        source.close()


def _takes(fn: object, name: str) -> bool:
    """Whether the callable ``fn`` (a transport's source opener) takes the keyword ``name``."""
    try:
        params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def close_all() -> None:
    """Close every source kept open (at exit, and for tests that remove what they analysed)."""
    with _lock:
        while _opened:
            _opened.pop(next(iter(_opened))).source.close()


atexit.register(close_all)
