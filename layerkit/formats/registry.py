"""Pull and push images over the OCI distribution API (v2), with layer dedup, auth and retries.

Pull (:func:`pull`): ``GET /v2/NAME/manifests/REF`` with an ``Accept`` header for OCI indexes and manifests
and Docker manifest lists and schema 2 manifests; an index or list is resolved to one platform (this
machine's by default); a manifest pulled by digest must hash to that digest. The config and the layers
go through :mod:`.importer`: each layer's HTTP body is streamed into a temporary blob and its digest and
length verified before anything becomes visible; the layer's diff_id is checked when the layer is first
indexed (``pull --verify``: at once, with every layer inflated and indexed during the pull). A layer blob the
store already holds is not requested at all (``Already exists``), and the image is recorded all or nothing.
Layers are downloaded concurrently (:func:`pull_workers`), largest first; a failing layer stops the others
and leaves the store as it was. A config the store already holds is read from the store, so pulling an
image the store has moves no blob at all.

Push (:func:`push`): every blob is checked with ``HEAD`` first (``Layer already exists``); a blob known to
live in another repository of the same registry is mounted (``POST .../blobs/uploads/?mount=D&from=REPO``,
``Mounted from REPO``); the rest is uploaded monolithically (``POST`` for an upload session, then one ``PUT
...?digest=D`` streaming the stored file) or, for a blob over :data:`CHUNKED_THRESHOLD` or one the registry
refuses whole (``413``), in chunks (``PATCH`` with ``Content-Range``, resumed from the registry's offset
after a failed chunk, then ``PUT ...?digest=D``); then the manifest is ``PUT`` byte for byte as the store
holds it, so its digest is the image's manifest digest in the store.

Where blobs live is remembered in ``STORE/layerkit/registry.json``, updated after every pull and push::

    {"version": 1,
     "blobs": {"127.0.0.1:5000": {"sha256:...": ["team/app", "team/base"]}},
     "repo_digests": {"sha256:IMAGEID": ["127.0.0.1:5000/team/app@sha256:MANIFEST"]}}

Auth: anonymous, HTTP basic, and the bearer token flow (a ``401`` with ``WWW-Authenticate: Bearer
realm=...,service=...,scope=...`` leads to ``GET realm?service=...&scope=...``, with basic credentials when
:func:`~layerkit.formats.auth.credentials_for` knows some); the registry is pinged first (``GET /v2/``) so
the token is fetched once, before the real requests. No secret is ever printed, logged or put in an error.

Transport: Docker Hub (``docker.io``) is reached at ``registry-1.docker.io``. HTTPS with certificate
verification always, except for localhost / 127.0.0.0/8 / ::1 and with ``insecure=True``, where HTTPS is
tried without verification and plain HTTP is used when the registry does not speak TLS (as Docker treats
insecure registries). Connection errors and 5xx answers are retried with exponential backoff
(:data:`RETRIES` tries); an interrupted blob download resumes with a ``Range`` request. Every failure is
one line naming the operation, the full reference and the registry.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from .. import __version__
from ..engine.blobs import CHUNK
from ..engine.digests import is_digest, sha256_bytes, short
from ..engine.layer import layer_workers, media_type_compression
from ..engine.reference import Reference, parse_docker_ref
from ..engine.store import OCI_INDEX, OCI_MANIFEST, Store, user_reference_error
from ..errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    LayerkitError,
    NotFound,
    UnsupportedMediaType,
)
from .auth import credentials_for, normalize_registry
from .importer import LayerSource, import_image

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
}
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_MANIFEST_LIST}
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

MAX_MANIFEST = 4 << 20  # what containers/image accepts for a manifest
MAX_CONFIG = 16 << 20
RETRIES = 4  # tries per request on connection errors and 5xx answers
BACKOFF = 0.25  # seconds before the second try; doubled for each further one
MAX_BACKOFF = 4.0
TIMEOUT = (10.0, 120.0)  # connect, read (seconds between bytes)
MAX_MOUNT_SOURCES = 3
PUSH_WORKERS = 3  # blobs uploaded at once (Docker: 5); sending releases the GIL
PULL_WORKERS = 4  # at most this many layers ingested at once by pull --verify (Docker: 3, skopeo: 6)
FETCH_WORKERS = 4  # layer blobs a plain pull downloads at once (Docker: 3, skopeo: 6)
CHUNKED_THRESHOLD = 512 << 20  # blobs larger than this are uploaded in chunks (PATCH), smaller ones in one PUT
UPLOAD_CHUNK = 64 << 20  # bytes per PATCH (more when the registry asks for it: OCI-Chunk-Min-Length)
STATE_FILE = "registry.json"
USER_AGENT = f"layerkit/{__version__}"

Progress = Callable[[str, int], None]


# ---- errors ----------------------------------------------------------------------------------

class RegistryError(LayerkitError):
    """A registry could not be reached or answered with an error; the message names it and the reference."""


class RegistryUnreachable(RegistryError):
    """Connection refused, DNS failure, timeout, or a TLS problem."""


class RegistryAuthError(RegistryError):
    """401 or 403: authentication required, credentials refused, or access denied."""


class ManifestNotFound(RegistryError, NotFound):
    """The registry has no such tag, digest or repository."""


class PlatformNotFound(RegistryError, NotFound):
    """An image index holds no manifest for the asked platform."""


# ---- results -----------------------------------------------------------------------------------

@dataclass
class LayerTransfer:
    """What happened to one layer blob.

    ``action`` is, for a pull, ``Already exists`` or ``Pull complete``; for a push, ``Layer already
    exists``, ``Mounted from REPO`` or ``Pushed``. ``size`` is the blob's size in bytes.
    """

    digest: str
    size: int
    action: str


@dataclass
class TransferResult:
    """The outcome of a pull or push.

    ``digest`` is the manifest digest on the registry (for a pull by tag of a multi-platform image, the
    index's digest, as Docker prints it). ``transferred_bytes`` counts the layer bytes that went over the
    wire, ``skipped_bytes`` those of the layers that did not have to (present, or mounted); manifests and
    configs are not counted.
    """

    reference: str
    digest: str
    image_id: str
    layers: list[LayerTransfer] = field(default_factory=list)
    transferred_bytes: int = 0
    skipped_bytes: int = 0
    registry: str = ""
    platform: str | None = None
    kind: str = ""  # "pull" or "push"
    manifest_size: int = 0
    up_to_date: bool = False  # pull: the tag already named this image

    def to_json(self) -> dict:
        """JSON-ready form (snake_case keys, sizes in bytes)."""
        return {"kind": self.kind, "reference": self.reference, "digest": self.digest, "image_id": self.image_id,
                "registry": self.registry, "platform": self.platform,
                "transferred_bytes": self.transferred_bytes, "skipped_bytes": self.skipped_bytes,
                "layers": [{"digest": la.digest, "size": la.size, "action": la.action} for la in self.layers]}

    def lines(self) -> list[str]:
        """What ``docker pull`` / ``docker push`` print for this transfer (after the progress bars)."""
        ref = parse_docker_ref(self.reference)
        if self.kind == "push":
            out = [f"The push refers to repository [{ref.repository}]"]
            out += [f"{short(la.digest)}: {la.action}" for la in reversed(self.layers)]
            out.append(f"{ref.tag}: digest: {self.digest} size: {self.manifest_size}")
            return out
        out = [f"{ref.tag or ref.digest}: Pulling from {ref.path}"]
        out += [f"{short(la.digest)}: {la.action}" for la in self.layers]
        out.append(f"Digest: {self.digest}")
        status = "Image is up to date for" if self.up_to_date else "Downloaded newer image for"
        out.append(f"Status: {status} {self.reference}")
        return out


# ---- small helpers --------------------------------------------------------------------------------

def endpoint_host(domain: str) -> str:
    """The host serving a registry's API: ``registry-1.docker.io`` for ``docker.io``."""
    return "registry-1.docker.io" if normalize_registry(domain) == "docker.io" else domain


def is_localhost(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP is allowed there."""
    name = (urlsplit("//" + host).hostname or "").lower()
    return name in ("localhost", "::1") or name.startswith("127.")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PARAM_RE = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str | None) -> tuple[str, dict[str, str]] | None:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` -> (``bearer``, {realm, service, ...})."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def _registry_message(resp: requests.Response) -> str:
    """``STATUS REASON``, plus the registry's own error text (``{"errors": [{"code", "message"}]}``)."""
    status = f"{resp.status_code} {resp.reason or ''}".strip()
    text = _error_text(resp)
    return f"{status}: {text}" if text else status


def _error_text(resp: requests.Response) -> str:
    try:
        data = json.loads(resp.content[:65536]) if resp.request.method != "HEAD" else None
    except (ValueError, requests.RequestException):
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
        parts = []
        for e in data["errors"][:3]:
            if isinstance(e, dict):
                msg = e.get("message") or e.get("code") or ""
                parts.append(str(msg))
        if any(parts):
            return _one_line("; ".join(p for p in parts if p), 200)
    return ""


def _add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _cause_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        todo.extend([e.__cause__, e.__context__])
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return out


class _TLSFailure(Exception):
    """The TLS handshake failed (the server may speak plain HTTP)."""


# ---- the client -----------------------------------------------------------------------------------

class RegistryClient:
    """One registry, one operation: scheme discovery, auth, retries, and error messages.

    ``what`` (e.g. ``pull 127.0.0.1:5000/app:v1``) starts every error message. ``scopes`` are the token
    scopes asked for when the registry uses bearer tokens (``repository:NAME:pull,push``).
    """

    def __init__(self, domain: str, what: str, *, insecure: bool = False,
                 credentials: tuple[str, str] | None = None, lookup_credentials: bool = True,
                 scopes: list[str] | None = None) -> None:
        self.domain = normalize_registry(domain)
        self.host = endpoint_host(self.domain)
        self.what = what
        self.insecure = insecure
        if credentials is None and lookup_credentials:
            credentials = credentials_for(self.domain)
        self._credentials = credentials
        self.scopes = list(scopes or [])
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if is_localhost(self.host):
            self.session.trust_env = False  # no proxy for a registry on this machine
        self.base: str | None = None
        self.verify = True
        self._auth: str | None = None
        self._tokens: dict[tuple, str] = {}
        self.sleep = time.sleep

    def close(self) -> None:
        """Release the connections."""
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def has_credentials(self) -> bool:
        """True when a user name and password are known for this registry."""
        return self._credentials is not None

    # -- sending, with retries --

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(BACKOFF * (2 ** attempt), MAX_BACKOFF))

    def _unreachable(self, exc: BaseException, host: str) -> RegistryUnreachable:
        chain = _cause_chain(exc)
        names = " ".join(type(e).__name__ for e in chain)
        text = " ".join(str(e) for e in chain)
        if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolution" in names \
                or "Name or service not known" in text or "Temporary failure in name resolution" in text:
            err = RegistryUnreachable(f"{self.what}: cannot resolve the registry host {host} (DNS lookup failed)")
            err.permanent = True
            return err
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
            return RegistryUnreachable(f"{self.what}: cannot connect to registry {host}: connection refused")
        if isinstance(exc, requests.Timeout) or "timed out" in text:
            return RegistryUnreachable(f"{self.what}: registry {host} timed out")
        return RegistryUnreachable(f"{self.what}: cannot connect to registry {host} ({_one_line(exc, 160)})")

    def send(self, method: str, url: str, *, headers: dict | None = None, body=None, stream: bool = False,
             retry: bool = True) -> requests.Response:
        """One HTTP request with retries on connection errors and 5xx (no registry auth handling).

        ``body`` may be a callable returning a fresh body for each try (a file being uploaded).
        """
        tries = RETRIES if retry else 1
        host = urlsplit(url).netloc
        for attempt in range(tries):
            data = body() if callable(body) else body
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    resp = self.session.request(method, url, headers=headers, data=data, stream=stream,
                                                timeout=TIMEOUT, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                raise _TLSFailure(_one_line(exc, 160)) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                err = self._unreachable(exc, host)
                if getattr(err, "permanent", False) or attempt == tries - 1:
                    raise err from None
                self._backoff(attempt)
                continue
            finally:
                if data is not None and hasattr(data, "close"):
                    data.close()
            if resp.status_code >= 500 and resp.status_code not in (501, 505) and attempt < tries - 1:
                resp.close()
                self._backoff(attempt)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    # -- scheme discovery and auth --

    def ping(self) -> None:
        """``GET /v2/``: choose the scheme, and answer an auth challenge before the real requests."""
        if self.base is not None:
            return
        plain_ok = self.insecure or is_localhost(self.host)
        options = [("https", not plain_ok)] + ([("http", True)] if plain_ok else [])
        resp = None
        for i, (scheme, verify) in enumerate(options):
            self.verify = verify
            try:
                resp = self.send("GET", f"{scheme}://{self.host}/v2/")
            except _TLSFailure as exc:
                if i + 1 < len(options):
                    continue
                raise RegistryUnreachable(
                    f"{self.what}: TLS with registry {self.host} failed ({exc}); plain HTTP is used only for "
                    f"localhost or with --insecure") from None
            self.base = f"{scheme}://{self.host}"
            break
        assert resp is not None
        with contextlib.closing(resp):
            if resp.status_code == 401:
                self._answer(resp)
            elif resp.status_code == 404:
                raise RegistryError(f"{self.what}: {self.host} does not serve the registry API v2 (/v2/ gives 404)")
            elif resp.status_code >= 400:
                raise self.error_for(resp)

    def _answer(self, resp: requests.Response) -> bool:
        """Act on a 401's challenge; True when there is a new way to authenticate worth a retry."""
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate"))
        if challenge is None:
            return False
        scheme, params = challenge
        if scheme == "bearer":
            scopes = list(self.scopes)
            for s in (params.get("scope") or "").split():
                if s not in scopes:
                    scopes.append(s)
            key = (params.get("realm"), params.get("service"), tuple(scopes))
            if self._auth is not None and self._tokens.get(key) and self._auth == "Bearer " + self._tokens[key]:
                del self._tokens[key]  # refused although it was for these scopes: expired, fetch a new one
            new = "Bearer " + self._token(params, scopes)
        elif scheme == "basic" and self._credentials is not None:
            new = self._basic()
        else:
            return False
        if new == self._auth:
            return False
        self._auth = new
        return True

    def _basic(self) -> str:
        """The basic Authorization value (UTF-8, as Docker encodes it; requests would use Latin-1)."""
        user, password = self._credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _token(self, params: dict[str, str], scopes: list[str]) -> str:
        realm = params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise RegistryAuthError(f"{self.what}: registry {self.domain} asks for a bearer token without a "
                                    f"usable realm")
        key = (realm, params.get("service"), tuple(scopes))
        if key in self._tokens:
            return self._tokens[key]
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in scopes]
        headers = {}
        if self._credentials is not None:
            query.append(("account", self._credentials[0]))
            headers["Authorization"] = self._basic()
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        try:
            resp = self.send("GET", url, headers=headers)
        except _TLSFailure as exc:
            raise RegistryUnreachable(f"{self.what}: TLS with the token server of {self.domain} failed ({exc})"
                                      ) from None
        with contextlib.closing(resp):
            if resp.status_code in (401, 403):
                raise RegistryAuthError(
                    f"{self.what}: registry {self.domain} refused the "
                    f"{'credentials' if headers else 'anonymous access'} (token server answered "
                    f"{resp.status_code}){self._login_hint()}")
            if resp.status_code != 200:
                raise RegistryError(f"{self.what}: the token server of registry {self.domain} answered "
                                    f"{resp.status_code} {resp.reason or ''}".rstrip())
            try:
                data = resp.json()
            except ValueError:
                data = None
        token = None
        if isinstance(data, dict):
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"{self.what}: the token server of registry {self.domain} gave no token")
        self._tokens[key] = token
        return token

    def _login_hint(self) -> str:
        if self._credentials is None:
            return f"; log in first: layerkit login {self.domain}"
        return "; check the user name and password (layerkit login)"

    def request(self, method: str, path: str, *, headers: dict | None = None, body=None, stream: bool = False,
                retry: bool = True) -> requests.Response:
        """A registry API request (``path`` below the base URL, or an absolute URL), with auth and retries."""
        self.ping()
        url = path if path.startswith(("http://", "https://")) else self.base + path
        for attempt in range(2):
            h = dict(headers or {})
            if self._auth:
                h["Authorization"] = self._auth
            try:
                resp = self.send(method, url, headers=h, body=body, stream=stream, retry=retry)
            except _TLSFailure as exc:
                raise RegistryUnreachable(f"{self.what}: TLS with registry {self.host} failed ({exc})") from None
            if resp.status_code == 401 and attempt == 0 and self._answer(resp):
                resp.close()
                continue
            return resp
        return resp

    def error_for(self, resp: requests.Response, not_found: str | None = None) -> RegistryError:
        """The error for an unexpected answer, naming the operation, the reference and the registry."""
        code = resp.status_code
        msg = _registry_message(resp)
        resp.close()
        where = f"registry {self.domain}"
        if code == 401:
            return RegistryAuthError(f"{self.what}: unauthorized: authentication required by {where} "
                                     f"({msg}){self._login_hint()}")
        if code == 403:
            return RegistryAuthError(f"{self.what}: denied by {where} ({msg})")
        if code == 404 and not_found:
            return ManifestNotFound(f"{self.what}: {not_found} ({msg})")
        if code == 404:
            return RegistryError(f"{self.what}: {where} answered 404 ({msg})")
        if code >= 500:
            return RegistryError(f"{self.what}: {where} answered {msg} (after {RETRIES} tries)")
        return RegistryError(f"{self.what}: {where} answered {msg}")

    def read_small(self, resp: requests.Response, limit: int, what: str) -> bytes:
        """Read a JSON document's body, refusing one larger than ``limit``."""
        with contextlib.closing(resp):
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise InvalidManifest(f"{self.what}: {what} is too large ({declared} bytes, at most {limit})")
            buf = bytearray()
            try:
                for chunk in resp.iter_content(65536):
                    buf += chunk
                    if len(buf) > limit:
                        raise InvalidManifest(f"{self.what}: {what} is too large (more than {limit} bytes)")
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise RegistryUnreachable(f"{self.what}: reading {what} from registry {self.domain} failed "
                                          f"({_one_line(exc, 160)})") from None
        return bytes(buf)


