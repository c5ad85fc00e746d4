"""A running Docker or Podman, through the Docker Engine API (the ``docker`` Python SDK).

* :func:`connect` finds the engine: the ``endpoint`` argument (``--engine unix://...``), else ``DOCKER_HOST``
  (with Docker's TLS variables), else ``unix:///var/run/docker.sock``; when nothing answers ``/_ping`` it
  raises :class:`EngineUnavailable`, one line naming the endpoint.
* :class:`DaemonSource` and :class:`DaemonDestination`: the ``docker-daemon:`` transport, a streamed
  ``docker save`` (written to a temporary file under the store, never held in memory) and ``docker load``;
  :func:`load_from_engine` and :func:`save_to_engine` are ``copy_image`` into the store and out of it.
* :func:`engine_containers`, :func:`engine_diff` and :func:`engine_commit` show the engine's containers,
  a container's changes as layerkit's ``diff`` rows (kind, path, size), and commit one.

The SDK is imported inside the functions, so layerkit works without it until an engine is used.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from ..engine.humanize import rfc3339
from ..engine.image import Image
from ..engine.progress import Progress, ProgressEvent, Status
from ..engine.reference import Reference, parse_reference
from ..engine.store import Store
from ..errors import ContainerNotFound, EngineError, EngineUnavailable, ImageNotFound, InvalidReference, LayerkitError  # noqa: F401 - defined there, named here too
from .archive_writers import DockerArchiveDestination, tag_string
from .imagesource import SourceImage
from .importer import LoadedImage
from .pipeline import copy_image
from .stored import StoreDestination, StoreSource, images_with_tags

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"
PING_TIMEOUT = 15  # seconds to wait for /_ping (and the API version) before giving up on the endpoint
API_TIMEOUT = 600  # seconds of silence allowed during long calls (a big `docker load` answers late)
CHUNK = 1 << 20
_KINDS = {0: "C", 1: "A", 2: "D"}  # the changes API's Kind values
_MODE_DIR = 1 << 31  # Go's os.ModeDir and os.ModeSymlink, as the archive stat header carries them
_MODE_SYMLINK = 1 << 27
STAT_WORKERS = 4
TREE_MIN_ROWS = 4  # an added directory with this many added paths below it is read as one archive


# ---- connecting ------------------------------------------------------------------------------------

def resolve_endpoint(endpoint: str | None = None) -> str:
    """The endpoint :func:`connect` would use: the argument, else ``DOCKER_HOST``, else the default socket."""
    return endpoint or os.environ.get("DOCKER_HOST") or DEFAULT_ENDPOINT


def _reason(exc: BaseException) -> str:
    """A short cause for a connection failure (the SDK's messages run over several nested errors)."""
    text = str(exc)
    for pattern, reason in ((r"Connection refused", "connection refused"),
                            (r"No such file or directory|FileNotFoundError", "no such socket"),
                            (r"Permission denied|PermissionError", "permission denied"),
                            (r"timed out|Timeout", "timed out"),
                            (r"Name or service not known|nodename nor servname|Temporary failure in name",
                             "unknown host"),
                            (r"Connection reset|RemoteDisconnected|Connection aborted", "connection closed"),
                            (r"Invalid bind address|Unsupported URL|Invalid URL", "not a valid endpoint")):
        if re.search(pattern, text):
            return reason
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:199] + "…"


def _unavailable(url: str, exc: BaseException | str) -> EngineUnavailable:
    reason = exc if isinstance(exc, str) else _reason(exc)
    return EngineUnavailable(f"cannot connect to the Docker engine at {url}: {reason} (is Docker, or "
                             f"`podman system service`, running? set DOCKER_HOST or --engine)")


def _sdk():
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - the SDK is a dependency
        raise LayerkitError("the docker Python SDK is needed to talk to an engine: pip install 'docker>=7'") \
            from exc
    return docker


