"""Registries as ``scan`` sources: what the client lists, and how a worker reads one blob.

A source ``docker://...`` names (:func:`parse_source`):

* ``docker://HOST[:PORT]``: every repository of the registry's catalog, every tag of each;
* ``docker://HOST[:PORT]/REPO``: every tag of one repository;
* ``docker://HOST[:PORT]/REPO:TAG`` or ``...@sha256:...``: one image.

The client (:func:`images`) lists them through :mod:`layerkit.formats.registry.listing` (paginated) and
reads, for each tag, the manifest and the config only (small documents), with the same client, TLS rules,
credentials and platform choice as ``pull`` (:func:`~layerkit.formats.registry.manifests.resolve`: an
index resolves to this machine's platform, as the ``docker://`` transport does). Those reads run on a few
threads (:data:`LIST_THREADS`: each is a round trip that waits on the registry, not on the CPU): every
repository's tag list at once, then the images in catalog and tag order, a window of them ahead; a config
several tags share is fetched once. What cannot be listed or read is a :class:`Found` carrying the error,
never an exception: the rest of the registry is still scanned.

A worker reads a layer with :func:`open_blob`: the blob straight from the registry (never through the
client process), streamed by :class:`~layerkit.formats.registry.pulling.BlobReader` (resumed with a
``Range`` request when the connection drops), one client per registry and repository per worker process
(its connections and token kept between tasks).
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from ..engine.reference import Reference, parse_reference
from ..errors import InvalidReference, LayerkitError
from ..formats.registry.credentials import credentials_for
from ..formats.registry.listing import catalog, tags
from ..formats.registry.manifests import ResolvedManifest, fetch_config, parse_platform, resolve
from ..formats.registry.pulling import BlobReader
from ..formats.registry.transport import RegistryClient, normalize_registry

PREFIX = "docker://"
LIST_THREADS = 8  # tag lists, manifests and configs read at once while planning (round trips, not CPU)
LIST_WINDOW = 4 * LIST_THREADS  # images read ahead of the one the planner takes (bounds the client's memory)
_HOST_RE = re.compile(r"(?:localhost|[^/:]*\.[^/:]*|[^/:]+:[0-9]+|\[[0-9a-fA-F:]+\](?::[0-9]+)?)")


@dataclass(frozen=True)
class RegistryScope:
    """What a ``docker://`` source names: a registry (``repository`` None), one repository (``ref`` None),
    or one image (``ref``)."""

    domain: str
    repository: str | None = None
    ref: Reference | None = None


@dataclass
class Found:
    """One image the client looked for: its reference, manifest and config, or the ``error`` that stopped
    it at ``stage`` (``source``: the registry or catalog, ``repository``: a tag list, ``image``: a
    manifest or config); a failure of what the whole source names is ``source``)."""

    ref: Reference | None
    label: str
    stage: str = "image"
    manifest: ResolvedManifest | None = None
    config_bytes: bytes | None = None
    error: BaseException | None = None


def parse_source(text: str) -> RegistryScope:
    """The scope of ``docker://...`` (see the module docstring); :class:`InvalidReference` naming the text
    when it is none of them."""
    rest = text.removeprefix(PREFIX).rstrip("/")
    if "/" not in rest and _HOST_RE.fullmatch(rest):
        return RegistryScope(normalize_registry(rest))
    try:
        ref = parse_reference(rest)
    except InvalidReference as exc:
        raise InvalidReference(f"{text}: {exc}") from exc
    if ref.tag is None and ref.digest is None:
        return RegistryScope(ref.domain, ref.path)
    return RegistryScope(ref.domain, ref.path, ref)


_SCHEMES: dict[str, tuple[str, bool]] = {}  # registry -> (base URL, verify TLS), found by its first client's ping
_SCHEMES_LOCK = threading.Lock()


def _client(domain: str, repository: str | None, what: str) -> RegistryClient:
    """A client for one repository (or the catalog). The scheme is found once per registry and process: on
    127.0.0.1 each ping tries TLS first, about 0.1 s, and a scan makes a client per repository. A later
    client's first request answers any auth challenge itself (:meth:`RegistryClient.request`)."""
    scopes = [f"repository:{repository}:pull"] if repository else ["registry:catalog:*"]
    c = RegistryClient(domain, what, credentials=credentials_for(domain), scopes=scopes)
    with _SCHEMES_LOCK:
        known = _SCHEMES.get(c.domain)
    if known is not None:
        c.base, c.verify = known
    else:
        c.ping()
        with _SCHEMES_LOCK:
            _SCHEMES[c.domain] = (c.base, c.verify)
    return c


