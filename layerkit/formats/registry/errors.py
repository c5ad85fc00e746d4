"""Registry errors: the exception classes, and a registry's answer turned into one of them.

A registry that refuses a request answers with a status and, in the body, the OCI distribution spec's
error document (``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...", "detail": ...}]}``, the
codes of the spec's "Error Codes" table). :func:`decode_errors` reads that document (bounded, and
forgiving: a body that is not one gives no diagnostics), :func:`status_message` makes the status and the
registry's own words into one short text, and :func:`error_for` chooses the exception by status: ``401``
and ``403`` are :class:`RegistryAuthError`, a ``404`` for something the caller names is
:class:`ManifestNotFound`, the rest :class:`RegistryError`. :func:`unreachable` does the same for a
connection that failed (DNS, refused, timed out), keeping the low-level error as the cause.

Every message is one line and starts with the operation (``pull 127.0.0.1:5000/app:v1``); none holds a
secret (no header, no URL query is quoted).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import requests

from ...errors import (  # noqa: F401 - defined there, named here too
    LayerkitError,
    ManifestNotFound,
    NotFound,
    PlatformNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
)

MAX_ERROR_BODY = 65536  # bytes of an error body read for its message


class TLSFailure(Exception):
    """The TLS handshake failed (the server may speak plain HTTP): the transport decides what that means."""


@dataclass(frozen=True)
class Diagnostic:
    """One entry of a registry's error document."""

    code: str
    message: str
    detail: object = None


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_errors(body: bytes) -> list[Diagnostic]:
    """The diagnostics of an error body (``{"errors": [{"code", "message", "detail"}]}``); [] for any other
    body. Only the first :data:`MAX_ERROR_BODY` bytes are read."""
    try:
        data = json.loads(body[:MAX_ERROR_BODY])
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return []
    out = []
    for e in data["errors"]:
        if isinstance(e, dict):
            code, message = e.get("code"), e.get("message")
            out.append(Diagnostic(code if isinstance(code, str) else "",
                                  message if isinstance(message, str) else "", e.get("detail")))
    return out


def diagnostics_text(diagnostics: list[Diagnostic]) -> str:
    """What the registry said, short: each diagnostic's message (else its code), the first three."""
    parts = [d.message or d.code for d in diagnostics[:3]]
    return one_line("; ".join(p for p in parts if p), 200)


def status_message(resp: requests.Response) -> str:
    """``STATUS REASON``, plus the registry's own error text when the body holds an error document."""
    status = f"{resp.status_code} {resp.reason or ''}".strip()
    text = ""
    if resp.request is None or resp.request.method != "HEAD":  # a HEAD answer has no body to read
        try:
            text = diagnostics_text(decode_errors(resp.content[:MAX_ERROR_BODY]))
        except requests.RequestException:
            text = ""
    return f"{status}: {text}" if text else status


def error_for(resp: requests.Response, what: str, domain: str, *, not_found: str | None = None,
              login_hint: str = "", tries: int = 1) -> RegistryError:
    """The error for an unexpected answer (the response is closed), naming the operation ``what`` and the
    registry; ``not_found`` describes what a 404 means here, ``tries`` how often a 5xx was tried."""
    code = resp.status_code
    msg = status_message(resp)
    resp.close()
    where = f"registry {domain}"
    if code == 401:
        return RegistryAuthError(f"{what}: unauthorized: authentication required by {where} ({msg}){login_hint}")
    if code == 403:
        return RegistryAuthError(f"{what}: denied by {where} ({msg})")
    if code == 404 and not_found:
        return ManifestNotFound(f"{what}: {not_found} ({msg})")
    if code == 404:
        return RegistryError(f"{what}: {where} answered 404 ({msg})")
    if code >= 500:
        return RegistryError(f"{what}: {where} answered {msg} (after {tries} tries)")
    return RegistryError(f"{what}: {where} answered {msg}")


def _cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every error it wraps (causes, contexts, urllib3's nested reasons)."""
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


def unreachable(exc: BaseException, what: str, host: str) -> RegistryUnreachable:
    """The error for a connection to ``host`` that failed with ``exc`` (the caller raises it ``from exc``):
    DNS failures are permanent, refused connections and timeouts are worth another try."""
    chain = _cause_chain(exc)
    names = " ".join(type(e).__name__ for e in chain)
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolution" in names \
            or "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return RegistryUnreachable(f"{what}: cannot resolve the registry host {host} (DNS lookup failed)",
                                   permanent=True)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return RegistryUnreachable(f"{what}: cannot connect to registry {host}: connection refused")
    if isinstance(exc, requests.Timeout) or "timed out" in text:
        return RegistryUnreachable(f"{what}: registry {host} timed out")
    return RegistryUnreachable(f"{what}: cannot connect to registry {host} ({one_line(exc, 160)})")
