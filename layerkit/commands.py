"""Every verb, implemented once. The CLI and the ``%lk`` magic both call these (through the table of verbs,
:mod:`layerkit.verbs`) and render the results.

Each function takes a :class:`~layerkit.engine.store.Store` (:func:`open_store`) and the verb's arguments
and returns a :class:`~layerkit.results.Table`, :class:`~layerkit.results.Message`,
:class:`~layerkit.results.Document` or :class:`~layerkit.results.Sections`. The notebook's panels, plots and
report read everything else they show here too (``image_info``, ``shared_layers``, ``layer_files``,
``lookup`` ...): the faces never import the engine. ``report`` renders frames and plots, so it is a face's
verb (:func:`layerkit.notebook.report.report`); this module imports no face.

A verb's image argument is resolved in one place, :func:`resolve_image`: a stored image, or a transport reference
(``docker-archive:PATH``, ``oci:DIR:NAME``, ``docker://REF`` ...) read in place without touching the store;
the verbs then ask the image's own source (``img.source``) for union views and file bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from .engine.container import container_counts, find_container, list_containers
from .engine.digests import short
from .engine.humanize import rfc3339
from .engine.image import Image
from .engine.layerindex import Entry
from .engine.progress import Progress
from .engine.reference import Reference, parse_reference
from .engine.store import Store
from .errors import (
    HostPathError,
    ImageNotFound,
    InvalidReference,
    LayerkitError,
    PartialFailure,  # noqa: F401 - defined there, named here too
)
from .results import (
    Column,
    Document,
    Message,
    Sections,
    Stream,
    Table,
    TreeListing,
    ellipsis,
    fmt_ago,
    fmt_id,
    fmt_size,
)

SAVE_FORMATS = ("docker-archive", "oci-archive", "oci")


def open_store(root: str | None = None, progress: Progress | None = None) -> Store:
    """The store at ``root`` (``--store DIR``), else the default one (``$LAYERKIT_HOME``, else the user data
    dir): what the faces pass to every command. Long work on it (load, pull, push, copy, indexing a large
    layer) reports to ``progress``, which the face draws."""
    return Store(root, progress=progress) if root is not None else Store(progress=progress)


# ---- ref --------------------------------------------------------------------------------------

def ref(store: Store | None, text: str) -> Document:
    """Parse and normalise a reference (``layerkit ref busybox``)."""
    try:
        r = parse_reference(text)
    except InvalidReference as exc:
        from .engine.store import user_reference_error

        raise InvalidReference(user_reference_error(text, exc)) from exc
    data = r.to_json()
    lines = [f"{k}: {'' if v is None else v}" for k, v in data.items()]
    return Document(data, "\n".join(lines))


# ---- load / save ----------------------------------------------------------------------------

def load(store: Store, path: str, progress: Progress | None = None) -> Message:
    """Import a docker-archive, OCI archive or OCI layout (``DIR[:TAG]``); ``progress`` (default: the
    store's) receives each layer's events."""
    from .formats.load import load_path

    loaded = load_path(store, path, progress=progress or store.progress)
    lines: list[str] = []
    data: list[dict] = []
    for li in loaded:
        if li.tags:
            for t in li.tags:
                lines.append(f"Loaded image: {t}")
                data.append({"reference": t, "id": li.id})
        else:
            lines.append(f"Loaded image ID: {li.id}")
            data.append({"reference": None, "id": li.id})
    return Message(lines, data)


def _images_with_tags(store: Store, names: list[str]) -> list[tuple[Image, list[Reference]]]:
    """Resolve ``save`` arguments: a tag saves that tag, an ID saves the image untagged (one rule, shared
    with ``save --to-engine``)."""
    from .formats.stored import images_with_tags

    return images_with_tags(store, names)


def save(store: Store, names: list[str], output: str, fmt: str = "docker-archive") -> Message:
    """Export images to a docker-archive, an OCI archive or an OCI layout directory."""
    if fmt not in SAVE_FORMATS:
        raise LayerkitError(f"unknown save format {fmt!r} (use {', '.join(SAVE_FORMATS)})")
    out = output_path(output, directory=fmt == "oci")
    images = _images_with_tags(store, names)
    if fmt == "docker-archive":
        from .formats.docker_archive import save_docker_archive
        save_docker_archive(store, images, out)
    elif fmt == "oci-archive":
        from .formats.oci import save_oci_archive
        save_oci_archive(store, images, out)
    else:
        from .formats.oci import save_oci_layout
        save_oci_layout(store, images, out)
    return Message([], {"output": str(out), "format": fmt, "images": [i.id for i, _ in images]})


def output_path(output: str, directory: bool = False) -> Path:
    """Check an output the user named (``save -o``, ``report -o``) before anything is read or written, so
    that a failure leaves nothing behind: its directory must exist, and a file must not be a directory
    (``directory``: an OCI layout, a directory that may exist)."""
    out = Path(output)
    parent = out.absolute().parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise HostPathError(f"{output}: the directory {parent} {what}")
    if not directory and out.is_dir():
        raise HostPathError(f"{output}: is a directory; name the file to write")
    return out


# ---- the image a verb names: in the store, or in place ------------------------------------------

def resolve_image(store: Store, name: str) -> Image:
    """The one place a verb's image argument is resolved: an image of the store (a tag, an ID, ``NAME@DIGEST``),
    or a transport reference (``docker-archive:PATH[:REF]``, ``oci:DIR[:NAME]``, ``oci-archive:PATH[:NAME]``,
    ``docker://REF``, ``docker-daemon:REF``) analysed in place: read where it lies, nothing written to the
    store, layer indexes kept in memory (:mod:`layerkit.formats.transports.inplace`; diff_ids unchecked).
    A name that looks like a transport reference but is a tag the store holds stays the store's image; an ID
    the store does not hold may be that of an image read in place earlier in this process.

    The image's ``source`` answers what the verbs ask besides (``image_view``, ``blobs``,
    ``diff_id_users``): the store for a stored image, the in-place indexes otherwise."""
    from .formats.transports.inplace import find_opened, is_transport_reference, open_in_place

    if is_transport_reference(name):
        stored = _stored(store, name)
        return stored if stored is not None else open_in_place(name, store)
    try:
        return store.image(name)
    except ImageNotFound:
        # the ID of an image this process read in place (the notebook's panels name images by ID)
        opened = find_opened(name)
        if opened is None:
            raise
        return opened


def _stored(store: Store, name: str) -> Image | None:
    """The store's image of that name when ``name`` is also a valid tag (``oci:v1`` is the image ``oci``,
    tag ``v1``) and the store holds it; else None (also when the store cannot be read: the user named a
    transport, which needs no store)."""
    try:
        parse_reference(name)
    except InvalidReference:
        return None
    try:
        return store.image(name)
    except (LayerkitError, OSError):
        return None


def _view(img: Image, layer: int | None = None):
    """The union view of an image (``layer``: of the layers up to that one), from its own source."""
    return img.source.image_view(img, layer)


# ---- listing -------------------------------------------------------------------------------

def _sharing(store: Store) -> tuple[list[Image], dict[str, list[Image]]]:
    images = store.images()
    users: dict[str, list[Image]] = {}
    for img in images:
        for cid in img.chain_ids:
            users.setdefault(cid, []).append(img)
    return images, users


def _image_sizes(img: Image, users: dict[str, list[Image]]) -> tuple[int, int, int]:
    """(size, shared_size, unique_size) as ``docker system df -v`` defines them (sharing by chain ID)."""
    size = shared = 0
    img.source.index_layers(img.layers)  # a pulled image's layers are indexed on first use, several at once
    for layer in img.layers:
        size += layer.size
        if len(users.get(layer.chain_id, [])) > 1:
            shared += layer.size
    return size, shared, size - shared


IMAGE_KEYS = ["repository", "tag", "id", "digest", "created", "size", "shared_size", "unique_size",
              "containers", "layers"]


def images(store: Store, containers_by_image: dict[str, int] | None = None, source: str | None = None) -> Table:
    """``images [SOURCE]``: one row per tag (``<none>`` for an untagged image), newest first. ``source``: the
    images of a transport reference instead of the store's (``images docker-archive:all.tar``: every image of
    the archive, read in place; sharing counted among them; no containers)."""
    if source is not None:
        from .formats.transports.inplace import all_in_place

        with all_in_place(source, store) as found:
            found.sort(key=lambda i: (i.created.timestamp() if i.created else 0), reverse=True)  # as the store's
            return _images_table(found, {})
    return _images_table(store.images(), containers_by_image or store_container_counts(store))


def _images_table(imgs: list[Image], containers_by_image: dict[str, int]) -> Table:
    users: dict[str, list[Image]] = {}
    for img in imgs:
        for cid in img.chain_ids:
            users.setdefault(cid, []).append(img)
    rows = []
    for img in imgs:
        size, shared, unique = _image_sizes(img, users)
        base = {"id": img.id, "digest": img.manifest_digest, "created": rfc3339(img.created), "size": size,
                "shared_size": shared, "unique_size": unique,
                "containers": containers_by_image.get(img.id, 0), "layers": len(img.diff_ids)}
        if img.tags:
            for t in img.tags:
                rows.append({"repository": t.familiar_name, "tag": t.tag or "<none>", **base})
        else:
            rows.append({"repository": "<none>", "tag": "<none>", **base})
    cols = [Column("repository", "REPOSITORY"), Column("tag", "TAG"), Column("id", "IMAGE ID", fmt_id),
            Column("created", "CREATED", fmt_ago), Column("size", "SIZE", fmt_size)]
    return Table(cols, rows, IMAGE_KEYS)


def store_container_counts(store: Store) -> dict[str, int]:
    """How many containers use each image."""
    return container_counts(store)


def history(store: Store, name: str, no_trunc: bool = False) -> Table:
    """``history IMAGE`` as ``docker history`` prints it, newest first."""
    img = resolve_image(store, name)
    rows = []
    for h in img.history():
        # docker history --format json prints "ID":"<missing>" for a row no local image names
        rows.append({"id": h.id or "<missing>", "created": rfc3339(h.created), "created_by": h.created_by,
                     "size": h.size, "comment": h.comment, "empty_layer": h.empty_layer, "diff_id": h.diff_id})
    idfmt = (lambda v: v or "<missing>") if no_trunc else fmt_id
    cols = [Column("id", "IMAGE", idfmt), Column("created", "CREATED", fmt_ago),
            Column("created_by", "CREATED BY", (lambda v: str(v or "")) if no_trunc else ellipsis(45)),
            Column("size", "SIZE", fmt_size), Column("comment", "COMMENT")]
    return Table(cols, rows, ["id", "created", "created_by", "size", "comment", "empty_layer", "diff_id"])


def _layer_created_by(img: Image) -> list[str]:
    out = [h.get("created_by", "") for h in img.history_entries if not h.get("empty_layer")]
    return out + [""] * (len(img.diff_ids) - len(out))


LAYER_KEYS = ["index", "diff_id", "digest", "media_type", "size", "tar_size", "compressed_size", "files",
              "whiteouts", "created_by", "shared_by"]


def layers(store: Store, name: str) -> Table:
    """``layers IMAGE``: one row per layer, bottom first, with the three sizes and who shares it."""
    img = resolve_image(store, name)
    users = img.source.diff_id_users()
    created = _layer_created_by(img)
    rows = []
    for layer, cb in zip(img.layers, created, strict=False):
        others = [o.name for o in users.get(layer.diff_id, []) if o.id != img.id]
        rows.append({"index": layer.index_in_image, "diff_id": layer.diff_id, "digest": layer.digest,
                     "media_type": layer.media_type, "size": layer.size, "tar_size": layer.tar_size,
                     "compressed_size": layer.compressed_size, "files": layer.files,
                     "whiteouts": _marker_count(layer.index()), "created_by": cb, "shared_by": others})
    cols = [Column("index", "#"), Column("diff_id", "DIFF ID", short), Column("size", "SIZE", fmt_size),
            Column("tar_size", "TAR SIZE", fmt_size), Column("compressed_size", "COMPRESSED", fmt_size),
            Column("files", "FILES"), Column("whiteouts", "WHITEOUTS"),
            Column("created_by", "CREATED BY", ellipsis(45)),
            Column("shared_by", "SHARED BY", lambda v: ", ".join(v) if v else "-")]
    return Table(cols, rows, LAYER_KEYS)


def inspect_image(store: Store, name: str) -> Document:
    """``inspect IMAGE``: the record Docker shows, plus the manifest layerkit stores."""
    img = resolve_image(store, name)
    cfg = img.config
    data = {
        "Id": img.id,
        "RepoTags": [t.familiar if t.tag else t.familiar + ":latest" for t in img.tags],
        "RepoDigests": [f"{t.familiar_name}@{img.manifest_digest}" for t in img.tags],
        "Parent": img.parent or "",
        "Comment": next((h.get("comment", "") for h in reversed(img.history_entries)), ""),
        "Created": cfg.get("created"),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config", {}),
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": img.size,
        "RootFS": {"Type": cfg.get("rootfs", {}).get("type", "layers"), "Layers": img.diff_ids},
        "History": img.history_entries,
        "ManifestDigest": img.manifest_digest,
        "Manifest": img.manifest,
    }
    if cfg.get("variant"):
        data["Variant"] = cfg["variant"]
    return Document(data)


def inspect(store: Store, name: str) -> Document:
    """``inspect IMAGE|CONTAINER``: containers first (as Docker resolves names), then images."""
    c = find_container(store, name, missing_ok=True)
    if c is not None:
        return Document(c.inspect())
    return inspect_image(store, name)


# ---- tags ----------------------------------------------------------------------------------

def tag(store: Store, source: str, target: str) -> Message:
    """``tag SRC DST``."""
    r = store.tag(source, target)
    return Message([], {"tagged": r.familiar})


def rmi(store: Store, names: list[str], force: bool = False) -> Message:
    """``rmi IMAGE...``: untag, and delete what nothing needs any more (with the untagged parents only the
    deleted image needed, as ``docker rmi`` prunes them)."""
    from .engine.prune import remove_image

    lines: list[str] = []
    data = {"untagged": [], "deleted": []}
    errors = []
    for name in names:
        try:
            res = remove_image(store, name, force=force)
        except LayerkitError as exc:
            errors.append(str(exc))
            continue
        for u in res["untagged"]:
            lines.append(f"Untagged: {u}")
        for d in res["deleted"]:
            lines.append(f"Deleted: {d}")
        data["untagged"] += res["untagged"]
        data["deleted"] += res["deleted"]
    if errors:
        raise PartialFailure(errors, Message(lines, data))
    return Message(lines, data)


# ---- df --------------------------------------------------------------------------------------

def df(store: Store, verbose: bool = False) -> Sections:
    """``df [-v]``: space used by images, layers and containers, shared and unique (``docker system df``)."""
    counts = store_container_counts(store)
    imgs, users = _sharing(store)
    image_rows = []
    for img in imgs:
        size, shared, unique = _image_sizes(img, users)
        t = img.tags[0] if img.tags else None
        image_rows.append({"repository": t.familiar_name if t else "<none>", "tag": (t.tag or "<none>") if t else
                           "<none>", "id": img.id, "created": rfc3339(img.created), "size": size,
                           "shared_size": shared, "unique_size": unique, "containers": counts.get(img.id, 0)})
    layer_rows = []
    seen = set()
    by_diff = store.diff_id_users()
    for img in imgs:
        for layer in img.layers:
            if layer.diff_id in seen:
                continue
            seen.add(layer.diff_id)
            layer_rows.append({"diff_id": layer.diff_id, "digest": layer.digest, "size": layer.size,
                               "compressed_size": layer.compressed_size,
                               "images": len(by_diff.get(layer.diff_id, []))})
    containers = list_containers(store)
    container_rows = [_container_row(c) for c in containers]
    running = [c.state == "running" for c in containers]
    total_images = sum(r["size"] for r in layer_rows)
    active = [r for r in image_rows if r["containers"]]
    active_layers = {la.diff_id for img in imgs if counts.get(img.id) for la in img.layers}
    reclaimable = sum(r["size"] for r in layer_rows if r["diff_id"] not in active_layers)
    csize = sum(r.get("size", 0) for r in container_rows)
    summary = [
        {"type": "Images", "total": len(image_rows), "active": len(active), "size": total_images,
         "reclaimable": reclaimable},
        {"type": "Containers", "total": len(container_rows), "active": sum(running), "size": csize,
         "reclaimable": sum(r["size"] for r, up in zip(container_rows, running, strict=True) if not up)},
    ]

    def pct(r: dict) -> str:
        return f"{fmt_size(r['reclaimable'])} ({100 * r['reclaimable'] // r['size'] if r['size'] else 0}%)"

    tables = [Table([Column("type", "TYPE"), Column("total", "TOTAL"), Column("active", "ACTIVE"),
                     Column("size", "SIZE", fmt_size), Column("reclaimable", "RECLAIMABLE")],
                    [{**r, "reclaimable": pct(r)} for r in summary])]
    if verbose:
        tables = [
            Table([Column("repository", "REPOSITORY"), Column("tag", "TAG"), Column("id", "IMAGE ID", fmt_id),
                   Column("created", "CREATED", fmt_ago), Column("size", "SIZE", fmt_size),
                   Column("shared_size", "SHARED SIZE", fmt_size),
                   Column("unique_size", "UNIQUE SIZE", fmt_size), Column("containers", "CONTAINERS")],
                  image_rows, title="Images space usage:"),
            Table([Column("diff_id", "LAYER", short), Column("size", "SIZE", fmt_size),
                   Column("compressed_size", "STORED", fmt_size), Column("images", "IMAGES")],
                  layer_rows, title="Layers space usage:"),
            Table([Column("id", "CONTAINER ID", fmt_id), Column("image", "IMAGE"),
                   Column("size", "SIZE", fmt_size), Column("status", "STATUS"), Column("name", "NAMES")],
                  container_rows, title="Containers space usage:"),
        ]
    data = {"summary": summary, "images": image_rows, "layers": layer_rows, "containers": container_rows}
    return Sections(tables, data)


# ---- prune ------------------------------------------------------------------------------------

PRUNE_WARNINGS = {
    "image": "WARNING! This will remove all dangling images.",
    "image-all": "WARNING! This will remove all images without at least one container associated to them.",
    "container": "WARNING! This will remove all stopped containers.",
    "system": "WARNING! This will remove:\n  - all stopped containers\n  - all dangling images",
    "system-all": "WARNING! This will remove:\n  - all stopped containers\n  - all images without at least one "
                  "container associated to them",
}


def prune_warning(what: str, all: bool = False) -> str:
    """The warning Docker prints before asking to confirm a prune (``what``: image, container, system)."""
    return PRUNE_WARNINGS[what + ("-all" if all and what != "container" else "")]


def _prune_message(res, containers: bool, images: bool) -> Message:
    """Docker's prune output: ``Deleted Containers:``, ``Deleted Images:`` (untagged/deleted lines), and
    ``Total reclaimed space: 1.23MB``."""
    lines: list[str] = []
    if containers and res.containers:
        lines += ["Deleted Containers:", *res.containers, ""]
    if images and (res.untagged or res.deleted):
        lines += ["Deleted Images:", *(f"untagged: {u}" for u in res.untagged),
                  *(f"deleted: {d}" for d in res.deleted), ""]
    lines.append(f"Total reclaimed space: {fmt_size(res.reclaimed)}")
    data = {"space_reclaimed": res.reclaimed}
    if containers:
        data["containers_deleted"] = res.containers
    if images:
        data["images_deleted"] = [{"untagged": u} for u in res.untagged] + [{"deleted": d} for d in res.deleted]
    return Message(lines, data)


def image_prune(store: Store, all: bool = False) -> Message:
    """``image prune [-a]``: remove dangling images (``-a``: every image no container uses)."""
    from .engine.prune import prune_images

    return _prune_message(prune_images(store, all), containers=False, images=True)


def container_prune(store: Store) -> Message:
    """``container prune``: remove every stopped container."""
    from .engine.prune import prune_containers

    return _prune_message(prune_containers(store), containers=True, images=False)


def system_prune(store: Store, all: bool = False) -> Message:
    """``system prune [-a]``: stopped containers, then dangling images (``-a``: every unused image)."""
    from .engine.prune import prune_containers, prune_images

    res = prune_containers(store)
    return _prune_message(res.add(prune_images(store, all)), containers=True, images=True)


def image_short(img: Image) -> str:
    """``busybox:latest`` or the short ID."""
    return img.name if img.tags else short(img.id)


# ---- the union view: ls and cat ---------------------------------------------------------------

def _target(store: Store, name: str):
    """A container (by name or ID) or else an image, as Docker resolves names for inspect."""
    c = find_container(store, name, missing_ok=True)
    if c is not None:
        return c, c.view(), c.top
    img = resolve_image(store, name)
    return img, _view(img), None


LS_KEYS = ["path", "type", "size", "mode", "uid", "gid", "mtime", "link", "layer"]


def _marker_count(index) -> int:
    """How many whiteouts and opaque markers a layer holds (entries of the layer that delete)."""
    types = index.columns.types
    return types.count("w") + types.count("o")


def _markers(view, top: int | None, under: str, recursive: bool) -> list[dict]:
    """The whiteout and opaque-marker entries of every layer of ``view`` in directory ``under`` (or below
    it), as ``ls --whiteouts`` and ``files --whiteouts`` list them: the marker's own tar path, type
    ``whiteout`` or ``opaque``, the layer that holds it."""
    import posixpath

    from .engine.layerindex import marker_path

    under = posixpath.normpath(under)
    prefix = under.rstrip("/") + "/"
    rows = []
    for i, li in enumerate(view.layers):
        for e in li.entries:
            if e.type not in ("whiteout", "opaque"):
                continue
            p = marker_path(e.path, e.type)
            if not (p.startswith(prefix) if recursive else posixpath.dirname(p) == under):
                continue
            rows.append({"path": p, "type": e.type, "size": 0, "mode": 0, "uid": 0, "gid": 0, "link": None,
                         "layer_index": i, "layer": None if i == top else view.diff_ids[i],
                         "mtime": _rfc3339_utc(e.mtime), "_mode": "----------"})
    return rows


def _rfc3339_utc(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ls(store: Store, target: str, path: str = "/", recursive: bool = False, whiteouts: bool = False) -> Table:
    """``ls TARGET [PATH] [-R] [--whiteouts]``: entries of the union view of an image or a container;
    ``whiteouts`` adds each layer's whiteout and opaque markers in the directory (they are entries of the
    layers, not of the view)."""
    from .engine.tree import entry_size
    from .engine.union import mode_string

    obj, view, top = _target(store, target)
    ue = view.lookup(path) if path not in ("", "/") else None
    if ue is not None and ue.entry.type != "dir":
        items = [ue]
    else:
        items = list(view.walk(path)) if recursive else view.listdir(path)
    rows = []
    for u in items:
        e = u.entry
        layer = None if (top is not None and u.layer == top) or u.layer < 0 else view.diff_ids[u.layer]
        # sizes as lstat shows them in a mounted root filesystem: a symlink's is its target's length, a
        # hardlink's its file's (the tar's size field says 0 for both)
        rows.append({"path": e.path, "type": e.type, "size": entry_size(u, view), "mode": e.mode, "uid": e.uid,
                     "gid": e.gid,
                     "mtime": _rfc3339_utc(e.mtime), "link": e.link or None, "layer": layer,
                     "_mode": mode_string(e)})
    if whiteouts and (ue is None or ue.entry.type == "dir"):
        rows += _markers(view, top, view.resolve(path) if path not in ("", "/") else "/", recursive)
        rows.sort(key=lambda r: r["path"])
    cols = [Column("_mode", "MODE"), Column("uid", "UID"), Column("gid", "GID"), Column("size", "SIZE", fmt_size),
            Column("mtime", "MODIFIED", lambda v: str(v).replace("T", " ").rstrip("Z")),
            Column("layer", "LAYER", lambda v: short(v) if v else "writable"),
            Column("path", "PATH"), Column("link", "LINK", lambda v: f"-> {v}" if v else "")]
    return Table(cols, rows, LS_KEYS)


def _layer_indexes(store: Store, target: str) -> tuple[list, list[str | None]]:
    """The layer indexes of an image, or of a container (its image's layers and then its writable layer),
    bottom first, with their diff_ids (None for the writable layer)."""
    c = find_container(store, target, missing_ok=True)
    if c is not None:
        img = c.image
        store.index_layers(img.layers)
        return ([la.index() for la in img.layers] + [c.writable_index()],
                [la.diff_id for la in img.layers] + [None])
    img = resolve_image(store, target)
    img.source.index_layers(img.layers)
    return [la.index() for la in img.layers], [la.diff_id for la in img.layers]


def tree(store: Store, target: str, path: str = "/", layer: int | None = None, changes: bool = False,
         aggregate: bool = False, max_depth: int | None = None) -> TreeListing:
    """``tree TARGET [PATH] [--layer N] [--changes] [--aggregate] [--max-depth D]``: dive's layer tree.

    ``layer`` counts from 0 at the bottom (default: the top layer; for a container, its writable layer);
    the marks say what that layer changed, or with ``aggregate`` what every layer above the base changed."""
    from .engine.tree import layer_tree, only_changes
    from .engine.union import mode_string

    indexes, names = _layer_indexes(store, target)
    if not indexes:
        raise LayerkitError(f"{target} has no layers")
    n = len(indexes) - 1 if layer is None else layer
    if not 0 <= n < len(indexes):
        raise LayerkitError(f"{target} has no layer {n}: its layers are 0 to {len(indexes) - 1}")
    rows = layer_tree(indexes, n, aggregate=aggregate, path=path)
    if changes:
        rows = only_changes(rows)
    if max_depth is not None:
        rows = [r for r in rows if r.depth < max_depth]
    out = []
    for r in rows:
        e = Entry(r.path, r.type, r.size, r.mode, r.uid, r.gid, 0, r.link, -1)
        out.append({"path": r.path, "depth": r.depth, "type": r.type, "size": r.size, "dir_size": r.dir_size,
                    "change": r.change, "layer": names[r.layer], "layer_index": r.layer, "mode": r.mode,
                    "uid": r.uid, "gid": r.gid, "link": r.link or None, "_mode": mode_string(e)})
    what = "Aggregated layer contents" if aggregate else "Current layer contents"
    label = "writable layer" if names[n] is None else f"layer {n} ({short(names[n])})"
    return TreeListing(out, title=f"[{what}: {label} of {target}]")


def cat(store: Store, target: str, path: str, layer: int | None = None) -> Stream:
    """``cat TARGET PATH``: a file's bytes from the union view (symlinks followed inside the image).

    ``layer`` (0 at the bottom): read the union view of the layers up to that one instead of the whole
    image, as dive's tree of that layer shows it (for a container, its writable layer is the one above
    the image's)."""
    from .engine.content import iter_entry_bytes

    c = find_container(store, target, missing_ok=True)
    if c is not None and (layer is None or layer >= len(c.image.layers)):
        f = c.open(path)
        return Stream(iter(lambda: f.read(1 << 20), b""))
    img = c.image if c is not None else resolve_image(store, target)
    _check_layer(img, target, layer)
    view = _view(img, layer)
    ue = view.lookup(path)
    ue = view.data_entry(ue)  # a hardlink reads the file it was linked to, even if that path changed later
    if ue.entry.type == "dir":
        raise LayerkitError(f"{path}: is a directory")
    if ue.entry.type != "file":
        raise LayerkitError(f"{path}: not a regular file ({ue.entry.type})")
    layer = img.layers[ue.layer]
    return Stream(iter_entry_bytes(img.source.blobs, layer.digest, ue.entry))


def _check_layer(img: Image, target: str, layer: int | None) -> None:
    """Refuse a layer number the image does not have, naming the target as the user typed it."""
    if layer is not None and layer != len(img.layers) - 1 and not 0 <= layer < len(img.layers):
        raise LayerkitError(f"{target} has no layer {layer}: its layers are 0 to {len(img.layers) - 1}")


VERSIONS_KEYS = ["layer_index", "layer", "entry", "tar_path", "type", "size", "mode", "union"]


def versions(store: Store, target: str, path: str) -> Table:
    """``versions TARGET PATH``: what each layer's tar holds for ``PATH``, bottom first, and which of them
    the union view shows (lookup goes from the top layer down and stops at the first entry or whiteout).

    Per row: ``entry`` is the path's own entry type (``file``, ``dir``, ...), ``whiteout`` (a ``.wh.NAME``
    marker deleting it from the layers below), ``whiteout of DIR`` (an ancestor deleted) or ``opaque DIR``
    (an ancestor's ``.wh..wh..opq`` hiding the layers below); ``tar_path`` the member's name in the tar;
    ``union`` is ``shown`` (lookup stops at this entry), ``deleted`` (lookup stops at this whiteout: the
    path is absent) or ``hidden`` (below the row the lookup stopped at). A container's writable layer is
    the top row, ``layer`` None."""
    import posixpath

    from .engine.layerindex import marker_path

    p = posixpath.normpath("/" + path.strip().lstrip("/"))
    if p == "/":
        raise LayerkitError("versions: name a path below /")
    indexes, names = _layer_indexes(store, target)
    ancestors = []
    a = posixpath.dirname(p)
    while a != "/":
        ancestors.append(a)
        a = posixpath.dirname(a)
    rows: list[dict] = []
    for i, li in enumerate(indexes):
        cols = li.columns
        pos = cols.position()
        k = pos.get(p)
        if k is not None and cols.types[k] not in "wo":
            e = cols.entry(k)
            rows.append({"layer_index": i, "layer": names[i], "entry": e.type, "tar_path": p, "type": e.type,
                         "size": e.size, "mode": e.mode})
            continue
        found = None
        wh = marker_path(p, "whiteout")
        if wh in pos:
            found = ("whiteout", wh)
        else:
            for anc in ancestors:
                if marker_path(anc, "whiteout") in pos:
                    found = (f"whiteout of {anc}", marker_path(anc, "whiteout"))
                    break
                if marker_path(anc, "opaque") in pos:
                    found = (f"opaque {anc}", marker_path(anc, "opaque"))
                    break
        if found is not None:
            rows.append({"layer_index": i, "layer": names[i], "entry": found[0], "tar_path": found[1],
                         "type": None, "size": None, "mode": None})
    stopped = False
    for r in reversed(rows):  # the lookup, from the top layer down
        if stopped:
            r["union"] = "hidden"
        else:
            r["union"] = "deleted" if r["type"] is None else "shown"
            stopped = True
    cols_ = [Column("layer_index", "LAYER"), Column("layer", "DIFF ID", lambda v: short(v) if v else "writable"),
             Column("entry", "ENTRY"), Column("size", "SIZE", fmt_size),
             Column("union", "UNION VIEW"), Column("tar_path", "TAR PATH")]
    return Table(cols_, rows, VERSIONS_KEYS, title=f"{p} in the layers of {target} (bottom first)")


# ---- containers ---------------------------------------------------------------------------------

PS_KEYS = ["id", "name", "image", "status", "created", "size", "command"]


def create(store: Store, image: str, command: list[str] | None = None, name: str | None = None) -> Message:
    """``create [--name NAME] IMAGE [CMD...]``: prints the new container's ID."""
    from .engine.container import create_container

    c = create_container(store, image, command, name)
    return Message([c.id], {"id": c.id, "name": c.name})


def run(store: Store, image: str, command: list[str] | None = None, name: str | None = None,
        remove: bool = False, interactive: bool = False, stdout=None, stderr=None, stdin=None) -> Message:
    """``run``: create a container and run its command in it; the result carries the exit status."""
    from .engine.container import create_container, remove_container
    from .engine.runtime import execute

    c = create_container(store, image, command, name)
    try:
        code = execute(c, None, interactive=interactive, stdin=stdin, stdout=stdout, stderr=stderr)
    finally:
        if remove:
            remove_container(store, c.id, force=True)
    return Message([], {"id": c.id, "name": c.name, "exit_code": code}, exit_code=code)


def start(store: Store, name: str, interactive: bool = False, stdout=None, stderr=None, stdin=None) -> Message:
    """``start CONTAINER``: run the container's command again (attached, as ``docker start -a``)."""
    from .engine.runtime import execute

    c = find_container(store, name)
    code = execute(c, None, interactive=interactive, stdin=stdin, stdout=stdout, stderr=stderr)
    return Message([], {"id": c.id, "exit_code": code}, exit_code=code)


def exec_(store: Store, name: str, command: list[str], interactive: bool = False, stdout=None, stderr=None,
          stdin=None) -> Message:
    """``exec CONTAINER CMD...``: run another process in the container's filesystem."""
    from .engine.runtime import execute

    c = find_container(store, name)
    code = execute(c, command, interactive=interactive, stdin=stdin, stdout=stdout, stderr=stderr)
    return Message([], {"id": c.id, "exit_code": code}, exit_code=code)


def _container_row(c) -> dict:
    return {"id": c.id, "name": c.name, "image": c.image_name, "status": c.status, "created": c.created,
            "size": c.writable_index().size, "command": " ".join(c.command)}


def ps(store: Store, all: bool = False) -> Table:
    """``ps [-a]``: containers, newest first (only running ones without ``-a``)."""
    rows = [_container_row(c) for c in list_containers(store) if all or c.state == "running"]
    cols = [Column("id", "CONTAINER ID", fmt_id), Column("image", "IMAGE"),
            Column("command", "COMMAND", lambda v: '"' + ellipsis(20)(v) + '"'),
            Column("created", "CREATED", fmt_ago), Column("status", "STATUS"), Column("size", "SIZE", fmt_size),
            Column("name", "NAMES")]
    return Table(cols, rows, PS_KEYS)


def rm(store: Store, names: list[str], force: bool = False) -> Message:
    """``rm CONTAINER...``: remove containers and their writable layers."""
    from .engine.container import remove_container
    from .engine.runtime import kill

    lines, errors = [], []
    for n in names:
        try:
            c = find_container(store, n)
            if force and c.state == "running":
                kill(c)  # as docker rm -f: stop its processes first, so nothing runs on a removed layer
            remove_container(store, c.id, force=force)
            lines.append(n)
        except LayerkitError as exc:
            errors.append(str(exc))
    if errors:
        raise PartialFailure(errors, Message(lines, {"removed": lines}))
    return Message(lines, {"removed": lines})


def diff(store: Store, name: str) -> Table:
    """``diff CONTAINER``: A/C/D lines as ``docker diff``, with the size of each change."""
    c = find_container(store, name)
    rows = c.diff()
    return Table([Column("kind", "KIND"), Column("path", "PATH")], rows, ["kind", "path", "size"],
                 header=False, sep=" ")


def commit(store: Store, name: str, repo: str | None = None, message: str = "", author: str = "",
           changes: list[str] | None = None) -> Message:
    """``commit [-m] [-a] [-c]... CONTAINER [REPO[:TAG]]``: prints the new image ID."""
    from .engine.commit import commit as do_commit

    c = find_container(store, name)
    img = do_commit(c, repo, message=message, author=author, changes=changes)
    return Message([img.id], {"id": img.id})


def build(store: Store, context: str, dockerfile: str | None = None, tags: list[str] = (),
          build_args: dict[str, str] | None = None, target: str | None = None, no_cache: bool = False,
          output: Callable[[str], None] | None = None, timestamp: int | None = None, squash: bool = False,
          history_format: str = "docker") -> Message:
    """``build [-t TAG]... [-f FILE] [--build-arg K=V]... [--target STAGE] [--no-cache] [--squash]
    [--format docker|buildkit] CONTEXT``: the classic builder (``--squash``: the base's layers plus one;
    ``--format buildkit``: BuildKit's history and progress output). ``output(text)`` receives what
    ``docker build`` prints (steps, cache hits, RUN output) as it comes; without it the result's one line
    is the image ID (``-q``). The data: ``id``, ``tags`` and ``steps`` (``number instruction line cached
    seconds size image_id stage`` each). ``timestamp`` (or, when it is None, ``$SOURCE_DATE_EPOCH``) makes
    the build reproducible: created times fixed, file mtimes clamped, the same image ID from the same
    inputs."""
    import os
    from dataclasses import asdict

    from .engine.build.builder import build as do_build

    if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH"):
        text = os.environ["SOURCE_DATE_EPOCH"]
        if not text.isdigit():
            raise LayerkitError(f"SOURCE_DATE_EPOCH={text!r}: expected seconds since the epoch")
        timestamp = int(text)
    if timestamp is not None and not 0 <= timestamp < 1 << 33:
        raise LayerkitError(f"--timestamp {timestamp}: expected seconds since the epoch")
    res = do_build(store, context, dockerfile, list(tags), build_args, target, no_cache, output, timestamp,
                   squash=squash, history_format=history_format)
    data = {"id": res.image_id, "tags": res.tags, "steps": [asdict(s) for s in res.steps]}
    return Message([] if output is not None else [res.image_id], data)


def cp(store: Store, src: str, dst: str) -> Message:
    """``cp SRC DST``: copy between the host and ``CONTAINER:PATH`` (either way)."""
    import os

    def split(arg: str):
        if ":" in arg and not arg.startswith(("/", ".")):
            name, _, path = arg.partition(":")
            c = find_container(store, name, missing_ok=True)
            if c is not None:
                return c, path
        return None, arg

    sc, spath = split(src)
    dc, dpath = split(dst)
    if (sc is None) == (dc is None):
        raise LayerkitError("copying between containers or between host paths is not supported: "
                            "name one side as CONTAINER:PATH")
    if sc is not None:
        view = sc.view()
        ue = view.lookup(spath)
        out = _host_destination(dpath, ue.entry.path, ue.entry.type == "dir")
        _check_host_names(view, ue, out)  # refused before anything is written, so a failed cp changes nothing
        _copy_out(sc, view, ue, out)
        return Message([])
    if not os.path.lexists(spath):
        raise LayerkitError(f"{spath}: no such file or directory")
    _check_copyable(spath)  # refuse before anything is written, so a failed cp changes nothing
    view = dc.view()
    target = dpath
    try:
        existing = view.lookup(dpath)
        if existing.entry.type == "dir":
            target = dpath.rstrip("/") + "/" + os.path.basename(os.path.abspath(spath))
    except LayerkitError as exc:
        if dpath.endswith(("/", "/.")) and not os.path.isdir(spath):  # docker cp: "no such directory"
            raise LayerkitError(f"{dc.name}:{dpath}: no such directory") from exc
    _copy_in(dc, spath, target)
    return Message([])


def _host_destination(dst: str, src_path: str, src_is_dir: bool) -> str:
    """Where ``cp CONTAINER:SRC DST`` writes on the host, by ``docker cp``'s rules: into DST when it is a
    directory; over DST when it is a file (not with a directory); else DST is created, and its parent
    directory must exist (nothing is created on the way). A symlink at DST is followed, as Docker does."""
    import os

    path = dst
    for _ in range(10):  # docker cp follows a symlink at the destination, at most this many times
        if not os.path.islink(path.rstrip("/") or "/"):
            break
        target = os.readlink(path.rstrip("/"))
        path = os.path.join(os.path.dirname(path.rstrip("/")), target) + ("/" if path.endswith("/") else "")
    else:
        raise HostPathError(f"{dst}: too many levels of symbolic links")
    asserts_dir = path.endswith(("/", "/.")) or path == "."
    if os.path.isdir(path):
        return os.path.join(path, os.path.basename(src_path.rstrip("/")) or "root")
    if os.path.lexists(path.rstrip("/") or "/") and not asserts_dir:
        if src_is_dir:
            raise HostPathError(f"{dst}: cannot copy a directory onto a file")
        return path
    parent = os.path.dirname(os.path.abspath(path.rstrip("/")))
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.lexists(parent) else "does not exist"
        raise HostPathError(f"{dst}: the destination's directory {parent} {what}")
    if asserts_dir and not src_is_dir:
        raise HostPathError(f"{dst}: no such directory")
    return path.rstrip("/")


def _check_host_names(view, ue, out: str) -> None:
    """Refuse a copy out of a container whose names the host cannot hold (over NAME_MAX bytes, usually
    255, or a path over PATH_MAX): a layer's tar can carry such names, the host's file system cannot."""
    import os

    base = os.path.dirname(os.path.abspath(out))
    name_max = os.pathconf(base, "PC_NAME_MAX")
    path_max = os.pathconf(base, "PC_PATH_MAX")
    todo = [(ue, os.path.abspath(out))]
    while todo:
        u, host = todo.pop()
        name = os.fsencode(os.path.basename(host))
        if len(name) > name_max:
            raise HostPathError(f"cannot copy {u.entry.path} out of the container: its name is {len(name)} bytes, "
                                f"the host's file system allows {name_max}")
        if len(os.fsencode(host)) >= path_max:
            raise HostPathError(f"cannot copy {u.entry.path} out of the container: {len(os.fsencode(host))} "
                                f"bytes of host path, the host allows {path_max - 1}")
        if u.entry.type == "dir":
            todo += [(child, os.path.join(host, child.entry.path.rsplit("/", 1)[-1]))
                     for child in view.listdir(u.entry.path)]


def _copy_out(c, view, ue, out: str) -> None:
    """Write a container's entry (a directory with everything below it) at host path ``out``. An existing
    host directory is written into; anything else in a directory's place is refused, a host symlink is
    never followed below the destination."""
    import os
    import stat as st_
    import tempfile

    todo = [(ue, out)]
    while todo:
        u, host = todo.pop()
        e = u.entry
        if e.type == "dir":
            try:
                os.mkdir(host)
            except FileExistsError as exc:
                if not st_.S_ISDIR(os.lstat(host).st_mode):
                    raise HostPathError(f"{host}: exists and is not a directory; cannot copy {e.path} there") \
                        from exc
            todo += [(child, os.path.join(host, child.entry.path.rsplit("/", 1)[-1]))
                     for child in view.listdir(e.path)]
        elif e.type == "symlink":
            if os.path.lexists(host):
                os.unlink(host)
            os.symlink(e.link, host)
        elif e.type in ("file", "hardlink"):
            # a new file with a random name beside the destination, renamed over it when complete
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(host) or ".", prefix=".lk-cp-")
            try:
                with os.fdopen(fd, "wb") as f, c.open(e.path) as src:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
                os.chmod(tmp, e.mode)
                os.replace(tmp, host)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def _check_copyable(src: str) -> None:
    """Raise if ``src`` (or anything below it) is a kind of file ``cp`` cannot put in a container."""
    import os
    import stat as st_

    for root, dirs, files in os.walk(src) if os.path.isdir(src) and not os.path.islink(src) else [("", [], [src])]:
        for name in dirs + files:
            p = os.path.join(root, name) if root else name
            mode = os.lstat(p).st_mode
            if not (st_.S_ISDIR(mode) or st_.S_ISREG(mode) or st_.S_ISLNK(mode)):
                raise LayerkitError(f"{p}: cannot copy a special file into a container")


