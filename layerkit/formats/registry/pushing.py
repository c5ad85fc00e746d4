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

import json
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urljoin

import requests

from ...engine.blobs import CHUNK
from ...engine.mediatypes import OCI_MANIFEST
from ...engine.progress import Progress, ProgressEvent, Status
from ...engine.store import Store
from ...errors import DigestMismatch, ImageNotFound, InvalidReference, LayerkitError
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


def push_blob(client: RegistryClient, store: Store, repo: str, digest: str, sources: list[str],
              on_position: Callable[[int], None]) -> tuple[Status, str | None]:
    """HEAD, else mount, else upload one blob; returns what happened (:attr:`Status.EXISTS`,
    :attr:`Status.MOUNTED` with the repository it came from, or :attr:`Status.DONE`).

    The upload is one ``PUT`` of the whole blob, or, for a blob larger than :data:`CHUNKED_THRESHOLD` or
    when the registry refuses the whole blob in one request (``413``), ``PATCH`` requests of
    :data:`UPLOAD_CHUNK` bytes closed by a ``PUT`` (:func:`send_chunks`). A failed upload (connection
    error, 5xx) is tried again in a new upload session. ``on_position`` is told how far the upload got."""
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
    path = store.blobs.path(digest)
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


def push(store: Store, image: str, ref: str | None = None, insecure: bool = False,
         progress: Progress | None = None) -> TransferResult:
    """Push the stored image ``image`` to ``ref`` (default: ``image`` itself, which must be a tag of it).

    Blobs the repository has are skipped (``Layer already exists``), blobs layerkit saw in another
    repository of the same registry are mounted (``Mounted from REPO``), the rest are uploaded
    (``Pushed``); then the manifest is PUT as stored, so the returned digest is the image's manifest
    digest. ``progress`` receives a :class:`~layerkit.engine.progress.ProgressEvent` per layer as it is
    announced (``waiting``), as its bytes leave (``uploading``) and with its outcome (``exists``,
    ``mounted``, ``done``), one call at a time.
    """
    img = store.image(image)
    r = parse_ref(ref if ref is not None else image, "push")
    if r.digest:
        raise InvalidReference(f"push: cannot push to a digest reference ({ref or image}); give a tag")
    if ref is None and not any(t.normalized == r.normalized for t in img.tags):
        raise ImageNotFound(f"push {image}: no such tag in the store; give the reference to push to "
                            f"(push IMAGE REGISTRY/NAME:TAG)")
    what = f"push {r}"
    mbytes = store.blobs.read_bytes(img.manifest_digest)
    manifest = json.loads(mbytes)
    mtype = manifest.get("mediaType") or OCI_MANIFEST
    cdesc = manifest["config"]
    layer_descs = manifest.get("layers", [])
    domain = normalize_registry(r.domain)
    known = known_repositories(store, domain)

    def sources(digest: str) -> list[str]:
        return [x for x in reversed(known.get(digest, [])) if x != r.path]

    from_repos: list[str] = []
    for d in [ld["digest"] for ld in layer_descs] + [cdesc["digest"]]:
        for x in sources(d)[:MAX_MOUNT_SOURCES]:
            if x not in from_repos:
                from_repos.append(x)
    scopes = [f"repository:{r.path}:pull,push"] + [f"repository:{x}:pull" for x in from_repos[:8]]
    lock = threading.Lock()

    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            with lock:
                progress(event)

    # each distinct blob once (a layer repeated in the image is sent once), layers first, config last
    jobs: dict[str, int] = {}
    for ld in layer_descs:
        jobs.setdefault(ld["digest"], int(ld.get("size", 0)))
    layer_digests = dict.fromkeys(jobs)
    jobs.setdefault(cdesc["digest"], int(cdesc.get("size", 0)))
    for dg in layer_digests:  # in the manifest's order (a dict's keys)
        emit(ProgressEvent("layer", dg, 0, jobs[dg], Status.WAITING))
    with RegistryClient(domain, what, insecure=insecure, credentials=credentials_for(domain),
                        scopes=scopes) as client:
        client.ping()  # scheme and token once, before the workers start

        def one(dg: str) -> tuple[Status, str | None]:
            layer = dg in layer_digests  # the config's upload is not reported, as Docker shows none

            def on_position(pos: int) -> None:
                if layer:
                    emit(ProgressEvent("layer", dg, pos, jobs[dg], Status.UPLOADING))

            status, source = push_blob(client, store, r.path, dg, sources(dg), on_position)
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
        layers: list[LayerTransfer] = []
        seen: set[str] = set()
        for ld in layer_descs:
            dg = ld["digest"]
            # the same blob twice in one image: sent once, the second one already exists
            status, source = outcomes[dg] if dg not in seen else (Status.EXISTS, None)
            layers.append(LayerTransfer.of("push", dg, int(ld.get("size", 0)), status, source))
            seen.add(dg)
        resp = client.request("PUT", f"/v2/{r.path}/manifests/{r.tag}", headers={"Content-Type": mtype},
                              body=mbytes)
        if resp.status_code not in (200, 201, 202):
            raise client.error_for(resp)
        got = resp.headers.get("Docker-Content-Digest")
        resp.close()
        if got and got != img.manifest_digest:
            raise DigestMismatch(f"{what}: registry {client.domain} stored the manifest as {got}, "
                                 f"expected {img.manifest_digest}")
    sent = sum(la.size for la in layers if la.moved)
    skipped = sum(la.size for la in layers if not la.moved)
    record(store, domain, r.path, [cdesc["digest"]] + [ld["digest"] for ld in layer_descs], img.id,
           f"{r.repository}@{img.manifest_digest}")
    return TransferResult(str(r), img.manifest_digest, img.id, layers, sent, skipped, domain, None, "push",
                          len(mbytes))
