"""``layerkit scan``: many images into the fleet dataset, one Dask task per unique layer.

The client plans (:func:`plan`): it opens each SOURCE (a transport reference through
:func:`~layerkit.formats.transports.registry.open_source` with ``every=True``, or layerkit's store), lists
its images (configs and manifests only: small documents), writes nothing yet, and deduplicates layers by
diff_id against each other and against the layers already in the dataset. Each remaining layer becomes a
:class:`LayerTask` naming *where* the layer is (:class:`Locator`: a file, or a source and the image and
layer position in it), never its bytes.

Workers run :func:`index_layer`: they open the layer themselves from its locator, stream it once through
:class:`~layerkit.engine.layer.LayerStream` (the blob hashed, inflated with the engine's bounded inflater,
the tar hashed), read its members with the engine's one tar reader (:class:`~layerkit.engine.tarstream.
TarReader`, each member classified by :func:`~layerkit.engine.layer.classify` exactly as the store's index
classifies it), hash each regular file's content with ``--contents``, and write their ``files`` parts
(batches of 100,000 rows: a worker's memory holds one batch). A layer whose blob or tar does not match its
digest, is not a tar, or cannot be opened becomes a ``failures`` row, and its parts are removed.

The client submits the tasks largest first (a long layer started last would leave the other workers idle at
the end), collects what each returns and commits: ``layers`` rows (in batches, as they come), then
``images``, ``image_layers`` and ``failures``. Dask runs again a task whose worker died; its parts have the
same names and bytes (:mod:`.dataset`), so nothing is counted twice.

Registries (``docker://HOST[:PORT]`` catalogs, ``docker://HOST/REPO`` tags, ``docker://HOST/REPO:TAG``) are
listed by :mod:`.registry` (manifests and configs only); their layers are ``registry`` locators (registry,
repository, blob digest) that a worker streams straight from the registry. A blob several repositories
hold is indexed once, the other repositories' copies kept as alternates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO

from ..engine.digests import is_digest
from ..engine.layer import LayerStream, classify, layer_workers, tar_error
from ..engine.layerindex import TYPE_NAMES
from ..engine.progress import Progress, ProgressEvent, Status
from ..engine.reference import Reference
from ..engine.shapes import check_config, parse_config
from ..engine.store import Store
from ..engine.tarstream import TarReader
from ..errors import LayerkitError, NotFound
from . import dataset as ds

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.imagesource import SourceImage

STORE_PREFIXES = ("store:", "layerkit:")
# Tar parsing holds the GIL, but a layer task also waits: on the registry's first byte (10-40 ms a blob from
# a local docker-registry) and on the fsync of its Parquet part (about 14 ms). A second thread per worker
# process fills those waits: the benchmark registry (1,092 layers) took 69 s with 2 processes of 1 thread
# and 37-52 s with 2 of 2 on the shared 2 cores (4 threads: no better, peak RSS about 210 MB a worker).
THREADS_PER_WORKER = 2
COMMIT_EVERY = 500  # layers rows committed per batch: a client that dies loses at most this much work


@dataclass(frozen=True)
class Locator:
    """Where a worker finds a layer blob: ``kind`` ``file`` (``path``: the blob itself, layerkit's store),
    ``source`` (``path``: a transport reference; ``image``, ``layer``: positions in its listing) or
    ``registry`` (``path``: the registry, ``repository``, ``digest``: the blob)."""

    kind: str
    path: str
    image: int = 0
    layer: int = 0
    repository: str = ""
    digest: str = ""


@dataclass(frozen=True)
class LayerTask:
    """One unique layer to index: what it must hash to and where it is; ``alternates``: other copies of the
    same diff_id (another source, another blob), tried in turn when one cannot be read or does not match."""

    diff_id: str
    digest: str | None
    size: int | None
    label: str
    locator: Locator
    source: str
    alternates: tuple[LayerTask, ...] = ()


MAX_ALTERNATES = 3


@dataclass
class Plan:
    """What a scan will do: the rows the client commits and the layers the workers index."""

    images: list[dict] = field(default_factory=list)
    image_layers: list[dict] = field(default_factory=list)
    tasks: list[LayerTask] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    skipped_images: int = 0
    skipped_layers: int = 0  # layer references whose diff_id was present or planned already


@dataclass
class ScanResult:
    """What a scan added to the dataset."""

    dataset: str
    images: int
    layers: int
    files: int
    failures: int
    skipped_images: int
    skipped_layers: int
    compressed_bytes: int
    seconds: float
    workers: int
    failure_rows: list[dict] = field(default_factory=list)
    dashboard: str | None = None  # the Dask dashboard of the cluster, when it serves one


# ---- planning (the client) ---------------------------------------------------------------------------

def _failure(source: str, stage: str, exc: BaseException, image_id: str | None = None,
             diff_id: str | None = None, digest: str | None = None) -> dict:
    return {"source": source, "stage": stage, "image_id": image_id, "diff_id": diff_id, "digest": digest,
            "error": type(exc).__name__, "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            "at": datetime.now(UTC)}


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    from ..engine.humanize import parse_time

    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        return None


def _js(v: object) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _image_rows(image_id: str, config: dict, names: list[Reference], manifest_digest: str | None, source: str,
                compressed: int | None) -> list[dict]:
    c = config.get("config") if isinstance(config.get("config"), dict) else {}
    base = {"image_id": image_id, "manifest_digest": manifest_digest, "source": source,
            "os": config.get("os"), "architecture": config.get("architecture"), "variant": config.get("variant"),
            "created": _time(config.get("created")), "author": config.get("author") or None,
            "entrypoint": _js(c.get("Entrypoint")), "cmd": _js(c.get("Cmd")), "env": _js(c.get("Env")),
            "labels": _js(c.get("Labels")), "layer_count": len(config["rootfs"]["diff_ids"]),
            "compressed_size": compressed}
    if not names:
        return [{**base, "reference": None, "repository": None, "tag": None}]
    return [{**base, "reference": r.normalized, "repository": r.repository,
             "tag": r.tag or (None if r.digest else "latest")} for r in names]


def _image_layer_rows(image_id: str, config: dict, layers: list[tuple[str | None, int | None, str | None]]
                      ) -> list[dict]:
    """``layers``: (digest, compressed size, media type) per diff_id, in order; history entries give the
    empty layers and each layer's created_by."""
    diff_ids = config["rootfs"]["diff_ids"]
    history = config.get("history") if isinstance(config.get("history"), list) else []
    rows: list[dict] = []
    pos = 0
    for hi, h in enumerate(history):
        h = h if isinstance(h, dict) else {}
        empty = bool(h.get("empty_layer"))
        row = {"image_id": image_id, "history_index": hi, "empty_layer": empty,
               "created_by": h.get("created_by") if isinstance(h.get("created_by"), str) else None,
               "created": _time(h.get("created")), "position": None, "diff_id": None, "digest": None,
               "media_type": None, "compressed_size": None}
        if not empty and pos < len(diff_ids):
            digest, size, mt = layers[pos]
            row.update(position=pos, diff_id=diff_ids[pos], digest=digest, compressed_size=size, media_type=mt)
            pos += 1
        rows.append(row)
    for p in range(pos, len(diff_ids)):  # layers the history does not describe
        digest, size, mt = layers[p]
        rows.append({"image_id": image_id, "history_index": None, "empty_layer": False, "created_by": None,
                     "created": None, "position": p, "diff_id": diff_ids[p], "digest": digest,
                     "compressed_size": size, "media_type": mt})
    return rows


class _Planner:
    def __init__(self, dataset: str) -> None:
        self.plan = Plan()
        self.layers_present = ds.present_layers(dataset)
        self.images_present = ds.present_images(dataset)
        self.image_ids = {i for i, _ in self.images_present}
        self.planned: dict[str, list[LayerTask]] = {}  # diff_id -> its copies, the first found first

    def add(self, source: str, image_id: str, config: dict, names: list[Reference], manifest_digest: str | None,
            layers: list[tuple[str | None, int | None, str | None]], locators: list[Locator],
            labels: list[str]) -> None:
        p = self.plan
        compressed = sum(s for _, s, _ in layers) if all(s is not None for _, s, _ in layers) else None
        rows = [r for r in _image_rows(image_id, config, names, manifest_digest, source, compressed)
                if (image_id, r["reference"]) not in self.images_present]
        p.skipped_images += not rows
        for r in rows:
            self.images_present.add((image_id, r["reference"]))
        p.images += rows
        if image_id not in self.image_ids:
            self.image_ids.add(image_id)
            p.image_layers += _image_layer_rows(image_id, config, layers)
        for diff_id, (digest, size, _), loc, label in zip(config["rootfs"]["diff_ids"], layers, locators, labels,
                                                         strict=True):
            if diff_id in self.layers_present:
                p.skipped_layers += 1
                continue
            copies = self.planned.setdefault(diff_id, [])
            if copies:
                p.skipped_layers += 1
            if len(copies) <= MAX_ALTERNATES and all(c.locator != loc for c in copies):
                copies.append(LayerTask(diff_id, digest, size, label, loc, source))

    def tasks(self) -> list[LayerTask]:
        """One task per diff_id, its other copies as alternates, largest first."""
        out = [replace(c[0], alternates=tuple(c[1:])) for c in self.planned.values()]
        out.sort(key=lambda t: -(t.size or 0))
        return out


def _is_store(source: str) -> bool:
    if source.startswith(STORE_PREFIXES):
        return True
    from ..formats.transports.registry import is_transport_reference

    return not is_transport_reference(source)


def _plan_store(planner: _Planner, source: str, store: Store) -> None:
    name = source.split(":", 1)[1] if source.startswith(STORE_PREFIXES) else source
    images = [store.image(name)] if name else store.images()
    for img in images:
        config_bytes = store.blobs.read_bytes(img.id)
        config = check_config(parse_config(config_bytes, f"config {img.id}"), f"config {img.id}")
        layers = img.layers
        planner.add(source, img.id, config, list(img.tags), img.manifest_digest,
                    [(ly.digest, ly.compressed_size, ly.media_type) for ly in layers],
                    [Locator("file", str(store.blobs.path(ly.digest))) for ly in layers],
                    [f"{source}: layer {ly.digest}" for ly in layers])


def _plan_registry(planner: _Planner, source: str) -> None:
    """Every image a ``docker://`` source names (:mod:`.registry`); what cannot be read is a failure row."""
    from . import registry

    for found in registry.images(source):
        if found.error is not None:
            if found.stage == "source":
                raise found.error
            planner.plan.failures.append(_failure(found.label, found.stage, found.error))
            continue
        m, ref = found.manifest, found.ref
        image_id = "sha256:" + hashlib.sha256(found.config_bytes).hexdigest()
        try:
            config = check_config(parse_config(found.config_bytes, found.label), found.label)
            diff_ids = config["rootfs"]["diff_ids"]
            if len(diff_ids) != len(m.layers):
                raise LayerkitError(f"{found.label}: lists {len(m.layers)} layers but its config has "
                                    f"{len(diff_ids)} diff_ids")
        except LayerkitError as exc:
            planner.plan.failures.append(_failure(found.label, "image", exc, image_id=image_id))
            continue
        names = [ref] if ref.digest else [Reference(ref.domain, ref.path, ref.tag, None)]
        planner.add(source, image_id, config, names, m.digest,
                    [(ld["digest"], ld["size"], ld.get("mediaType")) for ld in m.layers],
                    [Locator("registry", ref.domain, repository=ref.path, digest=ld["digest"]) for ld in m.layers],
                    [f"{found.label}: layer {ld['digest']}" for ld in m.layers])


def _plan_source(planner: _Planner, source: str) -> None:
    if source.startswith("docker://"):
        _plan_registry(planner, source)
        return
    from ..formats.transports.registry import open_source

    with open_source(source, every=True) as src:
        for n, im in enumerate(src.images()):
            try:
                _plan_image(planner, source, n, im)
            except (LayerkitError, OSError) as exc:  # this image's documents: the source's others go on
                image_id = "sha256:" + hashlib.sha256(im.config_bytes).hexdigest()
                planner.plan.failures.append(_failure(source, "image", exc, image_id=image_id))


def _plan_image(planner: _Planner, source: str, n: int, im: SourceImage) -> None:
    image_id = "sha256:" + hashlib.sha256(im.config_bytes).hexdigest()
    config = check_config(parse_config(im.config_bytes, im.label), im.label)
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(im.layers):
        raise LayerkitError(f"{im.label}: lists {len(im.layers)} layers but its config has {len(diff_ids)} diff_ids")
    mts = im.media_types if len(im.media_types) == len(im.layers) else [None] * len(im.layers)
    mdigest = "sha256:" + hashlib.sha256(im.manifest_bytes).hexdigest() if im.manifest_bytes else None
    planner.add(source, image_id, config, im.names, mdigest,
                [(ly.digest if ly.digest and is_digest(ly.digest) else None, ly.size, mt)
                 for ly, mt in zip(im.layers, mts, strict=True)],
                [Locator("source", source, n, k) for k in range(len(im.layers))],
                [ly.label for ly in im.layers])


def plan(sources: list[str], dataset: str, store: Store | None = None) -> Plan:
    """Open every source and list its images; the layers not yet in ``dataset`` become tasks (one per
    diff_id, largest first). A source that cannot be opened or listed becomes a failure row."""
    planner = _Planner(dataset)
    for source in sources:
        try:
            if _is_store(source):
                if store is None:
                    raise LayerkitError(f"{source}: no store to read (pass --store DIR or set LAYERKIT_HOME, or name a "
                                        "transport: docker-archive:PATH, oci:DIR, docker://HOST/REPO)")
                _plan_store(planner, source, store)
            else:
                _plan_source(planner, source)
        except (LayerkitError, OSError) as exc:
            planner.plan.failures.append(_failure(source, "source", exc))
    planner.plan.tasks = planner.tasks()
    return planner.plan


# ---- indexing one layer (a worker) -------------------------------------------------------------------

_SOURCES: dict[tuple, list] = {}  # per worker process: a source's images, listed once (sources stay open)
_SOURCES_LOCK = threading.Lock()
MAX_OPEN_SOURCES = 16


def _listing(text: str) -> list:
    """The images of source ``text``, listed once per worker process while the file stays the same (a
    worker of a long-lived cluster sees an archive replaced between two scans as a new source)."""
    from ..formats.transports.location import parse_location
    from ..formats.transports.registry import open_source

    try:
        st = os.stat(parse_location(text).path or "")
        key = (text, st.st_ino, st.st_size, st.st_mtime_ns)
    except (OSError, LayerkitError):
        key = (text,)
    with _SOURCES_LOCK:
        hit = _SOURCES.get(key)
        if hit is None:
            for k in [k for k in _SOURCES if k[0] == text]:  # an older version of the same file
                _SOURCES.pop(k)[0].close()
            while len(_SOURCES) >= MAX_OPEN_SOURCES:  # the oldest opened goes
                _SOURCES.pop(next(iter(_SOURCES)))[0].close()
            src = open_source(text, every=True)
            hit = _SOURCES[key] = [src, list(src.images())]
        return hit[1]


def close_sources() -> None:
    """Close the sources this process opened for its tasks (a scan run in the client's process)."""
    with _SOURCES_LOCK:
        while _SOURCES:
            _SOURCES.popitem()[1][0].close()
    if "layerkit.fleet.registry" in sys.modules:  # registry connections, when this process opened some
        sys.modules["layerkit.fleet.registry"].close_clients()


def _open(task: LayerTask) -> BinaryIO:
    loc = task.locator
    if loc.kind == "file":
        try:
            return open(loc.path, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"{task.label}: blob file missing") from exc
    if loc.kind == "registry":
        from .registry import open_blob

        return open_blob(loc.path, loc.repository, loc.digest, task.size or 0)
    images = _listing(loc.path)
    if loc.image >= len(images) or loc.layer >= len(images[loc.image].layers):
        raise NotFound(f"{task.label}: the source no longer holds it (changed since the scan was planned)")
    return images[loc.image].layers[loc.layer].open()


def _worker_name() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().name if isinstance(get_worker().name, str) else str(get_worker().name)
    except (ImportError, ValueError):
        return None


def index_layer(task: LayerTask, dataset: str, contents: bool = False) -> dict:
    """Open, stream, verify and index one layer; write its ``files`` parts. Returns ``{"layer": row}`` or
    ``{"failure": row}`` (a layer's own problems are data, never an exception of the task). When the copy
    planned first fails, its alternates are tried in turn; the failure names the first copy's problem."""
    first: BaseException | None = None
    for copy in (task, *task.alternates):
        try:
            return {"layer": _index_copy(copy, dataset, contents)}
        except (LayerkitError, OSError) as exc:
            first = first or exc
    assert first is not None
    more = f" ({len(task.alternates)} other copies failed too)" if task.alternates else ""
    row = _failure(task.source, "layer", first, diff_id=task.diff_id, digest=task.digest)
    row["reason"] += more
    return {"failure": row}


def _index_copy(task: LayerTask, dataset: str, contents: bool) -> dict:
    """:func:`index_layer` of one copy: its ``layers`` row, or the copy's error (its parts removed)."""
    t0 = time.monotonic()
    writer = ds.PartWriter(dataset, "files", prefix=task.diff_id.removeprefix("sha256:") + ".")
    (c_diff, c_seq, c_path, c_type, c_size, c_mode, c_uid, c_gid, c_mtime, c_link, c_sha) = (
        c.append for c in writer.columns)
    diff_id_claimed = task.diff_id
    try:
        with _open(task) as f:
            stream = LayerStream(f, task.label, limit=task.size)
            entries = files = size = regular = links_bytes = 0
            try:
                tr = TarReader(stream.reader, verify=True)
                for h in tr:
                    c = classify(h)
                    if c is None:
                        continue
                    path, code, link = c
                    digest = None
                    fsize = 0
                    if code == "f":
                        fsize = h.size
                        size += fsize
                        regular += 1
                        if contents:
                            fh = hashlib.sha256()
                            for chunk in tr.chunks():
                                fh.update(chunk)
                            digest = fh.hexdigest()
                    elif code == "l":
                        n = len(os.fsencode(link))
                        size += n
                        links_bytes += n
                    if code not in "dwo":
                        files += 1
                    c_diff(diff_id_claimed)
                    c_seq(entries)
                    c_path(path)
                    c_type(TYPE_NAMES[code])
                    c_size(fsize)
                    c_mode(h.mode & 0o7777)
                    c_uid(h.uid)
                    c_gid(h.gid)
                    c_mtime(float(h.mtime))
                    c_link(link)
                    c_sha(digest)
                    entries += 1
                    writer.full()
            except Exception as exc:
                raise tar_error(task.label, exc) from exc
            digest, diff_id, csize, tsize = stream.finish(task.digest, task.diff_id)
        writer.flush()
    except BaseException:
        for name in writer.parts:  # this copy's own parts: a layer that failed leaves no rows
            (ds.table_dir(dataset, "files") / name).unlink(missing_ok=True)
        raise
    return {"diff_id": diff_id, "digest": digest, "compression": stream.compression, "compressed_size": csize,
            "tar_size": tsize, "size": size, "entries": entries, "files": files, "regular_files": regular,
            "regular_bytes": size - links_bytes, "contents": contents, "index_seconds": time.monotonic() - t0,
            "worker": _worker_name(), "scanned_at": datetime.now(UTC)}


# ---- running it (the client) -------------------------------------------------------------------------

def _client(scheduler: str | None, workers: int | None, processes: bool, dashboard: bool = False):
    """A Dask client: to ``scheduler``, or to a new LocalCluster (one worker process per core, each of
    :data:`THREADS_PER_WORKER` threads; with ``processes=False``, single-threaded workers in this process).
    ``dashboard``: the LocalCluster serves Dask's dashboard on a free 127.0.0.1 port when bokeh, which draws
    it, is installed."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    n = workers or layer_workers(most=os.cpu_count() or 2)
    where = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process (inproc://), not over TCP
    board = "127.0.0.1:0" if dashboard and _has_bokeh() else None
    # silence_logs: Dask's workers log to the terminal (a notebook cell's output) on their own, e.g. a
    # heartbeat that races the scheduler's shutdown; what a scan must say comes back as results and failures
    cluster = LocalCluster(n_workers=n, threads_per_worker=THREADS_PER_WORKER if processes else 1,
                           processes=processes, dashboard_address=board, silence_logs=logging.CRITICAL,
                           **where)
    return Client(cluster), cluster


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_link(client, host: str | None = None) -> str | None:
    """The address of the Dask dashboard the client's scheduler serves (its HTTP server), or None; ``host``:
    the address it listens on, when known (a LocalCluster of this process)."""
    try:
        port = client.scheduler_info().get("services", {}).get("dashboard")
        if not port:
            return None
        if host is not None:  # our LocalCluster's: bound to 127.0.0.1, whatever address its scheduler names
            return f"http://{host}:{port}/status"
        return client.dashboard_link or None
    except (KeyError, AttributeError, OSError):
        return None


def _results(client, tasks: list[LayerTask], dataset: str, contents: bool) -> Iterator[tuple[LayerTask, dict]]:
    from distributed import as_completed

    futures = {client.submit(index_layer, t, dataset, contents, key=f"layer-{t.diff_id}", pure=False,
                             priority=len(tasks) - i): t for i, t in enumerate(tasks)}
    for fut in as_completed(futures):
        t = futures[fut]
        try:
            yield t, fut.result()
        except Exception as exc:  # the task itself broke (a worker killed too often, an unpicklable error)
            yield t, {"failure": _failure(t.source, "layer", exc, diff_id=t.diff_id, digest=t.digest)}


def scan(sources: list[str], dataset: str, *, store: Store | None = None, scheduler: str | None = None,
         workers: int | None = None, contents: bool = False, processes: bool = True,
         progress: Progress | None = None) -> ScanResult:
    """Index every image of ``sources`` into the Parquet dataset at ``dataset`` (created when missing).

    ``scheduler``: the address of a running Dask scheduler (``tcp://HOST:8786``); else a LocalCluster of
    ``workers`` processes (threads of this process with ``processes=False``). ``contents``: hash every
    regular file. ``progress`` receives a ``waiting`` event per layer to index, then ``done`` as each is
    indexed (or fails), and the Dask dashboard's address once, as a note, when the cluster serves one."""
    start = time.monotonic()
    ds.create(dataset)
    with ds.writing(dataset):
        return _scan(sources, dataset, start, store=store, scheduler=scheduler, workers=workers, contents=contents,
                     processes=processes, progress=progress)


def _scan(sources: list[str], dataset: str, start: float, *, store: Store | None, scheduler: str | None,
          workers: int | None, contents: bool, processes: bool, progress: Progress | None) -> ScanResult:
    """:func:`scan` with the dataset's writer lock held."""
    ds.remove_orphans(dataset)
    p = plan(sources, dataset, store)
    failures = list(p.failures)
    layer_rows: list[dict] = []
    committed = 0
    n_workers = 0
    dashboard = None
    if p.tasks:
        if progress is not None:
            for t in p.tasks:
                progress(ProgressEvent("layer", t.digest or t.diff_id, 0, t.size, Status.WAITING))
        client, cluster = _client(scheduler, workers, processes, dashboard=progress is not None)
        try:
            n_workers = len(client.scheduler_info().get("workers", {}))
            # a LocalCluster's scheduler always serves HTTP, but draws the dashboard only with bokeh
            dashboard = dashboard_link(client, None if scheduler else "127.0.0.1") \
                if scheduler or (cluster is not None and _has_bokeh()) else None
            if dashboard and progress is not None:  # shown once, while the work it shows runs
                progress(ProgressEvent("scan", None, 0, None, Status.WAITING, note=f"Dask dashboard: {dashboard}"))
            for t, res in _results(client, p.tasks, dataset, contents):
                if "layer" in res:
                    layer_rows.append(res["layer"])
                    if len(layer_rows) - committed >= COMMIT_EVERY:
                        ds.write_part(dataset, "layers", layer_rows[committed:])
                        committed = len(layer_rows)
                else:
                    failures.append(res["failure"])
                if progress is not None:
                    progress(ProgressEvent("layer", t.digest or t.diff_id, t.size or 0, t.size, Status.DONE))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
            if not processes:
                close_sources()
    ds.write_part(dataset, "layers", layer_rows[committed:])
    if any(r["contents"] for r in layer_rows):
        from .queries import refresh_contents

        refresh_contents(dataset)
    ds.write_part(dataset, "images", p.images)
    ds.write_part(dataset, "image_layers", p.image_layers)
    ds.write_part(dataset, "failures", failures)
    return ScanResult(dataset=str(dataset), images=len({r["image_id"] for r in p.images}), layers=len(layer_rows),
                      files=sum(r["entries"] for r in layer_rows), failures=len(failures),
                      skipped_images=p.skipped_images, skipped_layers=p.skipped_layers,
                      compressed_bytes=sum(r["compressed_size"] for r in layer_rows),
                      seconds=time.monotonic() - start, workers=n_workers, failure_rows=failures,
                      dashboard=dashboard)