def _copy_in(c, src: str, target: str) -> None:
    import os
    import stat as st_

    st = os.lstat(src)
    if st_.S_ISDIR(st.st_mode):
        c.mkdir(target, st_.S_IMODE(st.st_mode), parents=True)
        for name in sorted(os.listdir(src)):
            _copy_in(c, os.path.join(src, name), target.rstrip("/") + "/" + name)
    elif st_.S_ISLNK(st.st_mode):
        c.symlink(os.readlink(src), target)
    elif st_.S_ISREG(st.st_mode):
        with open(src, "rb") as f:  # streamed, never read whole
            c.write(target, f, st_.S_IMODE(st.st_mode))
    else:
        raise LayerkitError(f"{src}: cannot copy a special file")


# ---- analysis -----------------------------------------------------------------------------------

FILES_KEYS = ["path", "type", "size", "mode", "uid", "gid", "link", "layer_index", "layer"]


def files(store: Store, name: str, whiteouts: bool = False, layer: int | None = None) -> Table:
    """``files IMAGE [--whiteouts]``: every path of the union view with the layer that provides it;
    ``whiteouts`` adds every layer's whiteout and opaque markers. ``layer`` (0 at the bottom): of the view of
    the layers up to that one (the explorer panel's view of a layer)."""
    from .engine.analysis import files as union_files

    img = resolve_image(store, name)
    _check_layer(img, name, layer)
    rows = union_files(img.source, img, layer)
    if whiteouts:
        rows += _markers(_view(img, layer), None, "/", True)
        rows.sort(key=lambda r: r["path"])
    cols = [Column("layer_index", "LAYER"), Column("type", "TYPE"), Column("size", "SIZE", fmt_size),
            Column("path", "PATH"), Column("link", "LINK", lambda v: f"-> {v}" if v else "")]
    return Table(cols, rows, FILES_KEYS)