# ---- streaming a blob down, and up --------------------------------------------------------------------

class _BlobReader(io.RawIOBase):
    """A blob's HTTP body as a file; an interrupted transfer resumes with a ``Range`` request."""

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
        for attempt in range(RETRIES):
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
                if attempt == RETRIES - 1:
                    raise RegistryUnreachable(
                        f"{self._client.what}: downloading blob {self._digest} from registry "
                        f"{self._client.domain} failed after {RETRIES} tries ({_one_line(exc, 160)})") from None
                self._client._backoff(attempt)
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


class _FileBody:
    """``size`` bytes of a stored blob from ``offset`` on as a request body: a known length, read in large
    chunks, counted as it goes."""

    def __init__(self, path: os.PathLike, size: int, on_bytes: Callable[[int], None], offset: int = 0) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close(), which send() calls
        if offset:
            self._f.seek(offset)
        self._size = size
        self._left = size
        self._on_bytes = on_bytes

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(min(CHUNK, self._left)) if self._left > 0 else b""
        if data:
            self._left -= len(data)
            self._on_bytes(len(data))
        return data

    def close(self) -> None:
        self._f.close()


# ---- remembering where blobs live --------------------------------------------------------------------

def _state_path(store: Store):
    return store.meta_dir / STATE_FILE


