"""``pull``: an image from a registry into the store, all or nothing, moving only the layers it lacks.

The manifest and the config are read first (:mod:`.manifests`). The layers then go through
:mod:`..importer`: each layer's HTTP body is streamed (:class:`BlobReader`) into a temporary blob and its
digest and length verified before anything becomes visible; the layer's diff_id is checked when the layer
is first indexed (``pull --verify``: at once, with every layer inflated and indexed during the pull). A
layer blob the store already holds is not requested at all (``Already exists``), and the image is recorded
all or nothing. Layers are downloaded concurrently (:func:`pull_workers`), largest first; a failing layer
stops the others and leaves the store as it was. A config the store already holds is read from the store,
so pulling an image the store has moves no blob at all.

Progress (:mod:`layerkit.engine.progress`): every layer is announced ``waiting`` with its size, then is
``downloading`` as its bytes arrive and ``done`` once stored, or ``exists`` when the store has it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator

import requests
import urllib3

from ...engine.blobs import CHUNK
from ...engine.layer import layer_workers
from ...engine.progress import Progress, ProgressEvent, Status, serialized
from ...engine.reference import Reference
from ...engine.store import Store
from ..imagesource import SourceImage
from ..importer import LayerSource
from ..pipeline import copy_image
from ..stored import StoreDestination
from .credentials import credentials_for
from .errors import RegistryUnreachable, one_line
from .manifests import ResolvedManifest, fetch_config, get_config, parse_platform, resolve
from .results import LayerTransfer, TransferResult
from .state import record
from .transport import RegistryClient, parse_ref

PULL_WORKERS = 4  # at most this many layers ingested at once by pull --verify (Docker: 3, skopeo: 6)
FETCH_WORKERS = 4  # layer blobs a plain pull downloads at once (Docker: 3, skopeo: 6)


def pull_workers(verify: bool = True) -> int:
    """How many layers a pull brings in at once.

    A plain pull only fetches blobs and hashes them: it waits on the network and the disk, so it runs
    :data:`FETCH_WORKERS` downloads at once whatever the cores (on 2 cores the registry benchmark's image
    took 0.75 s with 2, 0.55 s with 3, 0.54 s with 4 and 0.55 s with 6). ``pull --verify`` also inflates,
    hashes and indexes each tar, which is CPU-bound: :func:`~layerkit.engine.layer.layer_workers`, at most
    :data:`PULL_WORKERS` (on 2 cores, 2 workers were as fast as 3, about 10 % faster than 4 and 1.8 times
    as fast as 1; benchmarks/README.md)."""
    return FETCH_WORKERS if not verify else layer_workers(PULL_WORKERS)


class BlobReader(io.RawIOBase):
    """A blob's HTTP body as a file; an interrupted transfer resumes with a ``Range`` request (at most the
    client's retry policy's tries, paced by it). ``on_bytes(n)`` is called as bytes arrive."""

    def __init__(self, client: RegistryClient, url: str, size: int, digest: str, on_bytes: Callable[[int], None]
                 ) -> None:
        super().__init__()
        self._client = client
        self._url = url
        self._size = size
        self._digest = digest
        self._on_bytes = on_bytes
        self._resp: requests.Response | None = None
        self.pos = 0

    def readable(self) -> bool:
        return True

    def _connect(self) -> None:
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        resp = self._client.request("GET", self._url, headers=headers, stream=True)
        if resp.status_code not in (200, 206) or (resp.status_code == 206 and not self.pos):
            raise self._client.error_for(resp, not_found=f"registry {self._client.domain} has no blob "
                                                         f"{self._digest}")
        resp.raw.decode_content = False
        self._resp = resp
        if resp.status_code == 200 and self.pos:
            skip = self.pos  # the server ignored Range: drop what was already read
            while skip:
                got = resp.raw.read(min(CHUNK, skip))
                if not got:
                    raise OSError("connection closed while skipping to the resume point")
                skip -= len(got)

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def read(self, n: int = -1) -> bytes:
        remaining = self._size - self.pos
        if remaining <= 0:
            self._release()
            return b""
        want = min(CHUNK if n is None or n < 0 else n, remaining)
        policy = self._client.retry
        for attempt in range(policy.tries):
            try:
                if self._resp is None:
                    self._connect()
                data = self._resp.raw.read(want)
                if not data:
                    raise OSError(f"connection closed after {self.pos} of {self._size} bytes")
                self.pos += len(data)
                self._on_bytes(len(data))
                if self.pos >= self._size:
                    self._release()
                return data
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                self._drop()
                if attempt == policy.tries - 1:
                    raise RegistryUnreachable(
                        f"{self._client.what}: downloading blob {self._digest} from registry "
                        f"{self._client.domain} failed after {policy.tries} tries ({one_line(exc, 160)})") from exc
                policy.wait(attempt)
        return b""  # pragma: no cover

    def _release(self) -> None:
        """A completely read response goes back to the connection pool (else it is closed)."""
        resp = self._resp
        if resp is None:
            return
        self._resp = None
        if getattr(resp.raw, "length_remaining", None) == 0:
            resp.raw.release_conn()
        else:
            resp.close()

    def close(self) -> None:
        self._drop()
        super().close()


class RegistrySource:
    """``docker://REF`` as an image source: the manifest ``ref`` names for one platform (through an index:
    ``platform``, default this machine's), its config (from ``store`` when the store holds it already, so
    pulling an image the store has moves no blob at all), and layers streamed lazily (:class:`BlobReader`).

    Each distinct layer is announced ``waiting`` to ``progress`` when the manifest is read, then
    ``downloading`` as its bytes arrive; ``progress`` is called one call at a time. After the copy,
    :attr:`manifest` is what was resolved, :attr:`opened` the layers requested and :attr:`moved` the
    bytes received; :meth:`transfer` says what the pull did."""

    def __init__(self, ref: str, store: Store | None = None, platform: str | None = None, insecure: bool = False,
                 progress: Progress | None = None, what: str | None = None) -> None:
        self.ref = parse_ref(ref, "pull")
        self.what = what or f"pull {self.ref}"
        self.label = self.what
        self._store = store
        self._want = parse_platform(platform)
        self.client = RegistryClient(self.ref.domain, self.what, insecure=insecure,
                                     credentials=credentials_for(self.ref.domain),
                                     scopes=[f"repository:{self.ref.path}:pull"])
        self._lock = threading.Lock()  # layers arrive on several threads; progress is called one at a time
        self._progress = progress
        self.manifest: ResolvedManifest | None = None
        self.opened: set[str] = set()
        self.moved = 0
        self.up_to_date = False
        # how the store takes this source's layers: several downloads at once, diff_ids checked on first use
        self.store_options = {"workers": pull_workers(False), "index_now": False}

    def _emit(self, event: ProgressEvent) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress(event)

    def _layer(self, ld: dict) -> LayerSource:
        r, client, lock = self.ref, self.client, self._lock
        dg, size = ld["digest"], ld["size"]
        got = {"n": 0}

        def on_bytes(n: int) -> None:
            with lock:
                self.moved += n
                got["n"] += n
                if self._progress is not None:
                    self._progress(ProgressEvent("layer", dg, got["n"], size, Status.DOWNLOADING))

        def open_blob() -> BlobReader:
            with lock:
                self.opened.add(dg)
            return BlobReader(client, f"/v2/{r.path}/blobs/{dg}", size, dg, on_bytes)

        return LayerSource(open=open_blob, label=f"{self.what}: layer {dg} from registry {client.domain}",
                           size=size, digest=dg)

    def images(self) -> Iterator[SourceImage]:
        """The one image the reference names, for the platform asked for."""
        r = self.ref
        m = self.manifest = resolve(self.client, r, self._want)
        if self._store is not None:
            config_bytes = get_config(self._store, self.client, r.path, m.config)
        else:
            config_bytes = fetch_config(self.client, r.path, m.config)
        for ld in {ld["digest"]: ld for ld in m.layers}.values():
            self._emit(ProgressEvent("layer", ld["digest"], 0, ld["size"], Status.WAITING))
        names = [Reference(r.domain, r.path, r.tag, None)] if not r.digest else [r]
        if self._store is not None:  # the store had this image under this name (Docker: "Image is up to date")
            self.up_to_date = any(t.normalized == names[0].normalized for img in self._store.images()
                                  if img.id == m.config["digest"] for t in img.tags)
        yield SourceImage(config_bytes, [self._layer(ld) for ld in m.layers], names, self.what,
                          expected_id=m.config["digest"], manifest_bytes=m.data,
                          media_types=[ld.get("mediaType", "") for ld in m.layers])

    def transfer(self, store: Store, image_id: str) -> TransferResult:
        """What the copy from this source into ``store`` did (once the image is recorded as ``image_id``),
        recorded in the store's registry state (where each blob lives, the image's repo digest)."""
        r, m = self.ref, self.manifest
        layers = [LayerTransfer.of("pull", ld["digest"], ld["size"],
                                   Status.DONE if ld["digest"] in self.opened else Status.EXISTS) for ld in m.layers]
        skipped = sum(la.size for la in layers if not la.moved)
        record(store, r.domain, r.path, [m.config["digest"]] + [ld["digest"] for ld in m.layers], image_id,
               f"{r.repository}@{m.top_digest}")
        return TransferResult(str(r), m.top_digest, image_id, layers, self.moved, skipped, self.client.domain,
                              m.platform, "pull", m.top_size, self.up_to_date)

    def close(self) -> None:
        """Close the registry connections."""
        self.client.close()

    def __enter__(self) -> RegistrySource:
        self.client.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)


def pull(store: Store, ref: str, platform: str | None = None, insecure: bool = False,
         progress: Progress | None = None, verify: bool = False) -> TransferResult:
    """Pull ``ref`` (``[REGISTRY/]NAME[:TAG|@DIGEST]``) into the store and tag it with the full reference.

    ``platform`` (``os/arch[/variant]``) picks from a multi-platform image (default: this machine's).
    ``progress`` receives a :class:`~layerkit.engine.progress.ProgressEvent` per layer as it is announced
    (``waiting``), as its bytes arrive (``downloading``) and when it is stored (``done``) or found in the
    store (``exists``), one call at a time. A pull by digest records the image under ``NAME@DIGEST``.
    Every blob is checked against its digest before it enters the store; with ``verify`` each layer is also
    inflated, its diff_id checked and its index made during the pull, otherwise that happens when the layer
    is first used (see :func:`~layerkit.engine.layer.fetch_layer`). Raises a
    :class:`~.errors.RegistryError` subclass, :class:`~layerkit.errors.DigestMismatch`,
    :class:`~layerkit.errors.InvalidManifest` or :class:`~layerkit.errors.UnsupportedMediaType`, each one
    line naming the reference and the registry; the store is then unchanged.

    ``copy_image`` from a :class:`RegistrySource` into the store (:class:`~..stored.StoreDestination`).
    """
    emit = serialized(progress)
    with RegistrySource(ref, store, platform=platform, insecure=insecure, progress=emit) as src:
        dst = StoreDestination(store, workers=pull_workers(verify), index_now=verify)
        [(image, _)] = copy_image(src, dst, progress=emit)
    return src.transfer(store, image.id)