def compare(store: Store, a: str, b: str) -> Sections:
    """``compare IMAGE IMAGE``: layer by layer (shared prefix, divergence) and file by file."""
    from .engine.analysis import compare as compare_images

    res = compare_images(store, resolve_image(store, a), resolve_image(store, b))
    layer_t = Table([Column("index", "#"), Column("shared", "SHARED", lambda v: "yes" if v else "no"),
                     Column("diff_id_a", f"LAYER IN {a}", lambda v: short(v) if v else "-"),
                     Column("diff_id_b", f"LAYER IN {b}", lambda v: short(v) if v else "-"),
                     Column("size_a", "SIZE A", fmt_size), Column("size_b", "SIZE B", fmt_size)],
                    res["layers"], title=f"Layers: {res['shared_prefix']} shared at the bottom" +
                    (f", diverging at layer {res['diverges_at']}" if res["diverges_at"] is not None else ""))
    file_t = Table([Column("kind", "KIND"), Column("path", "PATH"), Column("size_a", "SIZE A", fmt_size),
                    Column("size_b", "SIZE B", fmt_size)], res["files"], title=f"Files: {len(res['files'])} differ")
    return Sections([layer_t, file_t], res)


# ---- what the notebook's panels, plots and report read besides the verbs ---------------------------