def read_state(store: Store) -> dict:
    """``registry.json`` (see the module docstring); an empty state when missing or unreadable."""
    try:
        with open(_state_path(store)) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = {}
    data.setdefault("version", 1)
    if not isinstance(data.get("blobs"), dict):
        data["blobs"] = {}
    if not isinstance(data.get("repo_digests"), dict):
        data["repo_digests"] = {}
    return data


def _record(store: Store, domain: str, repo: str, blob_digests: list[str], image_id: str, repo_digest: str
            ) -> None:
    """Note that ``repo`` on ``domain`` holds these blobs, and the image's repo digest there."""
    with store.locked():
        state = read_state(store)
        reg = state["blobs"].setdefault(domain, {})
        for d in dict.fromkeys(blob_digests):
            repos = [r for r in reg.get(d, []) if r != repo]
            reg[d] = (repos + [repo])[-16:]  # most recent last
        digests = [x for x in state["repo_digests"].get(image_id, []) if x.rpartition("@")[0] !=
                   repo_digest.rpartition("@")[0]]
        state["repo_digests"][image_id] = digests + [repo_digest]
        path = _state_path(store)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def repo_digests(store: Store, image_id: str) -> list[str]:
    """``REGISTRY/REPO@sha256:...`` for every registry repository this image was pulled from or pushed to."""
    return list(read_state(store)["repo_digests"].get(image_id, []))


