"""Where blobs live: ``STORE/layerkit/registry.json``, updated after every pull and push.

::

    {"version": 1,
     "blobs": {"127.0.0.1:5000": {"sha256:...": ["team/app", "team/base"]}},
     "repo_digests": {"sha256:IMAGEID": ["127.0.0.1:5000/team/app@sha256:MANIFEST"]}}

``blobs`` tells a push which repository of the same registry it may mount a blob from (the most recent
last, at most 16 per blob); ``repo_digests`` holds the ``NAME@DIGEST`` each image was pulled or pushed
as (:func:`repo_digests`, :func:`image_for_repo_digest`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...engine.atomic import atomic_write_json
from ...engine.reference import parse_docker_ref
from ...engine.store import Store
from ...errors import InvalidReference

STATE_FILE = "registry.json"
MAX_REPOS_PER_BLOB = 16


def _state_path(store: Store) -> Path:
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


def known_repositories(store: Store, domain: str) -> dict[str, list[str]]:
    """Blob digest -> the repositories of ``domain`` known to hold it (the most recent last)."""
    return read_state(store)["blobs"].get(domain, {})


def record(store: Store, domain: str, repo: str, blob_digests: list[str], image_id: str, repo_digest: str
           ) -> None:
    """Note that ``repo`` on ``domain`` holds these blobs, and the image's repo digest there."""
    with store.locked():
        state = read_state(store)
        reg = state["blobs"].setdefault(domain, {})
        for d in dict.fromkeys(blob_digests):
            repos = [r for r in reg.get(d, []) if r != repo]
            reg[d] = (repos + [repo])[-MAX_REPOS_PER_BLOB:]  # most recent last
        digests = [x for x in state["repo_digests"].get(image_id, []) if x.rpartition("@")[0] !=
                   repo_digest.rpartition("@")[0]]
        state["repo_digests"][image_id] = digests + [repo_digest]
        path = _state_path(store)
        atomic_write_json(path, state, indent=1, fsync=False)


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