def image_names(store: Store) -> Table:
    """Every image once, newest first: ``id`` and ``tags`` (familiar references), for a picker."""
    rows = [{"id": img.id, "tags": [t.familiar for t in img.tags]} for img in store.images()]
    return Table([Column("id", "IMAGE ID", fmt_id), Column("tags", "TAGS", lambda v: ", ".join(v) or "<none>")],
                 rows)


def image_info(store: Store, name: str, size: bool = True) -> Document:
    """One image as a panel or a report introduces it: ``id``, ``name`` (its first tag, else the short ID),
    ``tags``, ``created``, ``size`` (Docker's; None without ``size``, which saves reading the layer
    indexes), ``layers`` (how many), ``diff_ids`` and ``chain_ids`` bottom first."""
    img = resolve_image(store, name)
    return Document({"id": img.id, "name": img.name, "tags": [t.familiar for t in img.tags],
                     "created": rfc3339(img.created), "size": img.size if size else None,
                     "layers": len(img.diff_ids), "diff_ids": img.diff_ids, "chain_ids": list(img.chain_ids)})


def is_container(store: Store, name: str) -> bool:
    """Whether ``name`` names a container (by name, ID or unique ID prefix): names resolve to containers
    first, as Docker resolves them."""
    return find_container(store, name, missing_ok=True) is not None