def image_for_repo_digest(store: Store, reference: str) -> str | None:
    """The ID of the stored image a ``NAME@DIGEST`` reference was pulled or pushed as, if any."""
    try:
        ref = parse_docker_ref(reference)
    except InvalidReference:
        return None
    if not ref.digest:
        return None
    wanted = f"{ref.repository}@{ref.digest}"
    for image_id, digests in read_state(store)["repo_digests"].items():
        if wanted in digests:
            return image_id
    return None


# ---- pull ------------------------------------------------------------------------------------------

def pull_workers(verify: bool = True) -> int:
    """How many layers a pull brings in at once.

    A plain pull only fetches blobs and hashes them: it waits on the network and the disk, so it runs
    :data:`FETCH_WORKERS` downloads at once whatever the cores (on 2 cores the registry benchmark's image
    took 0.75 s with 2, 0.55 s with 3, 0.54 s with 4 and 0.55 s with 6). ``pull --verify`` also inflates,
    hashes and indexes each tar, which is CPU-bound: :func:`~layerkit.engine.layer.layer_workers`, at most
    :data:`PULL_WORKERS` (on 2 cores, 2 workers were as fast as 3, about 10 % faster than 4 and 1.8 times
    as fast as 1; benchmarks/README.md)."""
    return FETCH_WORKERS if not verify else layer_workers(PULL_WORKERS)