def _checked(domain: str, repository: str, tag: str | None = None) -> Reference:
    """A repository (and tag) a registry listed, checked against the reference grammar before it goes into a
    URL or a dataset row: an :class:`~layerkit.errors.InvalidReference` naming it otherwise."""
    text = f"{domain}/{repository}" + (f":{tag}" if tag is not None else "")
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        raise InvalidReference(f"registry {domain} lists {text!r}, which is not a valid reference: {exc}") from exc
    if (ref.path, ref.tag) != (repository, tag):
        raise InvalidReference(f"registry {domain} lists {text!r}, which is not a valid reference")
    return ref


def images(source: str, platform: str | None = None) -> Iterator[Found]:
    """Every image ``source`` names, in catalog and tag order, each with its manifest and config (or its
    error). Raises only for a source that is not a ``docker://`` reference."""
    scope = parse_source(source)
    want = parse_platform(platform)
    what = f"scan {source.removeprefix(PREFIX)}"
    if scope.ref is not None:
        repos = [scope.repository]
    elif scope.repository is not None:
        repos = [scope.repository]
    else:
        try:
            with _client(scope.domain, None, what) as c:
                repos = catalog(c)
        except (LayerkitError, OSError) as exc:
            yield Found(None, source, "source", error=exc)
            return
    configs: dict[str, bytes] = {}
    lock = threading.Lock()

    def read(client: RegistryClient, ref: Reference) -> Found:
        label = f"{PREFIX}{ref}"
        try:
            m = resolve(client, ref, want)
            digest = m.config["digest"]
            with lock:
                data = configs.get(digest)
            if data is None:
                data = fetch_config(client, ref.path, m.config)
                with lock:
                    configs[digest] = data
            return Found(ref, label, manifest=m, config_bytes=data)
        except (LayerkitError, OSError) as exc:
            return Found(ref, label, "source" if scope.ref is not None else "image", error=exc)

    clients = {repo: _client(scope.domain, repo, what) for repo in repos}  # the first one pings

    def listed(repo: str) -> tuple[str, list[Reference], BaseException | None]:
        if scope.ref is not None:
            return repo, [scope.ref], None
        try:
            _checked(scope.domain, repo)
            return repo, [_checked(scope.domain, repo, t) for t in tags(clients[repo], repo)], None
        except (LayerkitError, OSError) as exc:
            return repo, [], exc

    try:
        with ThreadPoolExecutor(LIST_THREADS) as pool:
            todo: list[tuple[str, Reference]] = []
            for repo, refs, exc in pool.map(listed, repos):  # every tag list at once: names only
                if exc is not None:
                    stage = "repository" if scope.repository is None else "source"
                    yield Found(Reference(scope.domain, repo), f"{PREFIX}{scope.domain}/{repo}", stage, error=exc)
                todo += [(repo, r) for r in refs]
            # then the manifests and configs, a bounded window of them in flight, yielded in order
            pending: deque = deque()
            for repo, ref in todo:
                pending.append(pool.submit(read, clients[repo], ref))
                if len(pending) >= LIST_WINDOW:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        for c in clients.values():
            c.close()


# ---- a worker's side ---------------------------------------------------------------------------------

_CLIENTS: dict[tuple[str, str], RegistryClient] = {}
_CLIENTS_LOCK = threading.Lock()
MAX_CLIENTS = 64  # repositories whose connections a worker keeps open


def _worker_client(domain: str, repository: str) -> RegistryClient:
    key = (domain, repository)
    with _CLIENTS_LOCK:
        c = _CLIENTS.get(key)
        if c is None:
            while len(_CLIENTS) >= MAX_CLIENTS:  # the oldest opened goes
                _CLIENTS.pop(next(iter(_CLIENTS))).close()
            c = _CLIENTS[key] = _client(domain, repository, f"scan {domain}/{repository}")
        return c


def open_blob(domain: str, repository: str, digest: str, size: int) -> BinaryIO:
    """Blob ``digest`` of ``repository`` at registry ``domain``, streamed from the registry (``size``: what
    its descriptor says; the read stops there). The caller checks what it hashes to."""
    return BlobReader(_worker_client(domain, repository), f"/v2/{repository}/blobs/{digest}", size, digest,
                      lambda n: None)


def close_clients() -> None:
    """Close the registry connections this process opened for its tasks."""
    with _CLIENTS_LOCK:
        while _CLIENTS:
            _CLIENTS.popitem()[1].close()