def container(store: Store, name: str) -> Document:
    """One container, found by name, ID or unique ID prefix: ``id name image status created command`` (as
    ``ps`` lists it, without the size, which walks its writable layer)."""
    c = find_container(store, name)
    return Document({"id": c.id, "name": c.name, "image": c.image_name, "status": c.status, "created": c.created,
                     "command": " ".join(c.command)})


SHARED_KEYS = ["image", "image_id", "index", "diff_id", "chain_id", "size", "compressed_size", "created_by",
               "shared_by", "shared_with"]


def shared_layers(store: Store, names: list[str]) -> Table:
    """One row per (image, layer) of the named images: sizes, and how many and which of them share the layer
    (by chain ID, as Docker counts sharing); an image named twice counts once."""
    from .engine.analysis import shared_layers as rows_of

    rows = rows_of([resolve_image(store, n) for n in names])
    return Table([Column("image", "IMAGE"), Column("index", "#"), Column("diff_id", "DIFF ID", short),
                  Column("size", "SIZE", fmt_size), Column("shared_by", "SHARED BY")], rows, SHARED_KEYS)


LAYER_FILES_KEYS = ["kind", "path", "type", "size", "below_size", "below_layer"]


def layer_files(store: Store, name: str, index: int) -> Table:
    """What layer ``index`` of an image adds, modifies and deletes relative to the layers below, by path."""
    from .engine.analysis import layer_files as rows_of

    img = resolve_image(store, name)
    rows = rows_of(img.source, img, index)
    return Table([Column("kind", "KIND"), Column("path", "PATH"), Column("size", "SIZE", fmt_size)], rows,
                 LAYER_FILES_KEYS)