def connect(endpoint: str | None = None):
    """A ``docker.DockerClient`` for the engine at ``endpoint`` (see :func:`resolve_endpoint`), checked
    with ``/_ping``; raises :class:`EngineUnavailable` naming the endpoint when nothing answers."""
    docker = _sdk()
    url = resolve_endpoint(endpoint)
    if url.startswith("unix://"):
        sock = url[len("unix://"):]
        if not os.path.exists(sock):
            raise _unavailable(url, "no such socket")
    kwargs: dict = {"base_url": url}
    if endpoint is None and os.environ.get("DOCKER_HOST"):
        try:
            kwargs = docker.utils.kwargs_from_env()  # DOCKER_TLS_VERIFY and DOCKER_CERT_PATH too
        except docker.errors.DockerException as exc:
            raise _unavailable(url, exc) from exc
    try:
        client = docker.DockerClient(timeout=PING_TIMEOUT, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the SDK raises DockerException, requests or socket errors
        raise _unavailable(url, exc) from exc
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        client.close()
        raise _unavailable(url, exc) from exc
    client.api.timeout = API_TIMEOUT
    client.layerkit_endpoint = url
    return client


def _api_error(client, exc: BaseException, what: str) -> LayerkitError:
    """Turn an SDK or connection error into a one-line layerkit error naming the engine and ``what``."""
    docker = _sdk()
    url = getattr(client, "layerkit_endpoint", "the engine")
    if isinstance(exc, docker.errors.APIError):
        msg = exc.explanation if isinstance(exc.explanation, str) and exc.explanation else str(exc)
        msg = " ".join(str(msg).split())
        return EngineError(f"{what}: engine at {url}: {msg}")
    if isinstance(exc, docker.errors.DockerException):
        return EngineError(f"{what}: engine at {url}: {' '.join(str(exc).split())}")
    return _unavailable(url, exc)


def _is_sdk_error(exc: BaseException) -> bool:
    import requests

    docker = _sdk()
    return isinstance(exc, docker.errors.DockerException | requests.RequestException)


# ---- images ------------------------------------------------------------------------------------------

class DaemonSource:
    """``docker-daemon:REF`` as a source: the engine's ``docker save`` of ``name`` (a tag or an image ID)
    streamed to a temporary file under the store (without one, the system's temporary directory; never
    held in memory), read as a docker-archive (or, from
    an engine that writes one, an OCI archive). The file lives until :meth:`close`, since layers are read
    when the destination asks for them.

    ``progress`` receives the archive's events (``what`` ``"archive"``: ``downloading`` as its bytes
    arrive, ``done`` once it is all there). :class:`ImageNotFound` when the engine has no such image."""

    several = "the engine sent {n} images; name exactly one"  # what a copy says when it sends more than one

    def __init__(self, store: Store | None, name: str, endpoint: str | None = None,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.name = name
        self.label = f"docker-daemon:{name}"
        self._progress = progress
        self._client = connect(endpoint)
        self._stack = contextlib.ExitStack()
        self._stack.callback(self._client.close)

    def images(self) -> Iterator[SourceImage]:
        """Every image of the engine's archive (Podman names a short name ``localhost/NAME``; an image ID
        gives an untagged image, as ``docker save ID`` does)."""
        from .docker_archive import source_images as archive_images
        from .oci import source_images as layout_images
        from .sources import TarSource

        client, name, progress = self._client, self.name, self._progress
        url = client.layerkit_endpoint
        what = f"load {name} from the engine"
        try:
            client.images.get(name)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, _sdk().errors.ImageNotFound):
                raise ImageNotFound(f"engine at {url}: no such image: {name}") from exc
            if _is_sdk_error(exc):
                raise _api_error(client, exc, what) from exc
            raise
        if self.store is not None:
            # locked while it exists, so a killed load's file is removed by the next writer (blobs.remove_stale)
            f, tmp = self._stack.enter_context(self.store.blobs.temp_file("stream-", ".tar"))
        else:  # analysis in place, no store: the system's temporary directory
            f = self._stack.enter_context(tempfile.NamedTemporaryFile(prefix="layerkit-engine-", suffix=".tar"))
            tmp = Path(f.name)
        try:
            received = 0
            for chunk in client.api.get_image(name, chunk_size=CHUNK):
                f.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(ProgressEvent("archive", None, received, None, Status.DOWNLOADING))
        except Exception as exc:  # noqa: BLE001
            if _is_sdk_error(exc):
                raise _api_error(client, exc, what) from exc
            raise
        f.flush()
        if progress is not None:
            progress(ProgressEvent("archive", None, received, received, Status.DONE))
        src = self._stack.enter_context(TarSource(tmp, f"engine {url}: {name}"))
        if src.has("manifest.json"):
            yield from archive_images(src)
        else:
            yield from layout_images(src)

    def close(self) -> None:
        """Remove the temporary archive and close the connection."""
        self._stack.close()

    def __enter__(self) -> DaemonSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_from_engine(store: Store, name: str, endpoint: str | None = None,
                     progress: Progress | None = None) -> list[LoadedImage]:
    """Import the engine's image ``name`` (a tag or an image ID) into ``store``: ``docker save`` streamed
    to a temporary file under the store (never held in memory), then imported as ``load`` does.

    The engine names the archive's images as it resolves ``name`` (Podman calls a short name
    ``localhost/NAME``); an image ID gives an untagged image, as ``docker save ID`` does. ``progress``
    receives the archive's events (``what`` ``"archive"``: ``downloading`` as its bytes arrive, ``done``
    once it is all there), then those of its layers as ``load`` reports them. Raises
    :class:`ImageNotFound` when the engine has no such image, :class:`EngineUnavailable` /
    :class:`EngineError` for engine problems.

    ``copy_image`` from a :class:`DaemonSource` into the store.
    """
    with DaemonSource(store, name, endpoint, progress) as src:
        done = copy_image(src, StoreDestination(store, defer=True), progress=progress)
    return [LoadedImage(image, [tag_string(t) for t in taken]) for image, taken in done]


class DaemonDestination:
    """``docker-daemon:REF`` as a destination: the images put are written as a docker-archive to a
    temporary file under ``store`` (each with the names it is put with), which :meth:`commit` streams to
    the engine's ``docker load``; :meth:`commit` returns the image IDs the engine reports, in its order.
    The engine is asked once, so it takes all the images or none (as far as ``docker load`` is atomic)."""

    def __init__(self, store: Store, endpoint: str | None = None, label: str = "docker-daemon") -> None:
        self.label = label
        self._client = connect(endpoint)
        store.blobs.ensure()
        fd, tmp = tempfile.mkstemp(dir=store.blobs.tmp_dir, prefix="engine-", suffix=".tar")
        os.close(fd)
        self._tmp = Path(tmp)
        self._archive = DockerArchiveDestination(self._tmp, label)
        self._names: list[Reference] = []

    def has_blob(self, digest: str) -> bool:
        """The archive for the engine holds this blob (the engine's own store is not asked)."""
        return self._archive.has_blob(digest)

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Add the image to the archive for the engine."""
        self._archive.put_image(image, names, progress)
        self._names += names

    def summary(self, results: list[str]) -> dict:
        """What a copy reports: the image IDs the engine took and the names sent."""
        return {"engine_ids": results, "names": [n.familiar for n in self._names]}

    def commit(self) -> list[str]:
        """``docker load`` the archive; the image IDs the engine reports."""
        client, what = self._client, "save to the engine"
        try:
            self._archive.commit()
            with open(self._tmp, "rb") as f:
                try:
                    names = _loaded_names(client.api.load_image(f), what, client)  # the file is streamed
                    ids = [client.api.inspect_image(n)["Id"] for n in names]
                except LayerkitError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    if _is_sdk_error(exc):
                        raise _api_error(client, exc, what) from exc
                    raise
        finally:
            self.abort()
        return list(dict.fromkeys(ids))

    def abort(self) -> None:
        """Remove the temporary archive; close the connection."""
        self._archive.abort()
        self._tmp.unlink(missing_ok=True)
        self._client.close()

    def __enter__(self) -> DaemonDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def save_images_to_engine(store: Store, images: list[tuple[Image, list[Reference]]],
                          endpoint: str | None = None) -> list[str]:
    """``docker load`` of these (image, tags) pairs: a docker-archive written to a temporary file under the
    store and streamed to the engine from it. Returns the image IDs the engine reports, in its order.

    ``copy_image`` from the store to a :class:`DaemonDestination`."""
    return copy_image(StoreSource(store, images), DaemonDestination(store, endpoint))


def _loaded_names(stream, what: str, client) -> list[str]:
    """The names and IDs a ``docker load`` answer reports (``Loaded image: NAME``, ``Loaded image ID: ID``).

    Podman joins several names with commas on one line (the SDK's ``images.load`` then asks for an image
    called ``a,b``), so the lines are parsed here."""
    names: list[str] = []
    for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        if chunk.get("errorDetail") or chunk.get("error"):
            detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
            raise EngineError(f"{what}: engine at {client.layerkit_endpoint}: {' '.join(str(detail).split())}")
        for line in str(chunk.get("stream") or "").splitlines():
            m = re.match(r"^Loaded image(?: ID)?: (.+)$", line.strip())
            if m:
                names += [n.strip() for n in m.group(1).split(",") if n.strip()]
    return names


def save_to_engine(store: Store, names: list[str], endpoint: str | None = None) -> list[str]:
    """Send the store's images ``names`` (tags or IDs, as for ``save``) to the engine with ``docker load``;
    returns the image IDs the engine reports (equal to layerkit's: both are the config digest)."""
    if not names:
        raise LayerkitError("save --to-engine: name at least one image")
    return save_images_to_engine(store, images_with_tags(store, names), endpoint)


# ---- containers --------------------------------------------------------------------------------------

def _created(value) -> str | None:
    """The list API's ``Created`` (Unix seconds) as RFC 3339, like layerkit's own container rows."""
    if isinstance(value, int | float):
        return rfc3339(datetime.fromtimestamp(value, UTC))
    return value if isinstance(value, str) else None


def engine_containers(endpoint: str | None = None, all: bool = True) -> list[dict]:
    """The engine's containers (all of them, or only running ones with ``all=False``), newest first.

    Rows have ``id name image image_id command state status created`` (``created`` in RFC 3339, as
    layerkit's ``ps`` data)."""
    client = connect(endpoint)
    try:
        try:
            listed = client.api.containers(all=all) or []
        except Exception as exc:  # noqa: BLE001
            if _is_sdk_error(exc):
                raise _api_error(client, exc, "list containers") from exc
            raise
    finally:
        client.close()
    rows = []
    for c in sorted(listed, key=lambda c: c.get("Created") or 0, reverse=True):
        names = c.get("Names") or []
        rows.append({"id": c.get("Id", ""), "name": names[0].lstrip("/") if names else "",
                     "image": c.get("Image", ""), "image_id": c.get("ImageID", ""),
                     "command": c.get("Command", ""), "state": c.get("State", ""),
                     "status": c.get("Status", ""), "created": _created(c.get("Created"))})
    return rows


def _get_container(client, name: str, what: str):
    docker = _sdk()
    try:
        return client.containers.get(name)
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(f"engine at {client.layerkit_endpoint}: no such container: {name}") from exc
    except Exception as exc:  # noqa: BLE001
        if _is_sdk_error(exc):
            raise _api_error(client, exc, what) from exc
        raise


def _path_size(client, container_id: str, path: str) -> int:
    """The size of a regular file in the container (0 for directories, symlinks and vanished paths).

    ``HEAD /containers/ID/archive`` returns only the ``X-Docker-Container-Path-Stat`` header (no tar is
    sent); an engine that does not answer HEAD is asked with GET and only the first tar header is read.
    """
    docker = _sdk()
    api = client.api
    url = api._url("/containers/{0}/archive", container_id)
    resp = api.head(url, params={"path": path}, timeout=api.timeout)
    resp.close()
    stat = None
    if resp.status_code == 200:
        header = resp.headers.get("X-Docker-Container-Path-Stat")
        stat = docker.utils.decode_json_header(header) if header else None
    elif resp.status_code == 404:
        return 0  # changed again (removed) since the changes were listed
    if stat is None:
        return _size_from_archive(api, url, path)
    mode = int(stat.get("mode") or 0)
    if stat.get("isDir") or mode & (_MODE_DIR | _MODE_SYMLINK):
        return 0
    return int(stat.get("size") or 0)


def _size_from_archive(api, url: str, path: str) -> int:
    """Read only the first tar header of ``GET /containers/ID/archive?path=PATH`` (then hang up)."""
    import tarfile

    resp = api.get(url, params={"path": path}, stream=True, timeout=api.timeout)
    try:
        if resp.status_code == 404:
            return 0
        api._raise_for_status(resp)
        raw = resp.raw.read(tarfile.BLOCKSIZE * 8)  # enough for a PAX header and the member header
        with tarfile.open(fileobj=_Prefix(raw), mode="r|") as tf:
            member = tf.next()
            return member.size if member is not None and member.isreg() else 0
    except tarfile.TarError:
        return 0
    finally:
        resp.close()


class _Prefix:
    """A read-only file over the first bytes of a stream (tarfile's stream mode reads sequentially)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else self.pos + n
        out = self.data[self.pos:end]
        self.pos += len(out)
        return out


def _added_trees(rows: list[dict], min_rows: int) -> list[tuple[str, list[dict]]]:
    """Topmost added paths with at least ``min_rows`` added rows below them (added directory trees), each
    with the rows of its subtree."""
    by_tree = sorted(rows, key=lambda r: r["path"].split("/"))  # a subtree's rows are contiguous
    out = []
    i = 0
    while i < len(by_tree):
        root = by_tree[i]
        prefix = root["path"].rstrip("/") + "/"
        j = i + 1
        while j < len(by_tree) and by_tree[j]["path"].startswith(prefix):
            j += 1
        below = by_tree[i + 1:j]
        if root["kind"] == "A" and len(below) >= min_rows and all(r["kind"] == "A" for r in below):
            out.append((root["path"], [root, *below]))
            i = j
        else:
            i += 1
    return out


def _sizes_from_tree(api, url: str, root: str, rows: list[dict]) -> None:
    """Set the size of every row below the added directory ``root`` from one archive of it: the tar
    headers carry the sizes (regular files; directories, links and hard links are 0)."""
    import posixpath
    import tarfile

    want = {r["path"]: r for r in rows}
    base = posixpath.dirname(root.rstrip("/"))
    resp = api.get(url, params={"path": root}, stream=True, timeout=api.timeout)
    try:
        if resp.status_code == 404:
            return  # removed since the changes were listed: the sizes stay 0
        api._raise_for_status(resp)
        with tarfile.open(fileobj=resp.raw, mode="r|") as tf:
            for member in tf:
                path = posixpath.normpath(posixpath.join(base, member.name))
                row = want.get(path)
                if row is not None:
                    row["size"] = member.size if member.isreg() else 0
    except tarfile.TarError:
        pass
    finally:
        resp.close()


def engine_diff(name: str, endpoint: str | None = None) -> list[dict]:
    """A container's changes as layerkit's ``diff`` rows ``{"kind", "path", "size"}``, sorted by path.

    Kinds come from the engine's changes API (``docker diff``: 0=C, 1=A, 2=D); sizes from the container's
    files: a regular file's size, 0 for directories, symlinks and deleted paths. An added directory tree
    is read as one archive (its tar headers give the sizes); other paths are asked one by one with
    ``HEAD /containers/ID/archive`` (Podman takes some 20 ms per call, whatever the file)."""
    client = connect(endpoint)
    what = f"diff {name}"
    try:
        container = _get_container(client, name, what)
        url = client.api._url("/containers/{0}/archive", container.id)
        try:
            changes = client.api.diff(container.id) or []  # Docker answers null for no changes
            rows = [{"kind": _KINDS.get(ch.get("Kind"), "C"), "path": ch.get("Path", ""), "size": 0}
                    for ch in changes]
            rows.sort(key=lambda r: r["path"])
            done: set[str] = set()
            for root, tree in _added_trees(rows, TREE_MIN_ROWS):
                _sizes_from_tree(client.api, url, root, tree)
                done.update(r["path"] for r in tree)
            todo = [r for r in rows if r["kind"] != "D" and r["path"] not in done]

            def size(row: dict) -> None:
                row["size"] = _path_size(client, container.id, row["path"])

            if len(todo) > 8:
                with ThreadPoolExecutor(max_workers=STAT_WORKERS) as pool:
                    list(pool.map(size, todo))
            else:
                for r in todo:
                    size(r)
        except Exception as exc:  # noqa: BLE001
            if _is_sdk_error(exc):
                raise _api_error(client, exc, what) from exc
            raise
        return rows
    finally:
        client.close()


def _split_repo(repo: str) -> tuple[str, str | None]:
    """``NAME[:TAG]`` -> (NAME, TAG); the colon of a registry port is not a tag."""
    try:
        ref = parse_reference(repo)
    except InvalidReference as exc:
        raise InvalidReference(f'"{repo}" is not a valid repository/tag: {exc}') from exc
    if ref.digest:
        raise InvalidReference(f"refusing to commit to a digest reference: {repo}")
    head, sep, tail = repo.rpartition(":")
    if sep and "/" not in tail:
        return head, tail
    return repo, None


def engine_commit(name: str, repo: str | None = None, message: str = "", author: str = "",
                  endpoint: str | None = None, changes: list[str] | None = None) -> str:
    """``docker commit [-m MESSAGE] [-a AUTHOR] [-c CHANGE]... CONTAINER [REPO[:TAG]]`` through the engine;
    returns the new image's ID."""
    repository, tag = _split_repo(repo) if repo else (None, None)
    client = connect(endpoint)
    what = f"commit {name}"
    try:
        container = _get_container(client, name, what)
        try:
            image = container.commit(repository=repository, tag=tag, message=message or None,
                                     author=author or None, changes=changes or None)
        except Exception as exc:  # noqa: BLE001
            if _is_sdk_error(exc):
                raise _api_error(client, exc, what) from exc
            raise
        return image.id
    finally:
        client.close()
