"""The embedded store: an OCI image layout on disk plus layerkit's own metadata beside it.

Layout (``skopeo inspect oci:STORE:docker.io/library/busybox:latest`` and ``umoci ls --layout STORE``
read it directly)::

    STORE/oci-layout              {"imageLayoutVersion": "1.0.0"}
    STORE/index.json              one manifest descriptor per tag (annotation org.opencontainers.image.ref.name
                                  holds the full normalized reference); untagged images have no annotation
    STORE/blobs/sha256/HEX        manifests, configs and layers
    STORE/layerkit/               layerkit's own files, which OCI tools ignore:
        lock                      flock()ed around every index update
        tmp/                      blobs being written (renamed into blobs/ once verified)
        layers/DIFFHEX.idx        per-layer tar index, keyed by diff_id
        verified/HEX              the diff_id a layer blob's content was checked to have
        views/CHAINHEX.v2.db      path index of an image's union view (``diff``)
        rootfs/HEX                extracted layers that ``run`` mounts (see rootfs.py), l/ their short links
        containers/ID/            a container: config.json, upper/ (its writable layer), work/
        images.json               per image: parent (from commit/build), when it was added

``layerkit/`` and its directories are private (0700), as Docker keeps ``/var/lib/docker``: extracted
layers hold the setuid binaries and device nodes of images, upper directories what containers wrote, and
no other user of the machine may reach them (:mod:`.private`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import (
    Conflict,
    DigestMismatch,
    HostPathError,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    LayerkitError,
    one_line,
)
from .atomic import atomic_write_json
from .blobs import BlobStore
from .digests import is_digest, sha256_bytes
from .image import Image
from .indexentries import IndexEntries
from .layer import index_blob, layer_workers
from .layerindex import LayerIndex, read_index, write_index
from .mediatypes import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, REF_NAME
from .private import private_dir
from .progress import Progress, ProgressEvent, Status, serialized
from .reference import Reference, parse_reference
from .shapes import check_config, check_index, check_manifest, load_json, load_object

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
INDEX_PROGRESS_MIN = 64 << 20  # indexing a layer blob this large reports progress
# layerkit's directories that hold image content or container state: 0700, like STORE/layerkit itself
PRIVATE_DIRS = ("tmp", "rootfs", "containers", "layers", "views", "verified")
PREFIX_VIEWS = 4  # union views of layer prefixes (image_view's ``layer``) kept per store object


def default_root() -> Path:
    """``$LAYERKIT_HOME``, else the user data dir (``~/.local/share/layerkit``)."""
    env = os.environ.get("LAYERKIT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "layerkit"


@dataclass
class NewLayer:
    """A layer ready to be referenced by a new image (its blob already in the store)."""

    digest: str
    diff_id: str
    media_type: str
    size: int


@dataclass
class NewImage:
    """An image to record with :meth:`Store.add_images` (its layer blobs already in the store)."""

    config_bytes: bytes
    layers: list[NewLayer]
    tags: list[Reference] = field(default_factory=list)
    parent: str | None = None
    annotations: dict | None = None
    manifest_bytes: bytes | None = None


class Store:
    """A layerkit store. ``Store()`` opens the default store; ``Store(path)`` any other.

    Reading a store that does not exist yet shows no images; the directory is created on first write.
    ``progress`` receives the events of work the store does on its own when asked for something (indexing
    a large layer on first use); the faces set it to draw them.
    """

    def __init__(self, root: str | os.PathLike | None = None, progress: Progress | None = None) -> None:
        if root is not None and not os.fspath(root):
            # Path("") is the current directory: an empty --store must not quietly mean some store
            raise HostPathError("the store path is empty: name a directory, or leave it out for the default store")
        self.root = (Path(root).expanduser() if root is not None else default_root()).absolute()
        self.meta_dir = self.root / "layerkit"
        self.blobs = BlobStore(self.root, self.meta_dir / "tmp")
        self.layer_index_dir = self.meta_dir / "layers"
        self._index_cache: dict[str, LayerIndex] = {}
        # blob digest -> the diff_id its content was checked to have (files in layerkit/verified/)
        self.verified_dir = self.meta_dir / "verified"
        self._verified: dict[str, str] = {}
        self._views: dict[str, object] = {}  # top chain ID -> union view
        self._prefix_views: dict[str, object] = {}  # chain ID -> union view of a layer prefix (a few)
        self.progress = serialized(progress)  # layers are indexed on several threads (index_layers)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---- files and locking -------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the layout if it is not there yet, and make layerkit's own directories private (0700),
        narrowing those an older layerkit made 0755.

        The OCI layout part (``oci-layout``, ``index.json``, ``blobs/``) keeps the modes it was made with:
        it is an image layout that the user's other tools open in place (``skopeo inspect oci:STORE:REF``,
        ``umoci ls``), it holds only blobs (JSON and layer tars, each file 0600), never an extracted file,
        so nothing in it can be executed or opened as a device.

        Raises :class:`HostPathError` when the store is not a directory or cannot be written.
        """
        self.check_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            private_dir(self.meta_dir)
            for name in PRIVATE_DIRS:
                private_dir(self.meta_dir / name)
            self.blobs.ensure()
            layout = self.root / "oci-layout"
            if not layout.exists():
                atomic_write_json(layout, LAYOUT_VERSION)
            if not (self.root / "index.json").exists():
                atomic_write_json(self.root / "index.json",
                                   {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        except OSError as exc:
            raise HostPathError(f"cannot write to the store {self.root}: {one_line(exc)}") from exc

    def check_root(self) -> None:
        """Refuse a store path that exists but is not a directory (a file, ``/dev/null``)."""
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return
        except NotADirectoryError:  # an ancestor is a file
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise HostPathError(f"the store {self.root} is not a directory")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock (two notebooks on one store must not interleave updates)."""
        self.ensure()
        with open(self.meta_dir / "lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def read_index(self) -> dict:
        """The layout's index.json (an empty one if the store does not exist yet).

        Raises :class:`InvalidManifest` naming the file when it is not JSON or not an image index (another
        tool can write the layout), :class:`HostPathError` when the store is not a directory."""
        path = self.root / "index.json"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        except NotADirectoryError:
            self.check_root()
            raise
        return check_index(load_json(data, str(path)), str(path))

    def _write_index(self, idx: dict) -> None:
        atomic_write_json(self.root / "index.json", idx)

    def read_meta(self) -> dict:
        """layerkit's own per-image metadata (parents, times)."""
        try:
            with open(self.meta_dir / "images.json") as f:
                meta = json.load(f)
        except (FileNotFoundError, ValueError, RecursionError):
            return {}  # layerkit's own notes: without them images only lose their recorded parents
        if not isinstance(meta, dict):
            return {}
        return {k: v for k, v in meta.items() if isinstance(v, dict)}

    def _write_meta(self, meta: dict) -> None:
        private_dir(self.meta_dir, parents=True)
        atomic_write_json(self.meta_dir / "images.json", meta)

    # ---- blobs and layer indexes ---------------------------------------------------------------

    def read_json_blob(self, digest: str, what: str) -> tuple[bytes, dict]:
        """Read a JSON blob (manifest, config), failing with a message that names it."""
        data = self.blobs.read_bytes(digest)
        return data, load_object(data, f"{what} {digest}")

    def layer_index(self, diff_id: str, digest: str | None = None) -> LayerIndex:
        """The index of a layer, from memory, from its cache file, or built from the blob.

        A blob whose content was never checked against ``diff_id`` (a pulled layer: pull verifies only
        the blob's digest) is indexed from the blob, and :class:`DigestMismatch` is raised when its content
        is not what the image's config says. So a config cannot borrow the index of another layer.
        """
        if digest is None:
            digest = self.blob_for_diff_id(diff_id)
            if digest is None:
                raise LayerkitError(f"layer {diff_id} is not in the store")
        checked = self.checked_diff_id(digest) == diff_id
        idx = self._index_cache.get(diff_id) if checked else None
        if idx is None:
            idx = read_index(self.layer_index_dir, diff_id) if checked else None
            if idx is None:
                if not self.blobs.has(digest):
                    raise LayerkitError(f"layer {diff_id} (blob {digest}) is missing from the store {self.root}; "
                                        "load or pull the image again")
                idx = self._index_with_progress(digest)
                if idx.diff_id != diff_id:
                    raise DigestMismatch(f"layer {digest}: its content hashes to {idx.diff_id}, but the image's "
                                         f"config says {diff_id}; the image was built or published wrong: "
                                         "remove it with `layerkit rmi` and ask its publisher")
                self.save_layer_index(idx, digest)
            self._index_cache[diff_id] = idx
        return idx

    def index_layers(self, layers: list) -> None:
        """Index the layers (``Image.layers`` items) whose content was never checked, several at once.

        The first use of a pulled image indexes all its layers, on :func:`~.layer.layer_workers` threads
        (registry_bench's 790 MB, 6-layer image: 1.5 s on 2 cores, benchmarks/README.md).
        """
        todo = {la.diff_id: la for la in layers if self.checked_diff_id(la.digest) != la.diff_id}
        if len(todo) < 2:
            return
        from concurrent.futures import ThreadPoolExecutor

        workers = min(len(todo), layer_workers())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layerkit-index") as pool:
            for _ in pool.map(lambda la: self.layer_index(la.diff_id, la.digest), todo.values()):
                pass

    def checked_diff_id(self, digest: str) -> str | None:
        """The diff_id a layer blob's content was checked to have (while ingested or indexed), or None."""
        d = self._verified.get(digest)
        if d is None:
            try:
                d = (self.verified_dir / digest[7:]).read_text().strip()
            except (FileNotFoundError, ValueError):
                return None
            self._verified[digest] = d
        return d

    def _mark_checked(self, digest: str, diff_id: str) -> None:
        # a fact about content (these bytes inflate to this tar) that never changes: written once, atomically
        if self.checked_diff_id(digest) == diff_id:
            return
        private_dir(self.verified_dir, parents=True)
        fd, tmp = tempfile.mkstemp(dir=self.verified_dir, prefix=".v-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(diff_id + "\n")
            os.replace(tmp, self.verified_dir / digest[7:])
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._verified[digest] = diff_id

    def _index_with_progress(self, digest: str) -> LayerIndex:
        """Index a stored blob; a large one reports ``indexing`` events, then ``done``, to
        :attr:`progress` (the faces draw them: a bar on a terminal or in a notebook)."""
        size = self.blobs.size(digest)
        report = self.progress
        if report is None or size < INDEX_PROGRESS_MIN:
            return index_blob(self.blobs, digest, f"layer {digest}")

        def progress(offset: int) -> None:
            report(ProgressEvent("layer", digest, min(offset, size), size, Status.INDEXING))
        progress(0)
        idx = index_blob(self.blobs, digest, f"layer {digest}", progress=progress)
        report(ProgressEvent("layer", digest, size, size, Status.DONE))
        return idx

    def save_layer_index(self, index: LayerIndex, digest: str) -> None:
        """Cache a layer index computed from blob ``digest`` (whose content was hashed to its diff_id)."""
        self.ensure()
        write_index(self.layer_index_dir, index)
        self._mark_checked(digest, index.diff_id)
        self._index_cache[index.diff_id] = index

    def image_view(self, image: Image, layer: int | None = None):
        """The union view of an image's layers, built once per process (keyed by the top chain ID).

        ``layer`` (0 at the bottom): the view of the layers up to that one, as dive shows a layer. The last
        :data:`PREFIX_VIEWS` such views are kept (one may hold a hundred thousand paths); raises
        :class:`LayerkitError` naming the image's layers when it has no layer ``layer``."""
        from .union import UnionView

        if layer is not None and layer != len(image.layers) - 1:
            if not 0 <= layer < len(image.layers):
                raise LayerkitError(f"{image.name} has no layer {layer}: its layers are 0 to "
                                    f"{len(image.layers) - 1}")
            key = image.chain_ids[layer]
            view = self._prefix_views.pop(key, None)
            if view is None:
                view = self._views.get(key)  # another image whose top is this layer (a parent)
            if view is None:
                self.index_layers(image.layers)
                view = UnionView([la.index() for la in image.layers[:layer + 1]])
            self._prefix_views[key] = view  # the newest last
            while len(self._prefix_views) > PREFIX_VIEWS:
                del self._prefix_views[next(iter(self._prefix_views))]
            return view
        key = image.chain_ids[-1] if image.diff_ids else "empty"
        view = self._views.get(key)
        if view is None:
            self.index_layers(image.layers)
            view = UnionView([layer.index() for layer in image.layers])
            self._views[key] = view
        return view

    def path_index(self, image: Image):
        """A persistent path index of the image's union view (built on first use; see pathindex)."""
        from .pathindex import PathIndex, build

        key = image.chain_ids[-1][7:] if image.diff_ids else "empty"
        path = self._view_path(key)
        if not path.exists():
            private_dir(path.parent, parents=True)
            build(self.image_view(image), path)
        return PathIndex(path)

    def _view_path(self, key: str) -> Path:
        # v2: paths stored as the bytes of the name (a name that is not UTF-8 included); a v1 file
        # (``KEY.db``, UTF-8 text) is never read again and goes with its image
        return self.meta_dir / "views" / f"{key}.v2.db"

    def blob_for_diff_id(self, diff_id: str) -> str | None:
        """The digest of a stored blob whose uncompressed content has this diff_id (checked first), if any."""
        found = [la.digest for img in self.images() for la in img.layers
                 if la.diff_id == diff_id and self.blobs.has(la.digest)]
        return next((d for d in found if self.checked_diff_id(d) == diff_id), found[0] if found else None)

    def known_layers(self) -> dict[str, tuple[str, str, int]]:
        """diff_id -> (blob digest, media type, blob size) for every layer whose blob the store holds and
        whose content was checked to have that diff_id (a pulled layer not yet indexed is not: its
        config's word alone must not let another image reuse its blob)."""
        out: dict[str, tuple[str, str, int]] = {}
        for img in self.images():
            for layer in img.layers:
                if layer.diff_id not in out and self.checked_diff_id(layer.digest) == layer.diff_id:
                    out[layer.diff_id] = (layer.digest, layer.media_type, layer.compressed_size)
        return out

    def layer_blobs(self) -> dict[str, tuple[str, int]]:
        """blob digest -> (media type, size) for every layer blob the images of the store name."""
        return {la.digest: (la.media_type, la.compressed_size) for img in self.images() for la in img.layers}

    # ---- images -----------------------------------------------------------------------------

    def images(self) -> list[Image]:
        """Every image in the store, newest first; an image with several tags appears once."""
        idx = self.read_index()
        meta = self.read_meta()
        by_manifest: dict[str, Image] = {}
        order: list[str] = []
        for desc in idx["manifests"]:
            mdigest = desc.get("digest", "")
            if not is_digest(mdigest):
                continue
            name = (desc.get("annotations") or {}).get(REF_NAME)
            img = by_manifest.get(mdigest)
            if img is None:
                if not self.blobs.has(mdigest):
                    continue  # an entry whose manifest is gone is not an image
                img = self._read_image(mdigest, name, meta)
                if img is None:
                    continue
                by_manifest[mdigest] = img
                order.append(mdigest)
            if name:
                try:
                    img.tags.append(parse_reference(name))
                except InvalidReference:
                    pass  # a ref.name written by another tool that is not a Docker reference
        imgs = [by_manifest[m] for m in order]
        imgs.sort(key=lambda i: (i.created.timestamp() if i.created else 0), reverse=True)
        return imgs

    def _read_image(self, mdigest: str, name: str | None, meta: dict) -> Image | None:
        """The image whose manifest is blob ``mdigest``, its documents checked for the shapes layerkit
        reads (another tool can write the store's layout); None for an entry that is not an image
        manifest (an image index) or whose config is gone."""
        label = f"manifest {mdigest}" + (f" ({name})" if name else "")
        manifest = load_object(self.blobs.read_bytes(mdigest), label)
        if "config" not in manifest:
            return None
        check_manifest(manifest, label)
        cdigest = manifest["config"]["digest"]
        if not self.blobs.has(cdigest):
            return None
        clabel = f"config {cdigest}" + (f" ({name})" if name else "")
        config = check_config(load_object(self.blobs.read_bytes(cdigest), clabel), clabel)
        n_layers, n_diffs = len(manifest.get("layers", [])), len(config["rootfs"]["diff_ids"])
        if n_layers != n_diffs:
            raise InvalidManifest(f"{label}: lists {n_layers} layers but its config {cdigest} has {n_diffs} "
                                  "diff_ids")
        parent = meta.get(cdigest, {}).get("parent")
        return Image(self, cdigest, mdigest, manifest, config, [], parent if isinstance(parent, str) else None)

    def image(self, name: str) -> Image:
        """Find an image by tag (``busybox``, ``demo:v1``), full or short ID, or ``NAME@DIGEST``.

        Raises :class:`ImageNotFound` naming ``name``.
        """
        imgs = self.images()
        target = name.strip()
        hexpart = target[7:] if target.startswith("sha256:") else target
        if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
            for img in imgs:
                if img.id == "sha256:" + hexpart or img.manifest_digest == "sha256:" + hexpart:
                    return img
            raise ImageNotFound(f"No such image: {name}")
        ref: Reference | None
        try:
            ref = parse_reference(target)
        except InvalidReference as exc:
            if not (1 <= len(hexpart) < 64 and all(c in "0123456789abcdef" for c in hexpart)):
                raise InvalidReference(user_reference_error(name, exc)) from exc
            ref = None
        if ref is not None:
            if ref.digest:
                for img in imgs:
                    if img.manifest_digest == ref.digest or img.id == ref.digest:
                        if any(t.repository == ref.repository for t in img.tags) or not ref.tag:
                            return img
            else:
                wanted = ref.normalized
                for img in imgs:
                    if any(t.normalized == wanted for t in img.tags):
                        return img
        # a short ID prefix, as Docker accepts
        if 1 <= len(hexpart) < 64 and all(c in "0123456789abcdef" for c in hexpart):
            hits = [i for i in imgs if i.id[7:].startswith(hexpart)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ImageNotFound(f"{name}: ambiguous image ID prefix ({len(hits)} images match)")
        raise ImageNotFound(f"No such image: {name}")

    def ancestry(self, image: Image) -> list[Image]:
        """The image and its recorded parents (from commit or build), nearest first."""
        by_id = {i.id: i for i in self.images()}
        out = [image]
        seen = {image.id}
        cur = image.parent
        while cur and cur in by_id and cur not in seen:
            out.append(by_id[cur])
            seen.add(cur)
            cur = by_id[cur].parent
        return out

    def layer_users(self) -> dict[str, list[Image]]:
        """chain_id -> images whose layer stack includes it (how Docker counts sharing)."""
        users: dict[str, list[Image]] = {}
        for img in self.images():
            for cid in img.chain_ids:
                users.setdefault(cid, []).append(img)
        return users

    def diff_id_users(self) -> dict[str, list[Image]]:
        """diff_id -> images that use a layer with this content (how the blob store shares it)."""
        users: dict[str, list[Image]] = {}
        for img in self.images():
            for d in dict.fromkeys(img.diff_ids):
                users.setdefault(d, []).append(img)
        return users

    # ---- writing images -----------------------------------------------------------------------

    def add_image(
        self,
        config_bytes: bytes,
        layers: list[NewLayer],
        tags: list[Reference] = (),
        parent: str | None = None,
        annotations: dict | None = None,
        manifest_bytes: bytes | None = None,
    ) -> tuple[Image, list[Reference]]:
        """Record an image whose layer blobs are already stored; returns it and the tags it took.

        One image of :meth:`add_images`, which says what happens."""
        return self.add_images([NewImage(config_bytes, list(layers), list(tags), parent, annotations,
                                         manifest_bytes)])[0]

    def add_images(self, images: list[NewImage]) -> list[tuple[Image, list[Reference]]]:
        """Record images whose layer blobs are already stored, all in one update; returns each image and
        the tags it took, in order.

        Each config and manifest is written as a verified blob first; index.json is then replaced once,
        under the lock, so no reader ever sees a manifest whose blobs are missing and an interrupted call
        records none of the images. A tag that pointed to another image moves, as ``docker load`` and
        ``docker tag`` do; an image that loses its last tag stays, untagged. Linear in the images, their
        tags and the store's index (each manifest of the store is read once, no config).
        """
        parsed = []
        for im in images:
            try:
                parsed.append(json.loads(im.config_bytes))
            except (ValueError, RecursionError) as exc:
                raise InvalidManifest(f"config: not valid JSON ({exc})") from exc
        with self.locked():
            for digest in {la.digest for im in images for la in im.layers}:
                if not self.blobs.has(digest):
                    raise LayerkitError(f"layer blob {digest} vanished while the image was written; retry")
            idx = self.read_index()
            entries = IndexEntries(idx["manifests"])
            by_id = self._manifests_by_config(entries.digests())  # image ID -> (manifest digest, manifest)
            meta = self.read_meta()
            refs: dict[str, Reference] = {}
            done: list[tuple[str, dict, dict, list[Reference]]] = []
            for im, config in zip(images, parsed, strict=True):
                image_id = sha256_bytes(im.config_bytes)
                known = by_id.get(image_id)
                if known is not None:
                    mdigest, manifest = known
                    mdesc = entries.base(mdigest)
                else:
                    mdesc, manifest = self._put_image_blobs(im, image_id)
                    mdigest = mdesc["digest"]
                    by_id[image_id] = (mdigest, manifest)
                names = [t.normalized for t in im.tags]
                entries.record(mdesc, names)
                refs.update(zip(names, im.tags, strict=True))  # the same strings, not a second copy
                entry = meta.setdefault(image_id, {})
                entry.setdefault("added", time.time())
                if im.parent:
                    entry["parent"] = im.parent
                done.append((image_id, manifest, config, list(im.tags)))
            tags_of = entries.tags()
            idx["manifests"] = entries.result()
            self.blobs.sync()  # the configs and manifests, written without fsync one by one
            self._write_meta(meta)
            self._write_index(idx)
            del idx
        out = []
        for image_id, manifest, config, taken in done:
            mdigest = by_id[image_id][0]
            tags = []
            for name in tags_of.get(mdigest, ()):
                ref = refs.get(name)
                if ref is None:
                    try:
                        ref = parse_reference(name)
                    except InvalidReference:
                        continue  # a ref.name written by another tool that is not a Docker reference
                tags.append(ref)
            out.append((Image(self, image_id, mdigest, manifest, config, tags,
                              meta.get(image_id, {}).get("parent")), taken))
        return out

    def _manifests_by_config(self, mdigests: list[str]) -> dict[str, tuple[str, dict]]:
        """image ID -> (manifest digest, manifest) for the index's manifests (as :meth:`images` finds them)."""
        out: dict[str, tuple[str, dict]] = {}
        for mdigest in mdigests:
            if not is_digest(mdigest) or not self.blobs.has(mdigest):
                continue
            _, manifest = self.read_json_blob(mdigest, "manifest")
            config = manifest.get("config") if isinstance(manifest, dict) else None
            cdigest = config.get("digest") if isinstance(config, dict) else None
            if isinstance(cdigest, str) and is_digest(cdigest) and cdigest not in out and self.blobs.has(cdigest):
                out[cdigest] = (mdigest, manifest)
        return out

    def _put_image_blobs(self, im: NewImage, image_id: str) -> tuple[dict, dict]:
        """Write a new image's config and manifest blobs; (manifest descriptor, manifest)."""
        self.blobs.put_bytes(im.config_bytes, image_id, "config", fsync=False)
        if _keeps(im.manifest_bytes, image_id, im.layers):
            # the source's own manifest names exactly these blobs: keep it, and so its digest
            manifest = json.loads(im.manifest_bytes)
            mtype = manifest.get("mediaType") or OCI_MANIFEST
            mdigest = self.blobs.put_bytes(im.manifest_bytes, label="manifest", fsync=False)
            return {"mediaType": mtype, "digest": mdigest, "size": len(im.manifest_bytes)}, manifest
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(im.config_bytes)},
            "layers": [{"mediaType": la.media_type, "digest": la.digest, "size": la.size} for la in im.layers],
        }
        if im.annotations:
            manifest["annotations"] = im.annotations
        mbytes = json.dumps(manifest, separators=(",", ":")).encode()
        mdigest = self.blobs.put_bytes(mbytes, label="manifest", fsync=False)
        return {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(mbytes)}, manifest

    def _keep_untagged(self, new: list[dict], old: list[dict]) -> list[dict]:
        """An image that loses its last tag to another image stays, untagged (Docker's dangling image)."""
        present = {d.get("digest") for d in new}
        for d in old:
            if d.get("digest") not in present:
                new.append({k: v for k, v in d.items() if k != "annotations"})
                present.add(d.get("digest"))
        return new

    def tag(self, source: str, target: str) -> Reference:
        """Give the image ``source`` names the additional tag ``target``."""
        img = self.image(source)
        try:
            ref = parse_reference(target)
        except InvalidReference as exc:
            raise InvalidReference(user_reference_error(target, exc)) from exc
        if ref.digest:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {target}")
        with self.locked():
            idx = self.read_index()
            mdesc = next(d for d in idx["manifests"] if d.get("digest") == img.manifest_digest)
            base = {k: v for k, v in mdesc.items() if k != "annotations"}
            old = idx["manifests"]
            manifests = [d for d in old if (d.get("annotations") or {}).get(REF_NAME) != ref.normalized]
            manifests = [d for d in manifests if not (d.get("digest") == img.manifest_digest
                                                      and not d.get("annotations"))]
            manifests.append({**base, "annotations": {REF_NAME: ref.normalized}})
            idx["manifests"] = self._keep_untagged(manifests, old)
            self._write_index(idx)
        return ref

    def remove_image(self, name: str, force: bool = False, users: dict[str, list[str]] | None = None
                     ) -> dict[str, list[str]]:
        """``rmi``: untag ``name``; delete the image when no tag and no container needs it.

        ``users`` maps image ID -> names of containers using it (the container layer supplies it).
        Returns ``{"untagged": [...], "deleted": [...]}``. Layer blobs go only when no remaining image
        uses them.
        """
        users = users or {}
        img = self.image(name)
        untagged: list[str] = []
        deleted: list[str] = []
        by_tag = False
        try:
            ref = parse_reference(name)
            by_tag = not ref.digest and any(t.normalized == ref.normalized for t in img.tags)
        except InvalidReference:
            ref = None
        with self.locked():
            idx = self.read_index()
            if by_tag and len(img.tags) > 1:
                idx["manifests"] = [d for d in idx["manifests"]
                                    if (d.get("annotations") or {}).get(REF_NAME) != ref.normalized]
                self._write_index(idx)
                return {"untagged": [ref.familiar if ref.tag else ref.familiar + ":latest"], "deleted": []}
            if not by_tag and len(img.tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                               f"referenced in multiple repositories")
            holders = users.get(img.id, [])
            if holders and not force:
                raise Conflict(f"conflict: unable to remove repository reference \"{name}\" (must force) - "
                               f"container {holders[0]} is using its referenced image {img.short_id}")
            children = [i for i in self.images() if i.parent == img.id and i.id != img.id]
            for t in img.tags:
                untagged.append(_familiar_tagged(t))
            remaining = [d for d in idx["manifests"] if d.get("digest") != img.manifest_digest]
            if holders or children:
                # keep the image untagged: a container or a child image still needs it
                idx["manifests"] = remaining + [{k: v for k, v in d.items() if k != "annotations"}
                                                for d in idx["manifests"]
                                                if d.get("digest") == img.manifest_digest][:1]
                self._write_index(idx)
                return {"untagged": untagged, "deleted": deleted}
            idx["manifests"] = remaining
            self._write_index(idx)
            meta = self.read_meta()
            meta.pop(img.id, None)
            self._write_meta(meta)
            deleted.append(img.id)
            # collect garbage: blobs no remaining image references
            others = self.images()
            still = set()
            for other in others:
                still.add(other.manifest_digest)
                still.add(other.id)
                still.update(la.digest for la in other.layers)
                still.update(other.diff_ids)
            if img.manifest_digest not in still:
                self.blobs.delete(img.manifest_digest)
            if img.id not in still:
                self.blobs.delete(img.id)
            if img.diff_ids and not any(o.chain_ids[-1:] == img.chain_ids[-1:] for o in others):
                key = img.chain_ids[-1][7:]
                self._view_path(key).unlink(missing_ok=True)
                (self.meta_dir / "views" / f"{key}.db").unlink(missing_ok=True)  # by an older layerkit
            for layer in img.layers:
                if layer.digest not in still:
                    self.blobs.delete(layer.digest)
                    (self.verified_dir / layer.digest[7:]).unlink(missing_ok=True)
                    self._verified.pop(layer.digest, None)
                if layer.diff_id not in still:
                    (self.layer_index_dir / (layer.diff_id[7:] + ".idx")).unlink(missing_ok=True)
                    self._index_cache.pop(layer.diff_id, None)
                    deleted.append(layer.diff_id)
            self._prune_extracted(others)
        return {"untagged": untagged, "deleted": deleted}

    # ---- extracted layers ---------------------------------------------------------------------

    @property
    def rootfs_dir(self) -> Path:
        """Where ``run``'s extracted layers live: ``rootfs/HEX`` per layer, named by the hex of its diff_id,
        or of its chain ID when its hardlinks name files of the layers below (see rootfs.py, which fills
        it); ``rootfs/l/`` holds their short links and ``rootfs/init`` the runtime's mount points."""
        return self.meta_dir / "rootfs"

    def _prune_extracted(self, images: list[Image]) -> list[str]:
        """Remove the extracted layers that none of ``images`` (the store's, with the lock held) uses, with
        their short links; returns the names removed. The naming rule is the cache's (a diff_id or chain ID
        in hex), so anything so named that no image uses can go; an extraction under way (``.x-*``) stays."""
        base = self.rootfs_dir
        try:
            names = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            return []
        used = {d[7:] for img in images for d in img.diff_ids} | {c[7:] for img in images for c in img.chain_ids}
        removed = []
        for name in names:
            if name.startswith(".gc-"):  # a removal cut short (the process was killed): finish it
                _rmtree_owned(base / name)
            elif len(name) == 64 and name not in used and all(c in "0123456789abcdef" for c in name):
                # moved aside first, so the name disappears at once and a run extracts anew if it needs it
                trash = base / f".gc-{name[:12]}-{secrets.token_hex(4)}"
                os.replace(base / name, trash)
                _rmtree_owned(trash)
                removed.append(name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for link in os.scandir(base / "l"):
                if link.is_symlink() and not os.path.exists(link.path):
                    os.unlink(link.path)
        return removed


def _rmtree_owned(path: Path) -> None:
    """Remove a tree of the store, also when an image made some of its directories read-only (0555): a
    user other than root needs write permission on a directory to empty it."""
    def retry(func, p, exc_info) -> None:
        if not isinstance(exc_info[1], PermissionError):
            raise exc_info[1]
        os.chmod(os.path.dirname(p), 0o700)
        if func in (os.rmdir, os.unlink) or func is os.remove:
            func(p)
        else:  # scandir / open of a directory without read permission
            os.chmod(p, 0o700)
            shutil.rmtree(p, onerror=retry)

    shutil.rmtree(path, onerror=retry)


def _keeps(manifest_bytes: bytes | None, image_id: str, layers: list[NewLayer]) -> bool:
    """True when a source manifest can be stored as it is: it names this config and these layer blobs."""
    if not manifest_bytes:
        return False
    try:
        m = json.loads(manifest_bytes)
        return (m.get("config", {}).get("digest") == image_id
                and [d.get("digest") for d in m.get("layers", [])] == [la.digest for la in layers])
    except (ValueError, AttributeError):
        return False


def user_reference_error(text: str, exc: Exception) -> str:
    """Docker's wording for a bad reference typed by the user, naming it."""
    return f'"{text}" is not a valid repository/tag: {exc}'


def _familiar_tagged(ref: Reference) -> str:
    """``busybox:latest`` as Docker prints it in ``Untagged:`` lines."""
    s = ref.familiar
    if not ref.tag and not ref.digest:
        s += ":latest"
    return s