def lookup(store: Store, name: str, path: str, layer: int | None = None) -> Document:
    """The entry at ``path`` in an image's union view (``layer``: of the layers up to that one), the last
    component not followed: ``path type size mode uid gid link layer_index``, ``entries`` (a directory's
    count) and ``data_size`` (the size of the file a hardlink names; None when it cannot be read)."""
    img = resolve_image(store, name)
    _check_layer(img, name, layer)
    view = _view(img, layer)
    ue = view.lookup(path, follow=False)
    e = ue.entry
    data_size = None
    if e.type in ("file", "hardlink"):
        try:
            data_size = view.data_entry(ue).entry.size
        except LayerkitError:
            pass
    return Document({"path": e.path, "type": e.type, "size": e.size, "mode": e.mode, "uid": e.uid, "gid": e.gid,
                     "link": e.link or None, "layer_index": ue.layer,
                     "entries": len(view.listdir(path)) if e.type == "dir" else None, "data_size": data_size})


# ---- registries ---------------------------------------------------------------------------------

def pull(store: Store, ref: str, platform: str | None = None, insecure: bool = False,
         verify: bool = False, progress: Progress | None = None) -> Message:
    """``pull REF``: fetch an image over the OCI distribution API; layers the store holds are not fetched.
    ``verify``: check every layer's diff_id (and index it) now rather than on first use. ``progress``
    (default: the store's) receives each layer's events."""
    from .formats.registry import pull as do_pull

    res = do_pull(store, ref, platform=platform, insecure=insecure, progress=progress or store.progress,
                  verify=verify)
    return Message(res.lines(), res.to_json())


