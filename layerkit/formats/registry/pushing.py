"""``push``: a stored image to a registry, sending only the blobs the registry lacks.

Every blob is checked with ``HEAD`` first (``Layer already exists``); a blob known to live in another
repository of the same registry (:mod:`.state`) is mounted (``POST .../blobs/uploads/?mount=D&from=REPO``,
``Mounted from REPO``); the rest is uploaded monolithically (``POST`` for an upload session, then one ``PUT
...?digest=D`` streaming the stored file) or, for a blob over :data:`CHUNKED_THRESHOLD` or one the registry
refuses whole (``413``), in chunks (``PATCH`` with ``Content-Range``, resumed from the registry's offset
after a failed chunk, then ``PUT ...?digest=D``), as the OCI distribution spec's "Pushing blobs" section
describes; then the manifest is ``PUT`` byte for byte as the store holds it, so its digest is the image's
manifest digest in the store. Blobs go up :data:`PUSH_WORKERS` at a time.

Progress (:mod:`layerkit.engine.progress`): every layer is announced ``waiting`` with its size, then is
``uploading`` as its bytes leave and ``done`` once the registry has it, or ``exists`` / ``mounted``.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urljoin

import requests

from ...engine.blobs import CHUNK
from ...engine.digests import sha256_bytes
from ...engine.mediatypes import oci_layer_type
from ...engine.progress import Progress, ProgressEvent, Status
from ...engine.reference import Reference
from ...engine.store import Store
from ...errors import DigestMismatch, ImageNotFound, InvalidReference, LayerkitError
from ..imagesource import SourceImage
from ..importer import LayerSource
from ..pipeline import FileLayer, check_plain_layer, copy_image, diff_ids_of, manifest_for, spool_to_file
from ..stored import StoreSource
from .credentials import credentials_for
from .errors import RegistryError, RegistryUnreachable
from .results import LayerTransfer, TransferResult
from .state import known_repositories, record
from .transport import RegistryClient, add_query, normalize_registry, parse_ref

MAX_MOUNT_SOURCES = 3
PUSH_WORKERS = 3  # blobs uploaded at once (Docker: 5); sending releases the GIL
CHUNKED_THRESHOLD = 512 << 20  # blobs larger than this are uploaded in chunks (PATCH), smaller ones in one PUT
UPLOAD_CHUNK = 64 << 20  # bytes per PATCH (more when the registry asks for it: OCI-Chunk-Min-Length)

_RANGE_RE = re.compile(r"^(?:bytes=)?0-(-?\d+)$")


class FileBody:
    """``size`` bytes of a stored blob from ``offset`` on as a request body: a known length, read in large
    chunks; ``on_position(p)`` is told how far into the blob the bytes read so far reach."""

    def __init__(self, path: os.PathLike, size: int, on_position: Callable[[int], None], offset: int = 0) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close(), which send() calls
        if offset:
            self._f.seek(offset)
        self._size = size
        self._left = size
        self._pos = offset
        self._on_position = on_position

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(min(CHUNK, self._left)) if self._left > 0 else b""
        if data:
            self._left -= len(data)
            self._pos += len(data)
            self._on_position(self._pos)
        return data

    def close(self) -> None:
        self._f.close()


def cancel_upload(client: RegistryClient, url: str) -> None:
    """``DELETE`` an abandoned upload session, as the spec asks of clients; failures are ignored (the
    registry drops stale sessions on its own)."""
    try:
        client.request("DELETE", url, retry=False).close()
    except RegistryError:
        pass


def upload_offset(client: RegistryClient, url: str) -> tuple[int, str] | requests.Response:
    """Where an upload session stands (``GET`` on it: ``204`` with ``Range: 0-LAST``): (bytes received,
    the session's URL), or the registry's unexpected answer."""
    resp = client.request("GET", url)
    m = _RANGE_RE.match(resp.headers.get("Range", "").strip())
    if resp.status_code not in (200, 204) or not m:
        return resp
    resp.close()
    return int(m.group(1)) + 1, urljoin(url, resp.headers.get("Location") or url)


def send_chunks(client: RegistryClient, url: str, path: os.PathLike, size: int, digest: str, chunk: int,
                on_position: Callable[[int], None]) -> requests.Response:
    """Upload a blob to the session at ``url`` in chunks (OCI distribution spec, "Pushing a blob in chunks").

    Each ``PATCH`` carries ``chunk`` bytes with ``Content-Range: FIRST-LAST`` (inclusive) and answers ``202``
    with the session's next ``Location``; a closing ``PUT ...?digest=D`` with no body ends the session.
    A chunk that fails (connection error, 5xx, or ``416`` for a range the registry did not expect) is sent
    again from the offset the registry reports, up to the client's retry policy's tries in all. Returns the
    closing ``PUT``'s response, or the first answer that is neither success nor worth a retry."""
    policy = client.retry
    offset = 0
    failures = 0
    while offset < size:
        n = min(chunk, size - offset)
        try:
            resp = client.request("PATCH", url, headers={"Content-Type": "application/octet-stream",
                                                         "Content-Range": f"{offset}-{offset + n - 1}"},
                                  body=lambda o=offset, k=n: FileBody(path, k, on_position, offset=o), retry=False)
        except RegistryUnreachable:
            failures += 1
            if failures >= policy.tries:
                raise
            resp = None
        if resp is not None and resp.status_code == 202:
            url = urljoin(url, resp.headers.get("Location") or url)
            resp.close()
            offset += n
            continue
        if resp is not None:
            failures += 1
            if (resp.status_code != 416 and resp.status_code < 500) or failures >= policy.tries:
                return resp
            resp.close()
        policy.wait(failures - 1)
        status = upload_offset(client, url)
        if isinstance(status, requests.Response):
            return status
        offset, url = status
        if offset > size:
            raise RegistryError(f"{client.what}: registry {client.domain} reports {offset} bytes received of "
                                f"blob {digest}, which has {size}")
    return client.request("PUT", add_query(url, digest=digest))


def push_blob(client: RegistryClient, blob: Callable[[], Path], repo: str, digest: str, sources: list[str],
              on_position: Callable[[int], None]) -> tuple[Status, str | None]:
    """HEAD, else mount, else upload one blob; returns what happened (:attr:`Status.EXISTS`,
    :attr:`Status.MOUNTED` with the repository it came from, or :attr:`Status.DONE`).

    The upload is one ``PUT`` of the whole blob, or, for a blob larger than :data:`CHUNKED_THRESHOLD` or
    when the registry refuses the whole blob in one request (``413``), ``PATCH`` requests of
    :data:`UPLOAD_CHUNK` bytes closed by a ``PUT`` (:func:`send_chunks`). A failed upload (connection
    error, 5xx) is tried again in a new upload session. ``on_position`` is told how far the upload got.
    ``blob()`` gives a file holding the blob; it is asked only when the blob is to be uploaded."""
    min_chunk = ""
    resp = client.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    resp.close()
    if resp.status_code == 200:
        return Status.EXISTS, None
    if resp.status_code != 404:
        raise client.error_for(resp)
    location = None
    for src in sources[:MAX_MOUNT_SOURCES]:
        resp = client.request("POST", f"/v2/{repo}/blobs/uploads/?" + urlencode({"mount": digest, "from": src}))
        if resp.status_code == 201:
            resp.close()
            return Status.MOUNTED, src
        if resp.status_code == 202 and resp.headers.get("Location"):
            location = resp.headers["Location"]  # not mounted: the registry opened an upload session
            min_chunk = resp.headers.get("OCI-Chunk-Min-Length", "")
            resp.close()
            break
        if resp.status_code in (401, 403):
            resp.close()  # no pull access to the source repository: upload instead, as Docker does
            continue
        raise client.error_for(resp)
    path = blob()
    try:
        size = path.stat().st_size  # the file as it is: Content-Length must match what is read
    except FileNotFoundError as exc:
        raise LayerkitError(f"{client.what}: blob {digest} is missing from the store") from exc
    policy = client.retry
    chunked = size > CHUNKED_THRESHOLD
    for attempt in range(policy.tries):
        if location is None:
            resp = client.request("POST", f"/v2/{repo}/blobs/uploads/")
            if resp.status_code != 202 or not resp.headers.get("Location"):
                raise client.error_for(resp)
            location = resp.headers["Location"]
            min_chunk = resp.headers.get("OCI-Chunk-Min-Length", "")
            resp.close()
        url = urljoin(client.base + "/", location)
        location = None  # an upload session serves one try
        try:
            if chunked:
                chunk = max(UPLOAD_CHUNK, int(min_chunk) if min_chunk.isdigit() else 0)
                resp = send_chunks(client, url, path, size, digest, chunk, on_position)
            else:
                resp = client.request("PUT", add_query(url, digest=digest),
                                      headers={"Content-Type": "application/octet-stream"},
                                      body=lambda: FileBody(path, size, on_position), retry=False)
        except RegistryUnreachable:
            if attempt == policy.tries - 1:
                raise
            resp = None
        if resp is not None and resp.status_code in (201, 204):
            got = resp.headers.get("Docker-Content-Digest")
            resp.close()
            if got and got != digest:
                raise DigestMismatch(f"{client.what}: registry {client.domain} stored blob {digest} as {got}")
            return Status.DONE, None
        if resp is not None and resp.status_code == 413 and not chunked and attempt < policy.tries - 1:
            resp.close()  # too large for one request (a proxy's body limit, say): send it in chunks
            cancel_upload(client, url)
            chunked = True
            continue
        if resp is not None and (resp.status_code < 500 or attempt == policy.tries - 1):
            raise client.error_for(resp)
        if resp is not None:
            resp.close()
        cancel_upload(client, url)
        policy.wait(attempt)  # then a new upload session
    raise AssertionError("unreachable")  # pragma: no cover


class RegistryDestination:
    """``docker://REF`` as a destination: every blob checked with ``HEAD`` (``exists``), mounted from
    another repository of the registry where layerkit saw it (``mounted``), else uploaded (``done``), up to
    :data:`PUSH_WORKERS` at a time; the manifest is ``PUT`` at :meth:`commit` (the source's own bytes when
    it names exactly the blobs sent, so its digest survives). What was uploaded before an abort stays in
    the registry unreferenced, for its garbage collection, as with any client.

    ``store`` holds the registry state (where blobs were seen, for mounts; what was pushed, recorded at
    commit) and the temporary files of layers that come from a stream (spooled once, digest checked).
    :meth:`commit` returns one :class:`~.results.TransferResult` per image."""

    def __init__(self, store: Store, ref: str, insecure: bool = False, progress: Progress | None = None,
                 what: str | None = None) -> None:
        self.store = store
        self.ref_text = ref
        self.ref = parse_ref(ref, "push")
        if self.ref.digest:
            raise InvalidReference(f"push: cannot push to a digest reference ({ref}); give a tag")
        self.what = what or f"push {self.ref}"
        self.label = self.what
        self.domain = normalize_registry(self.ref.domain)
        self._insecure = insecure
        self._progress = progress
        self._lock = threading.Lock()
        self._pending: list[tuple[RegistryClient, bytes, str, str, list[LayerTransfer], list[str]]] = []
        self._temps: list[Path] = []
        self._head: RegistryClient | None = None

    def _emit(self, event: ProgressEvent) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress(event)

    def has_blob(self, digest: str) -> bool:
        """The repository holds this blob (``HEAD``)."""
        if self._head is None:
            self._head = RegistryClient(self.domain, self.what, insecure=self._insecure,
                                        credentials=credentials_for(self.domain),
                                        scopes=[f"repository:{self.ref.path}:pull,push"])
        resp = self._head.request("HEAD", f"/v2/{self.ref.path}/blobs/{digest}")
        resp.close()
        if resp.status_code not in (200, 404):
            raise self._head.error_for(resp)
        return resp.status_code == 200

    def _temp(self) -> Path:
        self.store.blobs.ensure()
        fd, name = tempfile.mkstemp(dir=self.store.blobs.tmp_dir, prefix="stream-", suffix=".blob")
        os.close(fd)
        path = Path(name)
        self._temps.append(path)
        return path

    def _spooled(self, layer: LayerSource) -> tuple[str, int, str, Path]:
        path = self._temp()
        path.unlink()
        digest, size, compression = spool_to_file(layer, path)
        return digest, size, compression, path

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Send the blobs the repository lacks (layers first, the config last); the manifest waits for
        :meth:`commit`."""
        r, store = self.ref, self.store
        diff_ids = diff_ids_of(image)
        blobs: dict[str, Callable[[], Path]] = {}
        descs: list[tuple[str, int, str]] = []
        for i, layer in enumerate(image.layers):
            mtype = image.media_types[i] if i < len(image.media_types) else ""
            if isinstance(layer, FileLayer) and layer.path is not None and layer.digest:
                blobs.setdefault(layer.digest, lambda p=layer.path: p)
                descs.append((layer.digest, layer.size if layer.size is not None else layer.path.stat().st_size,
                              layer.media_type or mtype))
                continue
            if layer.digest and layer.size is not None and mtype:
                def later(la=layer) -> Path:  # spooled only when the registry lacks it
                    return self._spooled(la)[3]
                blobs.setdefault(layer.digest, later)
                descs.append((layer.digest, layer.size, mtype))
                continue
            digest, size, compression, path = self._spooled(layer)
            check_plain_layer(layer, digest, compression, diff_ids[i])
            blobs.setdefault(digest, lambda p=path: p)
            descs.append((digest, size, mtype or oci_layer_type(compression)))
        cdigest = sha256_bytes(image.config_bytes)
        if store.blobs.has(cdigest):
            blobs.setdefault(cdigest, lambda: store.blobs.path(cdigest))
        else:
            def config_file() -> Path:
                path = self._temp()
                path.write_bytes(image.config_bytes)
                return path
            blobs.setdefault(cdigest, config_file)
        mbytes, mtype = manifest_for(image, descs)
        known = known_repositories(store, self.domain)

        def sources(digest: str) -> list[str]:
            return [x for x in reversed(known.get(digest, [])) if x != r.path]

        from_repos: list[str] = []
        for d in [d for d, _, _ in descs] + [cdigest]:
            for x in sources(d)[:MAX_MOUNT_SOURCES]:
                if x not in from_repos:
                    from_repos.append(x)
        scopes = [f"repository:{r.path}:pull,push"] + [f"repository:{x}:pull" for x in from_repos[:8]]
        emit = self._emit
        # each distinct blob once (a layer repeated in the image is sent once), layers first, config last
        jobs: dict[str, int] = {}
        for d, size, _ in descs:
            jobs.setdefault(d, size)
        layer_digests = dict.fromkeys(jobs)
        jobs.setdefault(cdigest, len(image.config_bytes))
        for dg in layer_digests:  # in the manifest's order (a dict's keys)
            emit(ProgressEvent("layer", dg, 0, jobs[dg], Status.WAITING))
        client = RegistryClient(self.domain, self.what, insecure=self._insecure,
                                credentials=credentials_for(self.domain), scopes=scopes)
        try:
            client.ping()  # scheme and token once, before the workers start

            def one(dg: str) -> tuple[Status, str | None]:
                layer = dg in layer_digests  # the config's upload is not reported, as Docker shows none

                def on_position(pos: int) -> None:
                    if layer:
                        emit(ProgressEvent("layer", dg, pos, jobs[dg], Status.UPLOADING))

                status, source = push_blob(client, blobs[dg], r.path, dg, sources(dg), on_position)
                if layer:
                    emit(ProgressEvent("layer", dg, jobs[dg] if status == Status.DONE else 0, jobs[dg], status))
                return status, source

            with ThreadPoolExecutor(max_workers=PUSH_WORKERS) as pool:
                futures = {dg: pool.submit(one, dg) for dg in jobs}
                try:
                    outcomes = {dg: f.result() for dg, f in futures.items()}
                except BaseException:
                    for f in futures.values():
                        f.cancel()
                    raise
        except BaseException:
            client.close()
            raise
        layers: list[LayerTransfer] = []
        seen: set[str] = set()
        for dg, size, _ in descs:
            # the same blob twice in one image: sent once, the second one already exists
            status, source = outcomes[dg] if dg not in seen else (Status.EXISTS, None)
            layers.append(LayerTransfer.of("push", dg, size, status, source))
            seen.add(dg)
        self._pending.append((client, mbytes, mtype, cdigest, layers, [d for d, _, _ in descs]))

    def commit(self) -> list[TransferResult]:
        """``PUT`` each image's manifest under the destination's tag; record what was pushed."""
        r, out = self.ref, []
        try:
            for client, mbytes, mtype, image_id, layers, digests in self._pending:
                mdigest = sha256_bytes(mbytes)
                resp = client.request("PUT", f"/v2/{r.path}/manifests/{r.tag}", headers={"Content-Type": mtype},
                                      body=mbytes)
                if resp.status_code not in (200, 201, 202):
                    raise client.error_for(resp)
                got = resp.headers.get("Docker-Content-Digest")
                resp.close()
                if got and got != mdigest:
                    raise DigestMismatch(f"{self.what}: registry {client.domain} stored the manifest as {got}, "
                                         f"expected {mdigest}")
                sent = sum(la.size for la in layers if la.moved)
                skipped = sum(la.size for la in layers if not la.moved)
                record(self.store, self.domain, r.path, [image_id] + digests, image_id,
                       f"{r.repository}@{mdigest}")
                out.append(TransferResult(str(r), mdigest, image_id, layers, sent, skipped, self.domain, None,
                                          "push", len(mbytes)))
        finally:
            self.abort()
        return out

    def summary(self, results: list[TransferResult]) -> dict:
        """What a copy reports of the push: the reference, the transfer and Docker's lines for it."""
        return {"names": [self.ref_text], "push": results[0].to_json() if results else None,
                "lines": [line for res in results for line in res.lines()]}

    def abort(self) -> None:
        """Close the connections and remove the temporary files (blobs sent stay unreferenced)."""
        for client, *_ in self._pending:
            client.close()
        self._pending = []
        if self._head is not None:
            self._head.close()
            self._head = None
        for p in self._temps:
            p.unlink(missing_ok=True)
        self._temps = []

    def __enter__(self) -> RegistryDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def push(store: Store, image: str, ref: str | None = None, insecure: bool = False,
         progress: Progress | None = None) -> TransferResult:
    """Push the stored image ``image`` to ``ref`` (default: ``image`` itself, which must be a tag of it).

    Blobs the repository has are skipped (``Layer already exists``), blobs layerkit saw in another
    repository of the same registry are mounted (``Mounted from REPO``), the rest are uploaded
    (``Pushed``); then the manifest is PUT as stored, so the returned digest is the image's manifest
    digest. ``progress`` receives a :class:`~layerkit.engine.progress.ProgressEvent` per layer as it is
    announced (``waiting``), as its bytes leave (``uploading``) and with its outcome (``exists``,
    ``mounted``, ``done``), one call at a time.

    ``copy_image`` from the store (:class:`~..stored.StoreSource`) to a :class:`RegistryDestination`.
    """
    img = store.image(image)
    r = parse_ref(ref if ref is not None else image, "push")
    if r.digest:
        raise InvalidReference(f"push: cannot push to a digest reference ({ref or image}); give a tag")
    if ref is None and not any(t.normalized == r.normalized for t in img.tags):
        raise ImageNotFound(f"push {image}: no such tag in the store; give the reference to push to "
                            f"(push IMAGE REGISTRY/NAME:TAG)")
    dst = RegistryDestination(store, ref if ref is not None else image, insecure=insecure, progress=progress)
    [res] = copy_image(StoreSource(store, [(img, [])]), dst)
    return res
