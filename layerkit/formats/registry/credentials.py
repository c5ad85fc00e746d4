"""Registry credentials: ``login``, ``logout`` and where a pull or push finds a user name and password.

layerkit keeps its own credentials file, ``$XDG_CONFIG_HOME/layerkit/auth.json`` (``~/.config/layerkit``
when the variable is unset), written with mode 0600 in the format of the ``auths`` section of Docker's
``~/.docker/config.json``::

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"},
               "https://index.docker.io/v1/": {"auth": "..."}}}

:func:`credentials_for` looks in that file first, then in Docker's config (``$DOCKER_CONFIG/config.json``,
else ``~/.docker/config.json``), so a user already logged in with ``docker login`` needs nothing more.
Keys are matched whatever form Docker wrote them in (``host``, ``https://host``, ``https://host/v1/``);
Docker Hub is ``docker.io`` here and ``https://index.docker.io/v1/`` in the files, as Docker writes it.
Credential helpers (``credsStore``, ``credHelpers``) are not consulted.

:func:`login` checks the credentials against the registry (``GET /v2/`` through its auth flow, basic or
bearer: :func:`check_login`) before saving them; :func:`logout` removes them from layerkit's file.
Secrets are never printed, logged or put into an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path

from ...engine.atomic import atomic_write_json
from ...errors import (
    CredentialsError,  # noqa: F401 - defined there, named here too
    )
from .errors import RegistryAuthError
from .transport import DOCKER_HUB, RegistryClient, normalize_registry

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def config_path() -> Path:
    """layerkit's credentials file: ``$XDG_CONFIG_HOME/layerkit/auth.json``."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "layerkit" / "auth.json"


def docker_config_path() -> Path:
    """Docker's client config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ.get("DOCKER_CONFIG")
    base = Path(env).expanduser() if env else Path.home() / ".docker"
    return base / "config.json"


def _key_for(registry: str) -> str:
    """The key Docker writes for a registry in ``auths``."""
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def _read_config(path: Path) -> dict:
    """A config file's JSON (empty when missing); a broken file is an error naming the file only."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
        # no cause: a JSONDecodeError holds the whole file, secrets and all, and a traceback would show it
        raise CredentialsError(f"{path}: cannot read credentials file ({reason})") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: credentials file is not a JSON object")
    return data


def _decode(entry: object, path: Path, key: str) -> tuple[str, str] | None:
    """(user, password) from one ``auths`` entry (base64 ``auth``, or ``username`` and ``password``)."""
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            # no cause: a UnicodeDecodeError holds the decoded secret
            raise CredentialsError(f"{path}: the auth entry for {key} is not valid base64 of user:password"
                                   ) from None
        if not sep or not user:
            raise CredentialsError(f"{path}: the auth entry for {key} is not of the form user:password")
        return user, password
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(password, str):
        return user, password
    return None


def _lookup(path: Path, registry: str) -> tuple[str, str] | None:
    auths = _read_config(path).get("auths")
    if not isinstance(auths, dict):
        return None
    exact = _key_for(registry)
    keys = [exact] if exact in auths else []
    keys += [k for k in auths if k != exact and normalize_registry(k) == registry]
    for key in keys:
        creds = _decode(auths[key], path, key)
        if creds is not None:
            return creds
    return None


def credentials_for(registry: str) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from layerkit's file, else from Docker's config, else None."""
    registry = normalize_registry(registry)
    for path in (config_path(), docker_config_path()):
        creds = _lookup(path, registry)
        if creds is not None:
            return creds
    return None


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable by the owner only (0600 from the start), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_json(path, data, mode=0o600)  # mkstemp creates it 0600: never readable by others


def save_credentials(registry: str, username: str, password: str) -> Path:
    """Store credentials in layerkit's file without checking them (:func:`login` checks first)."""
    registry = normalize_registry(registry)
    path = config_path()
    data = _read_config(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = data["auths"] = {}
    for key in [k for k in auths if normalize_registry(k) == registry]:
        del auths[key]
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[_key_for(registry)] = {"auth": token}
    _write_private(path, data)
    return path


def check_login(registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Verify credentials: ``GET /v2/`` through the registry's auth flow (basic or bearer) must give 200."""
    domain = normalize_registry(registry)
    with RegistryClient(domain, f"login {domain}", insecure=insecure, credentials=(username, password)) as client:
        resp = client.request("GET", "/v2/")
        with contextlib.closing(resp):
            if resp.status_code in (401, 403):
                raise RegistryAuthError(f"login {domain}: unauthorized: incorrect username or password")
            if resp.status_code != 200:
                raise client.error_for(resp)


def login(registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Check the credentials against the registry (``GET /v2/`` with its auth flow), then save them.

    Raises :class:`~.errors.RegistryAuthError` when the registry refuses them and the other registry
    errors when it cannot be reached; nothing is saved then.
    """
    if not username:
        raise CredentialsError("login: a user name is required")
    registry = normalize_registry(registry)
    check_login(registry, username, password, insecure=insecure)
    save_credentials(registry, username, password)


def logout(registry: str) -> bool:
    """Remove the registry's credentials from layerkit's file; False when there were none."""
    registry = normalize_registry(registry)
    path = config_path()
    data = _read_config(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    keys = [k for k in auths if normalize_registry(k) == registry]
    if not keys:
        return False
    for key in keys:
        del auths[key]
    _write_private(path, data)
    return True
