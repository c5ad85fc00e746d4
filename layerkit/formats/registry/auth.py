"""Answering a registry's ``401``: HTTP basic and the bearer token flow.

A registry that wants credentials answers ``401`` with ``WWW-Authenticate``: ``Basic realm="..."``
(send ``Authorization: Basic base64(user:password)``) or ``Bearer realm="URL",service="S",scope="S1 S2"``
(get a token from ``URL?service=S&scope=...``, anonymously or with the basic credentials, and send
``Authorization: Bearer TOKEN``), as Docker's token authentication specification and
go-containerregistry's ``bearer.go`` / ``basic.go`` do it. The token is asked for every scope the operation
needs at once (``repository:team/app:pull,push`` and ``repository:SOURCE:pull`` for the repositories a
push mounts from), so one token serves the whole operation; a token refused later (expired) is fetched
again once.

:class:`Authenticator` holds the state of one operation (credentials, scopes, tokens, the header in use)
and sends the token request through the transport's ``send``, so it knows nothing of schemes or retries.
No secret is ever printed, logged or put in an error.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Callable
from urllib.parse import urlencode

import requests

from .errors import RegistryAuthError, RegistryError, RegistryUnreachable, TLSFailure

_PARAM_RE = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')

Send = Callable[..., requests.Response]  # send(method, url, headers=...): one request with retries


def parse_challenge(header: str | None) -> tuple[str, dict[str, str]] | None:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` -> (``bearer``, {realm, service, ...}).

    The scheme is lower-cased, as are parameter names; quoted values may hold commas and escaped quotes.
    None for an empty or missing header."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def basic_header(credentials: tuple[str, str]) -> str:
    """The basic ``Authorization`` value (UTF-8, as Docker encodes it; requests would use Latin-1)."""
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def token_url(realm: str, service: str | None, scopes: list[str], account: str | None) -> str:
    """The token request's URL: the realm with ``service``, each ``scope`` and ``account`` as query."""
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query += [("scope", s) for s in scopes]
    if account is not None:
        query.append(("account", account))
    return realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm


class Authenticator:
    """The ``Authorization`` header of one operation, updated as the registry's challenges ask.

    ``what`` starts error messages, ``domain`` names the registry in them; ``send`` sends the token
    request (raising :class:`~.errors.TLSFailure` when TLS fails)."""

    def __init__(self, domain: str, what: str, credentials: tuple[str, str] | None, scopes: list[str],
                 send: Send) -> None:
        self.domain = domain
        self.what = what
        self.credentials = credentials
        self.scopes = list(scopes)
        self.header: str | None = None
        self._send = send
        self._tokens: dict[tuple, str] = {}

    def answer(self, www_authenticate: str | None) -> bool:
        """Act on a ``401``'s challenge; True when there is a new way to authenticate, worth a retry."""
        challenge = parse_challenge(www_authenticate)
        if challenge is None:
            return False
        scheme, params = challenge
        if scheme == "bearer":
            scopes = list(self.scopes)
            for s in (params.get("scope") or "").split():
                if s not in scopes:
                    scopes.append(s)
            key = (params.get("realm"), params.get("service"), tuple(scopes))
            if self.header is not None and self._tokens.get(key) and self.header == "Bearer " + self._tokens[key]:
                del self._tokens[key]  # refused although it was for these scopes: expired, fetch a new one
            new = "Bearer " + self._token(params, scopes)
        elif scheme == "basic" and self.credentials is not None:
            new = basic_header(self.credentials)
        else:
            return False
        if new == self.header:
            return False
        self.header = new
        return True

    def login_hint(self) -> str:
        """What to do about a refusal, for the end of an error message."""
        if self.credentials is None:
            return f"; log in first: layerkit login {self.domain}"
        return "; check the user name and password (layerkit login)"

    def _token(self, params: dict[str, str], scopes: list[str]) -> str:
        realm = params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise RegistryAuthError(f"{self.what}: registry {self.domain} asks for a bearer token without a "
                                    f"usable realm")
        key = (realm, params.get("service"), tuple(scopes))
        if key in self._tokens:
            return self._tokens[key]
        headers = {"Authorization": basic_header(self.credentials)} if self.credentials is not None else {}
        url = token_url(realm, params.get("service"), scopes,
                        self.credentials[0] if self.credentials is not None else None)
        try:
            resp = self._send("GET", url, headers=headers)
        except TLSFailure as exc:
            raise RegistryUnreachable(f"{self.what}: TLS with the token server of {self.domain} failed ({exc})"
                                      ) from exc
        with contextlib.closing(resp):
            if resp.status_code in (401, 403):
                raise RegistryAuthError(
                    f"{self.what}: registry {self.domain} refused the "
                    f"{'credentials' if headers else 'anonymous access'} (token server answered "
                    f"{resp.status_code}){self.login_hint()}")
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