def push(store: Store, image: str, ref: str | None = None, insecure: bool = False,
         progress: Progress | None = None) -> Message:
    """``push IMAGE [REF]``: send an image; blobs the registry has are skipped or mounted, never resent.
    ``progress`` (default: the store's) receives each layer's events."""
    from .formats.registry import push as do_push

    res = do_push(store, image, ref, insecure=insecure, progress=progress or store.progress)
    return Message(res.lines(), res.to_json())


def login(store: Store | None, registry: str, username: str, password: str, insecure: bool = False) -> Message:
    """``login REGISTRY``: check the credentials against the registry, then save them (mode 0600)."""
    from .formats.registry import login as do_login

    do_login(registry, username, password, insecure=insecure)
    return Message(["Login Succeeded"], {"registry": registry, "username": username})


def logout(store: Store | None, registry: str) -> Message:
    """``logout REGISTRY``: forget saved credentials."""
    from .formats.registry import logout as do_logout

    removed = do_logout(registry)
    line = f"Removing login credentials for {registry}" if removed else f"Not logged in to {registry}"
    return Message([line], {"registry": registry, "removed": removed})


def build_step_changes(store: Store, steps: list[dict]) -> list[dict]:
    """``build``'s steps (its result's ``steps``) with the files each step's layer ``added``, ``modified``
    and ``deleted`` (None for a step that made no layer), as ``diff`` counts them."""
    out = []
    layers_before: dict[int, int] = {}
    for s in steps:
        n = len(store.image(s["image_id"]).diff_ids) if s.get("image_id") else None
        prev = layers_before.get(s["stage"])
        if n is not None:
            layers_before[s["stage"]] = n
        counts = {"added": None, "modified": None, "deleted": None}
        if prev is not None and n is not None and n > prev:
            kinds = [r["kind"] for r in layer_files(store, s["image_id"], n - 1).to_json()]
            counts = {k: kinds.count(k) for k in counts}
        out.append({**s, **counts})
    return out

# ---- wasted space (dive's analysis) ------------------------------------------------------------

def _indexes_of(store: Store, name: str) -> tuple[Image, list]:
    img = resolve_image(store, name)
    img.source.index_layers(img.layers)  # several layers at once (a no-op for the store's checked layers)
    return img, [layer.index() for layer in img.layers]


def _efficiency_of(store: Store, name: str):
    from .engine.efficiency import analyze

    return analyze(_indexes_of(store, name)[1])


def efficiency(store: Store, name: str) -> Document:
    """``efficiency IMAGE``: dive's efficiency score, wasted bytes and inefficient files."""
    from .engine.humanize import human_size

    res = _efficiency_of(store, name)
    uwp = res.user_wasted_percent
    lines = [f"efficiency: {res.efficiency * 100:.4f} %",
             f"wastedBytes: {res.wasted_bytes} bytes ({human_size(res.wasted_bytes)})",
             f"userWastedPercent: {uwp * 100:.4f} %" if uwp == uwp and abs(uwp) != float("inf")
             else f"userWastedPercent: {'NaN' if uwp != uwp else '+Inf'} % (no bytes above the base layer)",
             f"reclaimable: {res.reclaimable_bytes} bytes ({human_size(res.reclaimable_bytes)})"]
    if res.inefficient_files:
        t = Table([Column("count", "COUNT"), Column("total_bytes", "WASTED SPACE", fmt_size),
                   Column("path", "FILE PATH")], [i.to_json() for i in res.inefficient_files])
        lines += ["", "Inefficient files:", t.render()]
    return Document(res.to_json(), "\n".join(lines))


def check(store: Store, name: str, lowest_efficiency: float | None = 0.9,
          highest_wasted_bytes: int | None = 20_000_000, highest_user_wasted_percent: float | None = 0.1,
          dockerfile: str | None = None) -> Message:
    """``check IMAGE [--dockerfile FILE]``: dive's CI rules, a line per rule; the result's exit status is 1
    when one fails. With ``dockerfile`` (the file IMAGE was built from), the lines that add bytes a later
    line deletes or overwrites, or leave package caches in the image, with the bytes each costs."""
    from .engine.build.dockerfile import read_dockerfile
    from .engine.efficiency import analyze, check_rules

    df = read_dockerfile(dockerfile, dockerfile) if dockerfile is not None else None  # fails before any work
    img, indexes = _indexes_of(store, name)
    res = analyze(indexes)
    try:
        rules = check_rules(res, lowest_efficiency, highest_wasted_bytes, highest_user_wasted_percent)
    except ValueError as exc:
        raise LayerkitError(str(exc)) from exc
    failed = [r for r in rules if not r.passed and not r.skipped]
    lines = [r.line() for r in rules]
    lines.append(f"Result:{'FAIL' if failed else 'PASS'} [Total:{len(rules)}] [Passed:"
                 f"{sum(1 for r in rules if r.passed and not r.skipped)}] [Failed:{len(failed)}] "
                 f"[Warn:0] [Skipped:{sum(1 for r in rules if r.skipped)}]")
    data = {"passed": not failed, "rules": [{"name": r.name, "status": r.status, "message": r.message}
                                            for r in rules], "efficiency": res.to_json()}
    if df is not None:
        from .engine.build.waste import dockerfile_waste

        waste = dockerfile_waste(df, img.history_entries, indexes, dockerfile)
        data["dockerfile"] = {"path": dockerfile, "lines": [w.to_json() for w in waste]}
        lines += ["", *_waste_lines(dockerfile, waste)]
    return Message(lines, data, exit_code=1 if failed else 0)


def _waste_lines(path: str, waste: list) -> list[str]:
    from .engine.humanize import human_size

    if not waste:
        return [f"{path}: no line adds bytes that a later line deletes or overwrites, and no package cache "
                "is left in the image"]
    total = sum(w.bytes for w in waste)
    rows = [{"line": "-" if w.line is None else w.line, "instruction": w.instruction, "bytes": w.bytes,
             "advice": w.advice} for w in waste]
    t = Table([Column("line", "LINE"), Column("instruction", "INSTRUCTION", ellipsis(40)),
               Column("bytes", "WASTED", fmt_size), Column("advice", "WHY")], rows)
    return [f"{path}: {human_size(total)} stored in layers but not in the image, by line:", t.render()]