def _parse_ref(text: str, verb: str) -> Reference:
    try:
        return parse_docker_ref(text)
    except InvalidReference as exc:
        raise InvalidReference(f"{verb}: {user_reference_error(text, exc)}") from None


def parse_platform(text: str | None) -> tuple[str, str, str | None]:
    """``os/arch[/variant]`` (default: this machine's) -> (os, arch, variant)."""
    if not text:
        from .oci import host_platform

        os_, arch = host_platform()
        return os_, arch, None
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _platform_str(p: dict) -> str:
    s = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


_DEFAULT_VARIANT = {"arm64": "v8"}


def _choose_platform(index: dict, want: tuple[str, str, str | None], what: str, idigest: str) -> dict:
    """The descriptor of the manifest for ``want`` in an image index (Docker's matching rules, simplified)."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidManifest(f"{what}: index {idigest} lacks manifests")
    os_, arch, variant = want
    matches = []
    for d in entries:
        p = d.get("platform") if isinstance(d, dict) else None
        if not isinstance(p, dict) or p.get("os") != os_ or p.get("architecture") != arch:
            continue
        have = p.get("variant") or _DEFAULT_VARIANT.get(arch)
        if variant is not None and have != (variant or _DEFAULT_VARIANT.get(arch)):
            continue
        matches.append(d)
    if not matches:
        avail = sorted({_platform_str(d.get("platform") or {}) for d in entries if isinstance(d, dict)})
        want_s = f"{os_}/{arch}" + (f"/{variant}" if variant else "")
        raise PlatformNotFound(f"{what}: no manifest for platform {want_s} in index {idigest} "
                               f"(it has: {', '.join(avail) or 'none'})")
    # without an asked variant, prefer the default one (arm64/v8) or none, as Docker does
    if variant is None:
        matches.sort(key=lambda d: (d["platform"].get("variant") or _DEFAULT_VARIANT.get(arch)) !=
                     _DEFAULT_VARIANT.get(arch))
    return matches[0]


def _descriptor(d: object, what: str, where: str) -> dict:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not is_digest(d["digest"]):
        raise InvalidManifest(f"{what}: {where} lacks a valid sha256 digest")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{what}: {where} {d['digest']} lacks a valid size")
    if not isinstance(d.get("mediaType", ""), str):
        raise InvalidManifest(f"{what}: {where} {d['digest']} has an invalid mediaType")
    return d


def _media_type(header: str, doc: dict) -> str:
    """The manifest's media type: the document's own field, else Content-Type, else guessed from its keys."""
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    header = header.split(";")[0].strip()
    if header in MANIFEST_TYPES | INDEX_TYPES | DOCKER_SCHEMA1:
        return header
    if doc.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return header or "unknown"


def _get_manifest(client: RegistryClient, ref: Reference, reference: str, verify_digest: str | None
                  ) -> tuple[bytes, dict, str, str]:
    """GET a manifest or index by tag or digest: (bytes, parsed JSON, media type, digest)."""
    what = client.what
    kind = "digest" if is_digest(reference) else "tag"
    resp = client.request("GET", f"/v2/{ref.path}/manifests/{reference}", headers={"Accept": ACCEPT},
                          stream=True)
    if resp.status_code != 200:
        raise client.error_for(resp, not_found=f"manifest unknown: registry {client.domain} has no {kind} "
                                               f"{reference} in repository {ref.path}")
    ctype = resp.headers.get("Content-Type", "")
    data = client.read_small(resp, MAX_MANIFEST, "manifest")
    digest = sha256_bytes(data)
    if verify_digest and digest != verify_digest:
        raise DigestMismatch(f"{what}: manifest from registry {client.domain} hashes to {digest}, "
                             f"expected {verify_digest}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidManifest(f"{what}: manifest {reference} from registry {client.domain} is not valid JSON "
                              f"({_one_line(exc, 120)})") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{what}: manifest {reference} from registry {client.domain} is not a JSON object")
    return data, doc, _media_type(ctype, doc), digest


def _get_config(store: Store, client: RegistryClient, repo: str, desc: dict) -> bytes:
    """The config blob: from the store when it is already there (no transfer), else from the registry."""
    digest = desc["digest"]
    if store.blobs.has(digest):
        return store.blobs.read_bytes(digest)
    if desc["size"] > MAX_CONFIG:
        raise InvalidManifest(f"{client.what}: config {digest} is too large ({desc['size']} bytes)")
    resp = client.request("GET", f"/v2/{repo}/blobs/{digest}", stream=True)
    if resp.status_code != 200:
        raise client.error_for(resp, not_found=f"registry {client.domain} has no config blob {digest} in "
                                               f"repository {repo}")
    data = client.read_small(resp, MAX_CONFIG, f"config {digest}")
    _check_size(client.what, "config", desc, data)
    got = sha256_bytes(data)
    if got != digest:
        raise DigestMismatch(f"{client.what}: config blob {digest} from registry {client.domain} hashes to {got}")
    return data


def _check_size(what: str, kind: str, desc: dict, data: bytes) -> None:
    """A manifest or config whose length is not its descriptor's size is not trusted (image spec,
    descriptor.md); layers are checked as they stream (their size is the read limit)."""
    if len(data) != desc["size"]:
        raise InvalidManifest(f"{what}: {kind} {desc['digest']} has {len(data)} bytes, but its descriptor says "
                              f"{desc['size']}")


def pull(store: Store, ref: str, platform: str | None = None, insecure: bool = False,
         progress: Progress | None = None, verify: bool = False) -> TransferResult:
    """Pull ``ref`` (``[REGISTRY/]NAME[:TAG|@DIGEST]``) into the store and tag it with the full reference.

    ``platform`` (``os/arch[/variant]``) picks from a multi-platform image (default: this machine's).
    ``progress(message, nbytes)`` is called as layer bytes arrive (``"<12 hex>: Downloading"``) and once per
    layer at the end (``Already exists`` / ``Pull complete``, 0 bytes). A pull by digest records the
    image under ``NAME@DIGEST``. Every blob is checked against its digest before it enters the store;
    with ``verify`` each layer is also inflated, its diff_id checked and its index made during the pull,
    otherwise that happens when the layer is first used (see :func:`~layerkit.engine.layer.fetch_layer`).
    Raises a :class:`RegistryError` subclass, :class:`DigestMismatch`,
    :class:`InvalidManifest` or :class:`UnsupportedMediaType`, each one line naming the reference and the
    registry; the store is then unchanged.
    """
    r = _parse_ref(ref, "pull")
    what = f"pull {r}"
    want = parse_platform(platform)
    client = RegistryClient(r.domain, what, insecure=insecure, scopes=[f"repository:{r.path}:pull"])
    emit = progress or (lambda message, nbytes: None)
    with client:
        data, doc, mtype, top_digest = _get_manifest(client, r, r.digest or r.tag, r.digest)
        top_data = data
        chosen = None
        digest = top_digest
        for _ in range(4):
            if mtype not in INDEX_TYPES:
                break
            d = _choose_platform(doc, want, what, digest)
            _descriptor(d, what, f"index {digest} entry")
            chosen = _platform_str(d["platform"])
            data, doc, mtype, digest = _get_manifest(client, r, d["digest"], d["digest"])
            _check_size(what, "manifest", d, data)
        if mtype in DOCKER_SCHEMA1:
            raise UnsupportedMediaType(f"{what}: registry {client.domain} serves a Docker schema 1 manifest, "
                                       f"which layerkit does not support")
        if mtype not in MANIFEST_TYPES:
            raise UnsupportedMediaType(f"{what}: unsupported manifest media type {mtype!r} from registry "
                                       f"{client.domain}")
        cdesc = _descriptor(doc.get("config"), what, f"manifest {digest} config")
        layer_descs = doc.get("layers")
        if not isinstance(layer_descs, list):
            raise InvalidManifest(f"{what}: manifest {digest} lacks layers")
        layer_descs = [_descriptor(ld, what, f"manifest {digest} layer") for ld in layer_descs]
        for ld in layer_descs:
            try:
                media_type_compression(ld.get("mediaType", ""))
            except UnsupportedMediaType as exc:
                raise UnsupportedMediaType(f"{what}: layer {ld['digest']}: {exc}") from None
        config_bytes = _get_config(store, client, r.path, cdesc)

        moved = {"bytes": 0}
        opened: set[str] = set()
        lock = threading.Lock()  # layers arrive on several threads; progress is called one at a time

        def source(ld: dict) -> LayerSource:
            dg, size = ld["digest"], ld["size"]

            def on_bytes(n: int) -> None:
                with lock:
                    moved["bytes"] += n
                    emit(f"{short(dg)}: Downloading", n)

            def open_blob() -> _BlobReader:
                with lock:
                    opened.add(dg)
                return _BlobReader(client, f"/v2/{r.path}/blobs/{dg}", size, dg, on_bytes)

            return LayerSource(open=open_blob, label=f"{what}: layer {dg} from registry {client.domain}",
                               size=size, digest=dg)

        diff_to_digest = {}
        try:
            cfg = json.loads(config_bytes)
            diff_to_digest = dict(zip([d[7:19] for d in cfg["rootfs"]["diff_ids"]],
                                      [ld["digest"] for ld in layer_descs], strict=False))
        except (ValueError, KeyError, TypeError, RecursionError):
            pass  # the importer refuses a bad config with its own message

        def relay(message: str, nbytes: int) -> None:
            head, _, tail = message.partition(": ")
            dg = diff_to_digest.get(head)
            if dg is None:
                return
            with lock:
                emit(f"{short(dg)}: {'Already exists' if tail == 'Already exists' else 'Pull complete'}", 0)

        tags = [Reference(r.domain, r.path, r.tag, None)] if not r.digest else [r]
        up_to_date = any(t.normalized == tags[0].normalized for img in store.images() if img.id == cdesc["digest"]
                         for t in img.tags)
        image, _ = import_image(store, config_bytes, [source(ld) for ld in layer_descs], tags, what,
                                expected_id=cdesc["digest"], progress=relay, manifest_bytes=data,
                                workers=pull_workers(verify), index_now=verify)
    layers = [LayerTransfer(ld["digest"], ld["size"], "Pull complete" if ld["digest"] in opened
                            else "Already exists") for ld in layer_descs]
    skipped = sum(la.size for la in layers if la.action == "Already exists")
    repo_digest = f"{r.repository}@{top_digest}"
    _record(store, r.domain, r.path, [cdesc["digest"]] + [ld["digest"] for ld in layer_descs], image.id,
            repo_digest)
    return TransferResult(str(r), top_digest, image.id, layers, moved["bytes"], skipped, client.domain, chosen,
                          "pull", len(top_data), up_to_date)


# ---- push ------------------------------------------------------------------------------------------

def _cancel_upload(client: RegistryClient, url: str) -> None:
    """``DELETE`` an abandoned upload session, as the spec asks of clients; failures are ignored (the
    registry drops stale sessions on its own)."""
    try:
        client.request("DELETE", url, retry=False).close()
    except RegistryError:
        pass


_RANGE_RE = re.compile(r"^(?:bytes=)?0-(-?\d+)$")


def _upload_offset(client: RegistryClient, url: str) -> tuple[int, str] | requests.Response:
    """Where an upload session stands (``GET`` on it: ``204`` with ``Range: 0-LAST``): (bytes received,
    the session's URL), or the registry's unexpected answer."""
    resp = client.request("GET", url)
    m = _RANGE_RE.match(resp.headers.get("Range", "").strip())
    if resp.status_code not in (200, 204) or not m:
        return resp
    resp.close()
    return int(m.group(1)) + 1, urljoin(url, resp.headers.get("Location") or url)


def _send_chunks(client: RegistryClient, url: str, path: os.PathLike, size: int, digest: str, chunk: int,
                 on_bytes: Callable[[int], None]) -> requests.Response:
    """Upload a blob to the session at ``url`` in chunks (OCI distribution spec, "Pushing a blob in chunks").

    Each ``PATCH`` carries ``chunk`` bytes with ``Content-Range: FIRST-LAST`` (inclusive) and answers ``202``
    with the session's next ``Location``; a closing ``PUT ...?digest=D`` with no body ends the session.
    A chunk that fails (connection error, 5xx, or ``416`` for a range the registry did not expect) is sent
    again from the offset the registry reports, up to :data:`RETRIES` times in all. Returns the closing
    ``PUT``'s response, or the first answer that is neither success nor worth a retry."""
    offset = 0
    failures = 0
    while offset < size:
        n = min(chunk, size - offset)
        try:
            resp = client.request("PATCH", url, headers={"Content-Type": "application/octet-stream",
                                                         "Content-Range": f"{offset}-{offset + n - 1}"},
                                  body=lambda o=offset, k=n: _FileBody(path, k, on_bytes, offset=o), retry=False)
        except RegistryUnreachable:
            failures += 1
            if failures >= RETRIES:
                raise
            resp = None
        if resp is not None and resp.status_code == 202:
            url = urljoin(url, resp.headers.get("Location") or url)
            resp.close()
            offset += n
            continue
        if resp is not None:
            failures += 1
            if (resp.status_code != 416 and resp.status_code < 500) or failures >= RETRIES:
                return resp
            resp.close()
        client._backoff(failures - 1)
        status = _upload_offset(client, url)
        if isinstance(status, requests.Response):
            return status
        offset, url = status
        if offset > size:
            raise RegistryError(f"{client.what}: registry {client.domain} reports {offset} bytes received of "
                                f"blob {digest}, which has {size}")
    return client.request("PUT", _add_query(url, digest=digest))


def _push_blob(client: RegistryClient, store: Store, repo: str, digest: str, size: int, sources: list[str],
               emit: Progress) -> tuple[str, int]:
    """HEAD, else mount, else upload one blob; returns (action, bytes sent).

    The upload is one ``PUT`` of the whole blob, or, for a blob larger than :data:`CHUNKED_THRESHOLD` or
    when the registry refuses the whole blob in one request (``413``), ``PATCH`` requests of
    :data:`UPLOAD_CHUNK` bytes closed by a ``PUT`` (:func:`_send_chunks`). A failed upload (connection
    error, 5xx) is tried again in a new upload session."""
    min_chunk = ""
    resp = client.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    resp.close()
    if resp.status_code == 200:
        return "Layer already exists", 0
    if resp.status_code != 404:
        raise client.error_for(resp)
    location = None
    for src in sources[:MAX_MOUNT_SOURCES]:
        resp = client.request("POST", f"/v2/{repo}/blobs/uploads/?" + urlencode({"mount": digest, "from": src}))
        if resp.status_code == 201:
            resp.close()
            return f"Mounted from {src}", 0
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
    except FileNotFoundError:
        raise LayerkitError(f"{client.what}: blob {digest} is missing from the store") from None
    sent = {"n": 0}

    def on_bytes(n: int) -> None:
        sent["n"] += n
        emit(f"{short(digest)}: Pushing", n)

    chunked = size > CHUNKED_THRESHOLD
    for attempt in range(RETRIES):
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
                resp = _send_chunks(client, url, path, size, digest, chunk, on_bytes)
            else:
                resp = client.request("PUT", _add_query(url, digest=digest),
                                      headers={"Content-Type": "application/octet-stream"},
                                      body=lambda: _FileBody(path, size, on_bytes), retry=False)
        except RegistryUnreachable:
            if attempt == RETRIES - 1:
                raise
            resp = None
        if resp is not None and resp.status_code in (201, 204):
            got = resp.headers.get("Docker-Content-Digest")
            resp.close()
            if got and got != digest:
                raise DigestMismatch(f"{client.what}: registry {client.domain} stored blob {digest} as {got}")
            return "Pushed", size
        if resp is not None and resp.status_code == 413 and not chunked and attempt < RETRIES - 1:
            resp.close()  # too large for one request (a proxy's body limit, say): send it in chunks
            _cancel_upload(client, url)
            chunked = True
            continue
        if resp is not None and (resp.status_code < 500 or attempt == RETRIES - 1):
            raise client.error_for(resp)
        if resp is not None:
            resp.close()
        _cancel_upload(client, url)
        client._backoff(attempt)  # then a new upload session
    raise AssertionError("unreachable")  # pragma: no cover


def push(store: Store, image: str, ref: str | None = None, insecure: bool = False,
         progress: Progress | None = None) -> TransferResult:
    """Push the stored image ``image`` to ``ref`` (default: ``image`` itself, which must be a tag of it).

    Blobs the repository has are skipped (``Layer already exists``), blobs layerkit saw in another
    repository of the same registry are mounted (``Mounted from REPO``), the rest are uploaded
    (``Pushed``); then the manifest is PUT as stored, so the returned digest is the image's manifest
    digest. ``progress(message, nbytes)`` is called as bytes leave (``"<12 hex>: Pushing"``) and once per
    layer with its outcome (0 bytes).
    """
    img = store.image(image)
    r = _parse_ref(ref if ref is not None else image, "push")
    if r.digest:
        raise InvalidReference(f"push: cannot push to a digest reference ({ref or image}); give a tag")
    if ref is None and not any(t.normalized == r.normalized for t in img.tags):
        raise ImageNotFound(f"push {image}: no such tag in the store; give the reference to push to "
                            f"(push IMAGE REGISTRY/NAME:TAG)")
    what = f"push {r}"
    emit = progress or (lambda message, nbytes: None)
    mbytes = store.blobs.read_bytes(img.manifest_digest)
    manifest = json.loads(mbytes)
    mtype = manifest.get("mediaType") or OCI_MANIFEST
    cdesc = manifest["config"]
    layer_descs = manifest.get("layers", [])
    domain = normalize_registry(r.domain)
    known = read_state(store)["blobs"].get(domain, {})

    def sources(digest: str) -> list[str]:
        return [x for x in reversed(known.get(digest, [])) if x != r.path]

    from_repos: list[str] = []
    for d in [ld["digest"] for ld in layer_descs] + [cdesc["digest"]]:
        for x in sources(d)[:MAX_MOUNT_SOURCES]:
            if x not in from_repos:
                from_repos.append(x)
    scopes = [f"repository:{r.path}:pull,push"] + [f"repository:{x}:pull" for x in from_repos[:8]]
    lock = threading.Lock()

    def emit_locked(message: str, nbytes: int) -> None:
        with lock:
            emit(message, nbytes)

    # each distinct blob once (a layer repeated in the image is sent once), layers first, config last
    jobs: dict[str, int] = {}
    for ld in layer_descs:
        jobs.setdefault(ld["digest"], int(ld.get("size", 0)))
    layer_digests = set(jobs)
    jobs.setdefault(cdesc["digest"], int(cdesc.get("size", 0)))
    with RegistryClient(r.domain, what, insecure=insecure, scopes=scopes) as client:
        client.ping()  # scheme and token once, before the workers start

        def one(dg: str) -> str:
            action, _ = _push_blob(client, store, r.path, dg, jobs[dg], sources(dg),
                                   emit_locked if dg in layer_digests else (lambda message, nbytes: None))
            if dg in layer_digests:
                emit_locked(f"{short(dg)}: {action}", 0)
            return action

        with ThreadPoolExecutor(max_workers=PUSH_WORKERS) as pool:
            futures = {dg: pool.submit(one, dg) for dg in jobs}
            try:
                actions = {dg: f.result() for dg, f in futures.items()}
            except BaseException:
                for f in futures.values():
                    f.cancel()
                raise
        layers: list[LayerTransfer] = []
        seen: set[str] = set()
        for ld in layer_descs:
            dg = ld["digest"]
            # the same blob twice in one image: sent once, the second one already exists
            layers.append(LayerTransfer(dg, int(ld.get("size", 0)),
                                        actions[dg] if dg not in seen else "Layer already exists"))
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
    sent = sum(la.size for la in layers if la.action == "Pushed")
    skipped = sum(la.size for la in layers if la.action != "Pushed")
    _record(store, domain, r.path, [cdesc["digest"]] + [ld["digest"] for ld in layer_descs], img.id,
            f"{r.repository}@{img.manifest_digest}")
    return TransferResult(str(r), img.manifest_digest, img.id, layers, sent, skipped, domain, None, "push",
                          len(mbytes))


# ---- login -----------------------------------------------------------------------------------------

def check_login(registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Verify credentials: ``GET /v2/`` through the registry's auth flow (basic or bearer) must give 200."""
    domain = normalize_registry(registry)
    with RegistryClient(domain, f"login {domain}", insecure=insecure, credentials=(username, password),
                        lookup_credentials=False) as client:
        resp = client.request("GET", "/v2/")
        with contextlib.closing(resp):
            if resp.status_code in (401, 403):
                raise RegistryAuthError(f"login {domain}: unauthorized: incorrect username or password")
            if resp.status_code != 200:
                raise client.error_for(resp)
