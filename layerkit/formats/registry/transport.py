"""The HTTP client of one registry operation: where the registry is, how to talk to it, and retries.

* Where: a registry is named as references name it (:func:`normalize_registry`: ``docker.io`` for Docker
  Hub, else ``host[:port]`` in lower case); Docker Hub is served at ``registry-1.docker.io``, every other
  registry at its own ``host[:port]`` (:func:`endpoint_host`).
* Scheme (:meth:`RegistryClient.ping`, ``GET /v2/`` before the real requests, as go-containerregistry's
  ``ping.go`` and Docker do): HTTPS with certificate verification always, except for localhost /
  127.0.0.0/8 / ::1 and with ``insecure=True``, where HTTPS is tried without verification and plain HTTP
  is used when the registry does not speak TLS (as Docker treats insecure registries). The ping also
  answers an auth challenge (:mod:`.auth`), so the token is fetched once, before the real requests.
* Requests (:meth:`RegistryClient.request`): the ``Authorization`` header of the operation, one more try
  after a ``401`` whose challenge gives a new way in, and the retries of :mod:`.retry`; timeouts of
  :data:`TIMEOUT`; the user agent ``layerkit/VERSION``; no proxy for a registry on this machine.
* Errors: :mod:`.errors` (every failure is one line naming the operation, the reference and the registry).
"""

from __future__ import annotations

import contextlib
import warnings
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import urllib3

from ...engine.reference import Reference, parse_docker_ref
from ...engine.store import user_reference_error
from ...errors import InvalidManifest, InvalidReference
from ...version import __version__
from .auth import Authenticator
from .errors import RegistryError, RegistryUnreachable, TLSFailure, error_for, one_line, unreachable
from .retry import RetryPolicy, default_policy

TIMEOUT = (10.0, 120.0)  # connect, read (seconds between bytes)
USER_AGENT = f"layerkit/{__version__}"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def normalize_registry(name: str | None) -> str:
    """The registry as a reference names it: ``docker.io`` for the Hub, else ``host[:port]`` in lower case.

    Accepts what users and config files write: ``127.0.0.1:5000``, ``https://127.0.0.1:5000/``,
    ``https://index.docker.io/v1/``, ``index.docker.io``, or nothing (the Hub).
    """
    text = (name or "").strip()
    if not text:
        return DOCKER_HUB
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    host = (parts.netloc or parts.path.split("/", 1)[0]).lower()
    if "@" in host:  # never keep user info from a URL
        host = host.rsplit("@", 1)[1]
    if host in _HUB_ALIASES:
        return DOCKER_HUB
    return host


def endpoint_host(domain: str) -> str:
    """The host serving a registry's API: ``registry-1.docker.io`` for ``docker.io``."""
    return DOCKER_HUB_API if normalize_registry(domain) == DOCKER_HUB else domain


def is_localhost(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP is allowed there."""
    name = (urlsplit("//" + host).hostname or "").lower()
    return name in ("localhost", "::1") or name.startswith("127.")


def parse_ref(text: str, verb: str) -> Reference:
    """A reference the user gave to ``pull`` or ``push`` (the registry is its domain); a bad one is one
    line naming the verb."""
    try:
        return parse_docker_ref(text)
    except InvalidReference as exc:
        raise InvalidReference(f"{verb}: {user_reference_error(text, exc)}") from exc


def add_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query (an upload session's URL may carry its own)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class RegistryClient:
    """One registry, one operation: scheme discovery, auth, retries, and error messages.

    ``domain`` names the registry (:func:`normalize_registry`: ``docker.io``, ``127.0.0.1:5000``);
    ``what`` (e.g. ``pull 127.0.0.1:5000/app:v1``) starts every error message; ``credentials`` are the
    user name and password to answer challenges with (None: anonymous); ``scopes`` the token scopes asked
    for when the registry uses bearer tokens (``repository:NAME:pull,push``).
    """

    def __init__(self, domain: str, what: str, *, insecure: bool = False,
                 credentials: tuple[str, str] | None = None, scopes: list[str] | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.domain = normalize_registry(domain)
        self.host = endpoint_host(self.domain)
        self.what = what
        self.insecure = insecure
        self.retry = retry if retry is not None else default_policy()
        self.auth = Authenticator(self.domain, what, credentials, list(scopes or []), self.send)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if is_localhost(self.host):
            self.session.trust_env = False  # no proxy for a registry on this machine
        self.base: str | None = None
        self.verify = True

    def close(self) -> None:
        """Release the connections."""
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending, with retries --

    def send(self, method: str, url: str, *, headers: dict | None = None, body=None, stream: bool = False,
             retry: bool = True) -> requests.Response:
        """One HTTP request with the retries of :attr:`retry` (no registry auth handling).

        ``body`` may be a callable returning a fresh body for each try (a file being uploaded). Raises
        :class:`~.errors.RegistryUnreachable` when the connection fails for good, and
        :class:`~.errors.TLSFailure` when the TLS handshake fails (the caller decides what it means).
        """
        tries = self.retry.tries if retry else 1
        host = urlsplit(url).netloc
        for attempt in range(tries):
            data = body() if callable(body) else body
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    resp = self.session.request(method, url, headers=headers, data=data, stream=stream,
                                                timeout=TIMEOUT, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                raise TLSFailure(one_line(exc, 160)) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                err = unreachable(exc, self.what, host)
                if err.permanent or attempt == tries - 1:
                    raise err from exc
                self.retry.wait(attempt)
                continue
            finally:
                if data is not None and hasattr(data, "close"):
                    data.close()
            if self.retry.retry_status(resp.status_code) and attempt < tries - 1:
                resp.close()
                self.retry.wait(attempt)
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
            except TLSFailure as exc:
                if i + 1 < len(options):
                    continue
                raise RegistryUnreachable(
                    f"{self.what}: TLS with registry {self.host} failed ({exc}); plain HTTP is used only for "
                    f"localhost or with --insecure") from exc
            self.base = f"{scheme}://{self.host}"
            break
        assert resp is not None
        with contextlib.closing(resp):
            if resp.status_code == 401:
                self.auth.answer(resp.headers.get("WWW-Authenticate"))
            elif resp.status_code == 404:
                raise RegistryError(f"{self.what}: {self.host} does not serve the registry API v2 (/v2/ gives 404)")
            elif resp.status_code >= 400:
                raise self.error_for(resp)

    def request(self, method: str, path: str, *, headers: dict | None = None, body=None, stream: bool = False,
                retry: bool = True) -> requests.Response:
        """A registry API request (``path`` below the base URL, or an absolute URL), with auth and retries."""
        self.ping()
        url = path if path.startswith(("http://", "https://")) else self.base + path
        for attempt in range(2):
            h = dict(headers or {})
            if self.auth.header:
                h["Authorization"] = self.auth.header
            try:
                resp = self.send(method, url, headers=h, body=body, stream=stream, retry=retry)
            except TLSFailure as exc:
                raise RegistryUnreachable(f"{self.what}: TLS with registry {self.host} failed ({exc})") from exc
            if resp.status_code == 401 and attempt == 0 and self.auth.answer(resp.headers.get("WWW-Authenticate")):
                resp.close()
                continue
            return resp
        return resp

    def error_for(self, resp: requests.Response, not_found: str | None = None) -> RegistryError:
        """The error for an unexpected answer, naming the operation, the reference and the registry."""
        return error_for(resp, self.what, self.domain, not_found=not_found, login_hint=self.auth.login_hint(),
                         tries=self.retry.tries)

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
                                          f"({one_line(exc, 160)})") from exc
        return bytes(buf)