# ---- engines and transports ---------------------------------------------------------------------

def copy(store: Store, src: str, dst: str, insecure: bool = False, engine: str | None = None,
         progress: Progress | None = None) -> Message:
    """``copy SRC DST`` between transports named as skopeo names them (and layerkit's store); ``progress``
    (default: the store's) receives the events of the load, pull or push."""
    from .formats.copy import copy as do_copy

    res = do_copy(store, src, dst, insecure=insecure, endpoint=engine, progress=progress or store.progress)
    return Message(list(res.get("lines") or []), {k: v for k, v in res.items() if k != "lines"})


def load_from_engine(store: Store, name: str, engine: str | None = None, progress: Progress | None = None
                     ) -> Message:
    """``load --from-engine NAME``: a streamed ``docker save`` from a running Docker or Podman; ``progress``
    (default: the store's) receives the archive's and the layers' events."""
    from .formats.engine_api import load_from_engine as do_load

    loaded = do_load(store, name, endpoint=engine, progress=progress or store.progress)
    lines = [f"Loaded image: {t}" for li in loaded for t in li.tags] or \
        [f"Loaded image ID: {li.id}" for li in loaded]
    return Message(lines, [{"reference": t, "id": li.id} for li in loaded for t in (li.tags or [None])])


def save_to_engine(store: Store, names: list[str], engine: str | None = None) -> Message:
    """``save IMAGE... --to-engine``: ``docker load`` into a running Docker or Podman."""
    from .formats.engine_api import save_to_engine as do_save

    ids = do_save(store, names, endpoint=engine)
    return Message([f"Loaded image ID: {i}" for i in ids], {"ids": ids})


# ---- many images: scan and fleet (layerkit.fleet: pyarrow, DuckDB, Dask, loaded for these verbs only) -----

def _fleet(module: str):
    """``layerkit.fleet.MODULE``, or :class:`FleetUnavailable` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(f"layerkit.fleet.{module}")
    except ImportError as exc:
        from .errors import FleetUnavailable

        raise FleetUnavailable(f"scan and fleet need pyarrow, duckdb and distributed ({exc.name} is missing): "
                               "pip install 'layerkit[fleet]'") from exc


def _ratio(v) -> str:
    return "" if v is None else f"{v:.2f}"


def scan(store: Store, sources: list[str], output: str, scheduler: str | None = None, workers: int | None = None,
         contents: bool = False, processes: bool = True) -> Message:
    """``scan SOURCE... -o DATASET``: index every image of the sources into a Parquet dataset, one Dask task
    per unique layer (:mod:`layerkit.fleet.scan`). Sources that cannot be read and layers that fail are rows
    of the dataset's ``failures`` table; the scan goes on."""
    from .engine.humanize import human_size

    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    res = _fleet("scan").scan(sources, output, store=store, scheduler=scheduler, workers=workers,
                              contents=contents, processes=processes, progress=store.progress)
    rate = res.compressed_bytes / res.seconds if res.seconds > 0 else 0
    lines = [f"scanned {len(sources)} source(s) into {res.dataset} in {res.seconds:.1f}s "
             f"({res.workers} worker(s))",
             f"images added: {res.images} (already present: {res.skipped_images})",
             f"layers indexed: {res.layers}, {res.files} entries, {human_size(res.compressed_bytes)} "
             f"({human_size(int(rate))}/s) (shared or already present: {res.skipped_layers})"]
    if res.dashboard:
        lines.append(f"Dask dashboard: {res.dashboard}")
    lines.append(f"failures: {res.failures}")
    lines += [f"  {f['source']}: {f['reason']}" for f in res.failure_rows[:20]]
    data = {k: getattr(res, k) for k in ("dataset", "images", "layers", "files", "failures", "skipped_images",
                                         "skipped_layers", "compressed_bytes", "seconds", "workers", "dashboard")}
    data["failure_rows"] = [{k: v for k, v in f.items() if k != "at"} for f in res.failure_rows]
    return Message(lines, data)


def fleet_summary(dataset: str) -> Table:
    """``fleet summary DATASET``: one row of counts, bytes counted four ways and the dedup ratios."""
    cols, rows = _fleet("queries").summary(dataset)
    shown = [Column("images", "IMAGES"), Column("repositories", "REPOSITORIES"), Column("layers", "LAYERS"),
             Column("files", "FILES"), Column("pushed_bytes", "PUSHED", fmt_size),
             Column("image_bytes", "IMAGES SUMMED", fmt_size), Column("layer_bytes", "UNIQUE LAYERS", fmt_size),
             Column("unique_content_bytes", "UNIQUE CONTENT", fmt_size),
             Column("layer_dedup_ratio", "LAYER DEDUP", _ratio), Column("file_dedup_ratio", "FILE DEDUP", _ratio),
             Column("failures", "FAILURES")]
    return Table(shown, rows, cols)


def fleet_duplicates(dataset: str, limit: int = 20) -> Table:
    """``fleet duplicates DATASET``: contents in more than one layer (needs ``scan --contents``)."""
    cols, rows = _fleet("queries").duplicates(dataset, limit)
    shown = [Column("sha256", "CONTENT", lambda v: v[:12]), Column("size", "SIZE", fmt_size),
             Column("copies", "COPIES"), Column("layers", "LAYERS"), Column("images", "IMAGES"),
             Column("reclaimable_bytes", "RECLAIMABLE", fmt_size), Column("path", "PATH")]
    return Table(shown, rows, cols)


def fleet_waste(dataset: str) -> Table:
    """``fleet waste DATASET``: dive's efficiency, wasted and reclaimable bytes per image, in SQL; equal to
    ``efficiency IMAGE`` on each image."""
    cols, rows = _fleet("queries").waste(dataset)
    shown = [Column("image_id", "IMAGE ID", fmt_id), Column("reference", "REFERENCE"), Column("layers", "LAYERS"),
             Column("efficiency", "EFFICIENCY", lambda v: f"{v * 100:.4f} %"),
             Column("wasted_bytes", "WASTED", fmt_size), Column("reclaimable_bytes", "RECLAIMABLE", fmt_size),
             Column("inefficient_files", "INEFFICIENT FILES")]
    return Table(shown, rows, cols)


def fleet_largest(dataset: str, limit: int = 20) -> Sections:
    """``fleet largest DATASET``: the largest layers and the largest files."""
    (lcols, lrows), (fcols, frows) = _fleet("queries").largest(dataset, limit)
    layers_t = Table([Column("diff_id", "LAYER", fmt_id), Column("size", "SIZE", fmt_size),
                      Column("compressed_size", "COMPRESSED", fmt_size), Column("entries", "ENTRIES"),
                      Column("images", "IMAGES")], lrows, lcols, title="Largest layers")
    files_t = Table([Column("size", "SIZE", fmt_size), Column("diff_id", "LAYER", fmt_id), Column("path", "PATH")],
                    frows, fcols, title="Largest files")
    return Sections([layers_t, files_t], {"layers": layers_t.to_json(), "files": files_t.to_json()})


def fleet_bases(dataset: str) -> Table:
    """``fleet bases DATASET``: the layer-chain prefix tree (chains of bottom layers that images share), the
    bytes each shared chain saves, and which chains are bases."""
    cols, rows = _fleet("queries").bases(dataset)
    shown = [Column("depth", "DEPTH"), Column("top_layer", "TOP LAYER", fmt_id), Column("images", "IMAGES"),
             Column("size", "SIZE", fmt_size), Column("saved_bytes", "SAVED", fmt_size),
             Column("base", "BASE", lambda v: "base" if v else ""), Column("example", "EXAMPLE")]
    return Table(shown, rows, cols)


def fleet_sql(dataset: str, query: str) -> Table:
    """``fleet sql QUERY DATASET``: any SQL over the views ``images``, ``image_layers``, ``layers``,
    ``files``, ``contents`` and ``failures``."""
    from .results import fmt_text

    cols, rows = _fleet("queries").sql(dataset, query)
    return Table([Column(c, c.upper(), fmt_text) for c in cols], rows, cols)
