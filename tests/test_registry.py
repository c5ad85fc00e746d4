"""Pull and push against a real ``docker-registry`` on 127.0.0.1 (issue 6, "Registry" and "Bad input").

The registries (plain, htpasswd basic auth, and bearer tokens from a token server run here) are started by
this module with private storage under a temporary directory and their log in a file, and stopped by PID.
Every HEAD / POST / PATCH / PUT / GET the registry served is read back from its access log, so the tests
count what really went over the wire: base blobs uploaded once, mounts across repositories, no blob GET on
a second pull. ``skopeo`` checks interoperability both ways. The bad inputs that a real registry cannot
produce (a 500 that recovers, a blob whose bytes do not match its digest, a manifest that is not JSON, an
index without the platform) come from a small ``http.server`` registry stub; each is one line naming the
reference and the registry, and the store is byte for byte what it was.

Needs the Debian packages ``docker-registry``, ``skopeo`` and ``openssl`` (token signing), and a bcrypt
hasher for the htpasswd file: the ``bcrypt`` Python package, else ``htpasswd`` (apache2-utils), else the
standard library's ``crypt`` (Python < 3.13).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from realtools import ls_tree, rootfs_tree
from services import free_port, start_registry

from layerkit import errors
from layerkit.engine.progress import ProgressEvent, Status, Tally
from layerkit.engine.store import Store
from layerkit.examples import busybox_layer
from layerkit.formats import registry
from layerkit.formats.load import load_path
from layerkit.formats.oci import host_platform
from layerkit.formats.registry import auth, credentials, pulling, pushing, retry, state, transport
from layerkit.formats.registry.errors import (
    ManifestNotFound,
    PlatformNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
)

EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
USER, PASSWORD = "alice", "s3cret-pässword"

pytestmark = pytest.mark.tools


def need(tool: str, package: str) -> str:
    """The tool's path, or a failure naming the Debian package to install (CI installs them all)."""
    path = shutil.which(tool) or (f"/usr/bin/{tool}" if os.path.exists(f"/usr/bin/{tool}") else None)
    if not path:
        pytest.fail(f"{tool} is not installed: apt-get install {package}")
    return path


def sha(data: bytes) -> str:
    """The sha256 digest of bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class QuietServer(ThreadingHTTPServer):
    """An http.server that does not print a traceback when a client hangs up (layerkit's TLS probe does)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


# ---- images made here -------------------------------------------------------------------------

@dataclass
class Blob:
    """A blob with its digest and media type (and, for a layer, its diff_id)."""

    data: bytes
    media_type: str
    diff_id: str | None = None

    @property
    def digest(self) -> str:
        """sha256 of the bytes."""
        return sha(self.data)

    def descriptor(self, **extra) -> dict:
        """The OCI descriptor."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar holding these files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = EPOCH
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def layer(tar: bytes, compress: bool = True) -> Blob:
    """A layer blob (gzip by default, as registries usually hold them)."""
    if compress:
        return Blob(gzip.compress(tar, compresslevel=6, mtime=0), OCI_LAYER_GZIP, sha(tar))
    return Blob(tar, OCI_LAYER, sha(tar))


def files_layer(name: str, seed: int, size: int = 200_000) -> Blob:
    """A small layer with one text file and some incompressible bytes (new content for each seed)."""
    rnd = random.Random(seed)
    return layer(tar_bytes({f"app/{name}.txt": f"{name}\n".encode(), f"app/{name}.bin": rnd.randbytes(size)}))


@dataclass
class Img:
    """Config, layers and manifest of an image built here."""

    config: Blob
    layers: list[Blob]
    manifest: Blob = field(init=False)

    def __post_init__(self) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.config.descriptor(),
               "layers": [la.descriptor() for la in self.layers]}
        self.manifest = Blob(json.dumps(doc, separators=(",", ":")).encode(), OCI_MANIFEST)

    @property
    def id(self) -> str:
        """The image ID."""
        return self.config.digest

    def blobs(self) -> list[Blob]:
        """Manifest, config and layers."""
        return [self.manifest, self.config, *self.layers]


def make_image(layers: list[Blob], label: str, arch: str | None = None) -> Img:
    """An image of these layers for this machine's platform (or ``arch``)."""
    os_, host_arch = host_platform()
    cfg = {"architecture": arch or host_arch, "os": os_, "created": CREATED, "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
           "history": [{"created": CREATED, "created_by": f"{label} layer {i}"} for i in range(len(layers))]}
    return Img(Blob(json.dumps(cfg, separators=(",", ":")).encode(), OCI_CONFIG), layers)


def write_layout(root: Path, images: dict[str, Img]) -> Path:
    """An OCI layout holding the images, each under its ref.name annotation."""
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for name, img in images.items():
        for b in img.blobs():
            (root / "blobs" / "sha256" / b.digest[7:]).write_bytes(b.data)
        manifests.append(img.manifest.descriptor(annotations={REF_NAME: name}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return root


@dataclass
class Images:
    """The images the tests push: a base, two images on it, a third for skopeo."""

    base: Img
    app_a: Img
    app_b: Img
    app_c: Img
    layout: Path
    store: Path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Images:
    """A store holding base, app-a and app-b (app-a and app-b share the busybox base layer)."""
    root = tmp_path_factory.mktemp("registry-images")
    bb = root / "busybox.tar"
    busybox_layer(bb)
    base_layer = layer(bb.read_bytes())
    base = make_image([base_layer], "base")
    app_a = make_image([base_layer, files_layer("a", 1)], "app-a")
    app_b = make_image([base_layer, files_layer("b", 2)], "app-b")
    app_c = make_image([base_layer, files_layer("c", 3)], "app-c")
    layout = write_layout(root / "layout", {"lk.test/base:1": base, "lk.test/app-a:1": app_a,
                                            "lk.test/app-b:1": app_b})
    store = root / "store"
    load_path(Store(store), str(layout))
    return Images(base, app_a, app_b, app_c, layout, store)


# ---- a real docker-registry ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """An anonymous registry."""
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """No test reads or writes the real credentials files."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setattr(retry, "BACKOFF", 0.01)


def bytes_reported(events: list[ProgressEvent]) -> int:
    """The bytes a progress bar would show for these events."""
    tally = Tally()
    for e in events:
        tally.add(e)
    return tally.total


def blob_puts(reqs: list[tuple[str, str, int]]) -> dict[str, int]:
    """digest -> number of completed blob uploads (PUT ...?digest=...)."""
    out: dict[str, int] = {}
    for method, path, status in reqs:
        if method == "PUT" and "/blobs/uploads/" in path and status == 201:
            digest = parse_qs(urlsplit(path).query)["digest"][0]
            out[digest] = out.get(digest, 0) + 1
    return out


# ---- push -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pushed(images, reg):
    """app-a and app-b pushed to one repository, one after the other."""
    st = Store(images.store)
    start = reg.mark()
    res_a = registry.push(st, "lk.test/app-a:1", f"{reg.host}/team/app:a")
    res_b = registry.push(st, "lk.test/app-b:1", f"{reg.host}/team/app:b")
    return res_a, res_b, reg.requests(start)


def test_push_shared_base_uploads_each_blob_once(images, reg, pushed):
    res_a, res_b, reqs = pushed
    base = images.base.layers[0]
    assert [la.action for la in res_a.layers] == ["Pushed", "Pushed"]
    assert [la.action for la in res_b.layers] == ["Layer already exists", "Pushed"]
    assert res_b.skipped_bytes == len(base.data)
    assert res_b.lines() == [f"The push refers to repository [{reg.host}/team/app]",
                             f"{images.app_b.layers[1].digest[7:19]}: Pushed",
                             f"{base.digest[7:19]}: Layer already exists",
                             f"b: digest: {res_b.digest} size: {len(images.app_b.manifest.data)}"]
    assert res_b.transferred_bytes == len(images.app_b.layers[1].data)
    puts = blob_puts(reqs)
    assert puts[base.digest] == 1  # the shared base went over the wire once
    assert all(n == 1 for n in puts.values()), puts
    assert set(puts) == {b.digest for b in images.app_a.blobs()[1:] + images.app_b.blobs()[1:]}
    # every blob was checked with HEAD before anything was sent
    heads = [p for m, p, _ in reqs if m == "HEAD"]
    assert any(base.digest in p for p in heads)
    # the manifest went as stored: its digest is the image's manifest digest in the store
    assert res_a.digest == Store(images.store).image("lk.test/app-a:1").manifest_digest
    assert res_a.image_id == images.app_a.id


def test_second_push_sends_no_layer_bytes(images, reg, pushed):
    start = reg.mark()
    t = time.perf_counter()
    res = registry.push(Store(images.store), "lk.test/app-a:1", f"{reg.host}/team/app:a")
    took = time.perf_counter() - t
    reqs = reg.requests(start)
    assert [la.action for la in res.layers] == ["Layer already exists"] * 2
    assert res.transferred_bytes == 0
    assert not blob_puts(reqs)
    assert not [r for r in reqs if r[0] in ("POST", "PATCH")]
    assert took < 1.0


def test_push_to_second_repository_mounts(images, reg, pushed):
    start = reg.mark()
    res = registry.push(Store(images.store), "lk.test/app-b:1", f"{reg.host}/mirror/app:b")
    reqs = reg.requests(start)
    assert [la.action for la in res.layers] == ["Mounted from team/app"] * 2
    assert res.transferred_bytes == 0
    mounts = [(p, s) for m, p, s in reqs if m == "POST" and "mount=" in p]
    assert len(mounts) == 3 and all(s == 201 for _, s in mounts)  # two layers and the config
    assert all("from=team%2Fapp" in p for p, _ in mounts)
    assert not blob_puts(reqs)


# ---- pull ----------------------------------------------------------------------------------------

def test_pull_into_empty_store_then_again(images, reg, pushed, tmp_path):
    st = Store(tmp_path / "fresh")
    seen: list[ProgressEvent] = []
    res = registry.pull(st, f"{reg.host}/team/app:b", progress=seen.append)
    assert res.image_id == images.app_b.id
    assert res.digest == pushed[1].digest
    assert [la.action for la in res.layers] == ["Pull complete"] * 2
    assert res.transferred_bytes == sum(len(la.data) for la in images.app_b.layers)
    assert bytes_reported(seen) == res.transferred_bytes
    top = images.app_b.layers[1]
    assert ProgressEvent("layer", top.digest, len(top.data), len(top.data), Status.DONE) in seen
    img = st.image(f"{reg.host}/team/app:b")
    assert img.id == images.app_b.id and img.diff_ids == [la.diff_id for la in images.app_b.layers]
    assert state.repo_digests(st, img.id) == [f"{reg.host}/team/app@{res.digest}"]
    assert res.lines()[0] == "b: Pulling from team/app"
    assert res.lines()[-1] == f"Status: Downloaded newer image for {reg.host}/team/app:b"

    start = reg.mark()
    again = registry.pull(st, f"{reg.host}/team/app:b")
    reqs = reg.requests(start)
    assert [la.action for la in again.layers] == ["Already exists"] * 2
    assert again.transferred_bytes == 0 and again.image_id == res.image_id
    assert again.lines()[-1] == f"Status: Image is up to date for {reg.host}/team/app:b"
    assert not [r for r in reqs if r[0] == "GET" and "/blobs/" in r[1]], reqs  # no blob moved at all


def test_pull_skips_layers_the_store_has(images, reg, pushed, tmp_path):
    root = tmp_path / "has-base"
    shutil.copytree(images.store, root)
    st = Store(root)
    start = reg.mark()
    res = registry.pull(st, f"{reg.host}/team/app:a")
    reqs = reg.requests(start)
    base, top = images.app_a.layers
    # the store holds every layer of app-a already (it was loaded there): nothing moves
    assert [la.action for la in res.layers] == ["Already exists", "Already exists"]
    # a store with only the base: the base is not downloaded, the top layer is
    only_base = Store(tmp_path / "only-base")
    load_path(only_base, f"{write_layout(tmp_path / 'base-layout', {'lk.test/base:1': images.base})}")
    start = reg.mark()
    res = registry.pull(only_base, f"{reg.host}/team/app:a")
    reqs = reg.requests(start)
    assert [la.action for la in res.layers] == ["Already exists", "Pull complete"]
    assert res.transferred_bytes == len(top.data) and res.skipped_bytes == len(base.data)
    got = [p for m, p, _ in reqs if m == "GET" and "/blobs/" in p]
    assert sorted(got) == sorted(f"/v2/team/app/blobs/{d}" for d in (images.app_a.id, top.digest))


def test_pull_by_digest(images, reg, pushed, tmp_path):
    st = Store(tmp_path / "by-digest")
    digest = pushed[0].digest
    res = registry.pull(st, f"{reg.host}/team/app@{digest}")
    assert res.digest == digest and res.image_id == images.app_a.id
    assert state.image_for_repo_digest(st, f"{reg.host}/team/app@{digest}") == images.app_a.id


# ---- skopeo, both ways ----------------------------------------------------------------------------

def test_skopeo_pulls_what_layerkit_pushed(images, reg, pushed, tmp_path):
    skopeo = need("skopeo", "skopeo")
    out = tmp_path / "oci"
    subprocess.run([skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                    f"docker://{reg.host}/team/app:a", f"oci:{out}:a"], check=True, capture_output=True)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed[0].digest
    manifest = json.loads((out / "blobs" / "sha256" / pushed[0].digest[7:]).read_bytes())
    assert manifest["config"]["digest"] == images.app_a.id


def test_layerkit_pulls_what_skopeo_pushed(images, reg, tmp_path):
    skopeo = need("skopeo", "skopeo")
    layout = write_layout(tmp_path / "c-layout", {"c": images.app_c})
    subprocess.run([skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                    f"oci:{layout}:c", f"docker://{reg.host}/skopeo/app:c"], check=True, capture_output=True)
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/skopeo/app:c"],
                         check=True, capture_output=True).stdout
    st = Store(tmp_path / "from-skopeo")
    res = registry.pull(st, f"{reg.host}/skopeo/app:c")
    assert res.image_id == images.app_c.id
    assert res.digest == sha(raw)
    assert st.image(f"{reg.host}/skopeo/app:c").diff_ids == [la.diff_id for la in images.app_c.layers]
    # Docker's schema 2 media types, as docker push writes them
    subprocess.run([skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
                    f"oci:{layout}:c", f"docker://{reg.host}/skopeo/app:v2s2"], check=True, capture_output=True)
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false",
                          f"docker://{reg.host}/skopeo/app:v2s2"], check=True, capture_output=True).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    res = registry.pull(Store(tmp_path / "v2s2"), f"{reg.host}/skopeo/app:v2s2")
    assert res.image_id == images.app_c.id and res.digest == sha(raw)


# ---- auth: htpasswd (basic) ------------------------------------------------------------------------

def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file: the bcrypt package, else htpasswd, else the crypt module."""
    try:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        pass
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", "-C", "4", "u", password], check=True, capture_output=True, text=True)
        return out.stdout.strip().split(":", 1)[1]
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (ImportError, AttributeError):
        pytest.fail("no bcrypt hasher for the htpasswd file: pip install bcrypt (or apt-get install apache2-utils)")


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory):
    """A registry with htpasswd basic auth (user alice)."""
    root = tmp_path_factory.mktemp("basic-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    r = start_registry(root, f"auth:\n  htpasswd:\n    realm: layerkit-test\n    path: {htpasswd}\n")
    yield r
    r.stop()


def test_basic_auth_login_push_pull_logout(images, basic_reg, tmp_path):
    host = basic_reg.host
    st = Store(images.store)
    with pytest.raises(RegistryAuthError) as exc:
        registry.push(st, "lk.test/base:1", f"{host}/private/base:1")
    msg = str(exc.value)
    assert "\n" not in msg and host in msg and "unauthorized" in msg
    assert f"layerkit login {host}" in msg
    with pytest.raises(RegistryAuthError, match="incorrect username or password"):
        credentials.login(host, USER, "wrong")
    assert not credentials.config_path().exists()

    credentials.login(host, USER, PASSWORD)
    path = credentials.config_path()
    assert path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(path.read_text())["auths"][host]["auth"]
    assert base64.b64decode(saved).decode() == f"{USER}:{PASSWORD}"
    assert credentials.credentials_for(host) == (USER, PASSWORD)

    res = registry.push(st, "lk.test/base:1", f"{host}/private/base:1")
    assert [la.action for la in res.layers] == ["Pushed"]
    pulled = registry.pull(Store(tmp_path / "s"), f"{host}/private/base:1")
    assert pulled.image_id == images.base.id

    assert credentials.logout(host) is True
    assert credentials.logout(host) is False
    assert credentials.credentials_for(host) is None
    with pytest.raises(RegistryAuthError):
        registry.pull(Store(tmp_path / "s2"), f"{host}/private/base:1")


def test_basic_auth_from_docker_config(images, basic_reg, tmp_path):
    host = basic_reg.host
    cfg = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    cfg.parent.mkdir(parents=True)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cfg.write_text(json.dumps({"auths": {f"http://{host}": {"auth": token},
                                         "https://index.docker.io/v1/": {"auth": token}}}))
    assert credentials.credentials_for(host) == (USER, PASSWORD)
    assert credentials.credentials_for("docker.io") == (USER, PASSWORD)
    res = registry.push(Store(images.store), "lk.test/base:1", f"{host}/docker-config/base:1")
    assert res.image_id == images.base.id
    # the secret is in no message
    with pytest.raises(errors.LayerkitError) as exc:
        registry.pull(Store(tmp_path / "s"), f"{host}/docker-config/base:nope")
    assert PASSWORD not in str(exc.value) and token not in str(exc.value)


# ---- auth: bearer tokens from a token server -----------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token server for docker-registry's ``auth.token``: RS256 JWTs signed with ``openssl``."""

    def __init__(self, root: Path) -> None:
        openssl = need("openssl", "openssl")
        self.key = root / "token.key"
        self.cert = root / "token.pem"
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", "/CN=layerkit-test-token", "-days", "2"],
                       check=True, capture_output=True)
        der = subprocess.run([openssl, "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.seen: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = parse_qs(urlsplit(self.path).query)
                header = self.headers.get("Authorization", "")
                user = None
                if header.startswith("Basic "):
                    u, _, p = base64.b64decode(header[6:]).decode().partition(":")
                    user = u if (u, p) == (USER, PASSWORD) else None
                server.seen.append({"scope": q.get("scope", []), "service": q.get("service"),
                                    "account": q.get("account"), "user": user})
                if user is None:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": server.token(user, q.get("service", [""])[0], q.get("scope", []))})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        """The token endpoint."""
        return f"http://127.0.0.1:{self.httpd.server_port}/token"

    def token(self, user: str, service: str, scopes: list[str]) -> str:
        """A signed JWT granting what the scopes ask."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "layerkit-test-issuer", "sub": user, "aud": service, "exp": now + 600, "nbf": now - 60,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing}.{_b64url(sig)}"

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory):
    """A registry whose auth is bearer tokens from :class:`TokenServer`."""
    root = tmp_path_factory.mktemp("token-registry")
    ts = TokenServer(root)
    r = start_registry(root, f"auth:\n  token:\n    realm: {ts.realm}\n    service: layerkit-test\n"
                             f"    issuer: layerkit-test-issuer\n    rootcertbundle: {ts.cert}\n")
    yield r, ts
    r.stop()
    ts.stop()


def test_bearer_token_flow(images, token_reg, tmp_path):
    reg_, ts = token_reg
    host = reg_.host
    st = Store(images.store)
    with pytest.raises(RegistryAuthError) as exc:
        registry.push(st, "lk.test/app-a:1", f"{host}/tok/app:a")
    assert "\n" not in str(exc.value) and host in str(exc.value)

    credentials.login(host, USER, PASSWORD)
    assert ts.seen[-1]["user"] == USER and ts.seen[-1]["service"] == ["layerkit-test"]
    ts.seen.clear()
    res = registry.push(st, "lk.test/app-a:1", f"{host}/tok/app:a")
    assert [la.action for la in res.layers] == ["Pushed", "Pushed"]
    assert ts.seen and ts.seen[0]["scope"] == ["repository:tok/app:pull,push"]
    assert ts.seen[0]["account"] == [USER]
    assert len(ts.seen) == 1  # one token for the whole push, fetched after the ping

    ts.seen.clear()
    res2 = registry.push(st, "lk.test/app-b:1", f"{host}/tok/other:b")
    assert [la.action for la in res2.layers] == ["Mounted from tok/app", "Pushed"]
    assert ts.seen[0]["scope"] == ["repository:tok/other:pull,push", "repository:tok/app:pull"]

    pulled = registry.pull(Store(tmp_path / "s"), f"{host}/tok/other:b")
    assert pulled.image_id == images.app_b.id
    credentials.logout(host)


# ---- bad input -----------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, str]:
    """Every path under the store with its content's sha256 (the lock file excluded)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[str(Path(dirpath, d).relative_to(root)) + "/"] = "dir"
        for f in filenames:
            p = Path(dirpath, f)
            rel = str(p.relative_to(root))
            if rel != "layerkit/lock":
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Stub:
    """A tiny registry (http.server) serving what a test puts in it, with injected faults."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}  # path -> how many more 500 answers
        self.fail_uploads = 0  # how many more blob upload PUTs answer 500
        self.fail_patches = 0  # how many more chunk PATCHes answer 500 (the chunk is dropped)
        self.max_body: int | None = None  # a blob upload PUT with a larger body answers 413
        self.uploads: dict[str, bytearray] = {}  # upload session -> bytes received by PATCH
        self.log: list[tuple[str, str, int]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
                stub.log.append((self.command, self.path, code))
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _session(self) -> str | None:
                m = re.fullmatch(r"/v2/.+/blobs/uploads/([0-9a-f]{32})", urlsplit(self.path).path)
                return m.group(1) if m else None

            def _send_range(self, code: int, session: str) -> None:
                stub.log.append((self.command, self.path, code))
                self.send_response(code)
                self.send_header("Location", self.path)
                self.send_header("Range", f"0-{len(stub.uploads[session]) - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PATCH(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                session = self._session()
                if session not in stub.uploads:
                    return self._send(404, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
                if stub.fail_patches > 0:
                    stub.fail_patches -= 1
                    return self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}')
                first, _, last = self.headers.get("Content-Range", "").partition("-")
                if int(first) != len(stub.uploads[session]) or int(last) - int(first) + 1 != len(body):
                    return self._send(416, b'{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}')
                stub.uploads[session] += body
                self._send_range(202, session)

            def do_DELETE(self) -> None:
                if stub.uploads.pop(self._session(), None) is None:
                    return self._send(404, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
                self._send(204)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                session = self._session()
                if session in stub.uploads and self.command == "GET":
                    return self._send_range(204, session)
                if stub.fail.get(path, 0) > 0:
                    stub.fail[path] -= 1
                    return self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}')
                if path == "/v2/":
                    return self._send(200, b"{}")
                m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
                if m and m.group(2) == "manifests" and (m.group(1), m.group(3)) in stub.manifests:
                    ctype, body = stub.manifests[(m.group(1), m.group(3))]
                    return self._send(200, body, ctype)
                if m and m.group(2) == "blobs" and m.group(3) in stub.blobs:
                    return self._send(200, stub.blobs[m.group(3)], "application/octet-stream")
                self._send(404, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}')

            do_HEAD = do_GET

            def do_POST(self) -> None:
                m = re.fullmatch(r"/v2/(.+)/blobs/uploads/", urlsplit(self.path).path)
                if not m:
                    return self._send(404)
                stub.log.append((self.command, self.path, 202))
                session = uuid.uuid4().hex
                stub.uploads[session] = bytearray()
                self.send_response(202)
                self.send_header("Location", f"/v2/{m.group(1)}/blobs/uploads/{session}?_state=x")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = urlsplit(self.path)
                if "/blobs/uploads/" in parts.path:
                    if stub.fail_uploads > 0:
                        stub.fail_uploads -= 1
                        return self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}')
                    if stub.max_body is not None and len(body) > stub.max_body:
                        return self._send(413, b'{"errors":[{"code":"SIZE_INVALID","message":"too large"}]}')
                    body = bytes(stub.uploads.pop(self._session(), b"")) + body
                    digest = parse_qs(parts.query)["digest"][0]
                    if sha(body) != digest:
                        return self._send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                    stub.blobs[digest] = body
                    return self._send(201)
                m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", parts.path)
                if not m:
                    return self._send(404)
                stub.manifests[(m.group(1), m.group(2))] = (self.headers.get("Content-Type", ""), body)
                self._send(201)

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.httpd.server_port}"

    def add(self, name: str, tag: str, img: Img) -> None:
        """Serve an image under ``name:tag`` (and by its manifest digest)."""
        for b in img.blobs()[1:]:
            self.blobs[b.digest] = b.data
        self.manifests[(name, tag)] = (OCI_MANIFEST, img.manifest.data)
        self.manifests[(name, img.manifest.digest)] = (OCI_MANIFEST, img.manifest.data)

    def add_index(self, name: str, tag: str, entries: list[tuple[Img, dict]]) -> str:
        """Serve an image index of these (image, platform) entries; returns its digest."""
        for img, _ in entries:
            self.add(name, img.manifest.digest, img)
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
               "manifests": [img.manifest.descriptor(platform=p) for img, p in entries]}
        data = json.dumps(doc).encode()
        self.manifests[(name, tag)] = (OCI_INDEX, data)
        return sha(data)

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub():
    """A fresh stub registry."""
    s = Stub()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def victim(tmp_path_factory, images) -> Path:
    """A store holding base, app-a and app-b, compared byte for byte around each failure."""
    root = tmp_path_factory.mktemp("victim") / "store"
    shutil.copytree(images.store, root)
    return root


def fails_cleanly(store_root: Path, call, exc_type, *must_name: str) -> str:
    """Run ``call``; it must raise ``exc_type`` with one line naming ``must_name``, the store untouched."""
    before = snapshot(store_root)
    with pytest.raises(exc_type) as exc:
        call()
    msg = str(exc.value)
    assert isinstance(exc.value, errors.LayerkitError)
    assert "\n" not in msg, msg
    for word in must_name:
        assert word in msg, (word, msg)
    assert snapshot(store_root) == before
    assert not any((store_root / "layerkit" / "tmp").iterdir())
    return msg


def test_connection_refused(victim):
    host = f"127.0.0.1:{free_port()}"
    msg = fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{host}/app:v1"),
                        RegistryUnreachable, host, f"{host}/app:v1", "connection refused")
    assert msg.startswith(f"pull {host}/app:v1: ")
    fails_cleanly(victim, lambda: registry.push(Store(victim), "lk.test/base:1", f"{host}/app:v1"),
                  RegistryUnreachable, host, "connection refused")


def test_dns_failure(victim, monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):  # no DNS query leaves this machine
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    fails_cleanly(victim, lambda: registry.pull(Store(victim), "no-such-registry.invalid/app:v1"),
                  RegistryUnreachable, "no-such-registry.invalid", "DNS", "app:v1")


def test_plain_http_only_for_localhost(images, reg, pushed, monkeypatch, tmp_path):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):  # registry.test is this machine, under a name that is not localhost
        return real("127.0.0.1" if host == "registry.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    ref = f"registry.test:{reg.port}/team/app:a"
    with pytest.raises(RegistryUnreachable, match="plain HTTP is used only for localhost or with "
                                                           "--insecure"):
        registry.pull(Store(tmp_path / "s"), ref)
    res = registry.pull(Store(tmp_path / "s"), ref, insecure=True)
    assert res.image_id == images.app_a.id


def test_unauthorized(victim, basic_reg):
    host = basic_reg.host
    msg = fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{host}/private/base:1"),
                        RegistryAuthError, host, "private/base:1", "unauthorized")
    assert "login" in msg


def test_tag_not_found(victim, reg, pushed):
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{reg.host}/team/app:nope"),
                  ManifestNotFound, reg.host, "team/app:nope", "manifest unknown", "tag nope")
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{reg.host}/no/such-repo:v1"),
                  errors.NotFound, reg.host, "no/such-repo:v1")


def test_500_then_recovers(images, stub, tmp_path):
    img = make_image([files_layer("flaky", 11)], "flaky")
    stub.add("flaky/app", "v1", img)
    stub.fail["/v2/flaky/app/manifests/v1"] = 2
    stub.fail[f"/v2/flaky/app/blobs/{img.layers[0].digest}"] = 1
    st = Store(tmp_path / "s")
    res = registry.pull(st, f"{stub.host}/flaky/app:v1")
    assert res.image_id == img.id
    codes = [c for m, p, c in stub.log if p == "/v2/flaky/app/manifests/v1"]
    assert codes == [500, 500, 200]
    assert [c for m, p, c in stub.log if p.endswith(img.layers[0].digest)] == [500, 200]


def test_push_retries_an_upload_that_failed(images, stub):
    stub.fail_uploads = 1
    res = registry.push(Store(images.store), "lk.test/base:1", f"{stub.host}/retry/base:1")
    assert [la.action for la in res.layers] == ["Pushed"]
    base = images.base.layers[0]
    assert stub.blobs[base.digest] == base.data
    puts = [c for m, p, c in stub.log if m == "PUT" and "/blobs/uploads/" in p]
    assert sorted(puts) == [201, 201, 500]  # the failed upload was sent again in a new session
    assert len([1 for m, _, _ in stub.log if m == "POST"]) == 3
    assert stub.manifests[("retry/base", "1")][1] == Store(images.store).blobs.read_bytes(res.digest)


def test_500_forever(victim, stub):
    img = make_image([files_layer("down", 12)], "down")
    stub.add("down/app", "v1", img)
    stub.fail["/v2/down/app/manifests/v1"] = 100
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/down/app:v1"),
                  RegistryError, stub.host, "down/app:v1", "500")
    assert len([1 for _, p, _ in stub.log if p == "/v2/down/app/manifests/v1"]) == retry.RETRIES


def test_blob_digest_mismatch(victim, stub):
    tar = tar_bytes({"app/x.bin": random.Random(13).randbytes(100_000)})
    good = layer(tar, compress=False)
    img = make_image([good], "bad-blob")
    stub.add("bad/blob", "v1", img)
    bad = bytearray(tar)
    bad[2048] ^= 0xFF  # inside the file's data: the tar still parses, the digest does not match
    stub.blobs[good.digest] = bytes(bad)
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/bad/blob:v1"),
                  errors.DigestMismatch, stub.host, "bad/blob:v1", good.digest)


def _liar(stub) -> tuple[Img, bytes, bytes]:
    """An image whose config claims the diff_id of ``real`` for a layer that holds ``fake`` (the blob's own
    digest is right, so only inflating it shows the lie)."""
    real = tar_bytes({"app/real.txt": b"real\n"})
    fake = tar_bytes({"app/fake.txt": b"not what the config says\n"})
    img = make_image([Blob(gzip.compress(fake, mtime=0), OCI_LAYER_GZIP, sha(real))], "liar")
    stub.add("liar/app", "v1", img)
    return img, real, fake


def test_pull_verify_refuses_a_layer_whose_diff_id_lies(victim, stub):
    img, real, fake = _liar(stub)
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/liar/app:v1", verify=True),
                  errors.DigestMismatch, stub.host, "liar/app:v1", img.layers[0].digest, sha(real))


def test_pulled_layer_diff_id_is_checked_on_first_use(stub, tmp_path, capsys):
    """A pull checks each blob against its digest; a layer's diff_id is checked when the layer is first
    indexed. Until then the layer's blob is never reused for another image on its config's word."""
    from layerkit.cli import main

    img, real, fake = _liar(stub)
    root = tmp_path / "store"
    res = registry.pull(Store(root), f"{stub.host}/liar/app:v1")
    assert [la.action for la in res.layers] == ["Pull complete"]
    capsys.readouterr()
    assert main(["--store", str(root), "ls", f"{stub.host}/liar/app:v1", "-R"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and img.layers[0].digest in err and sha(real) in err and sha(fake) in err, err
    assert "rmi" in err  # what to do next
    # an honest image with that diff_id gets its own blob, and reads its own bytes
    write_layout(tmp_path / "layout", {"honest:v1": make_image([layer(real)], "honest")})
    assert main(["--store", str(root), "load", str(tmp_path / "layout")]) == 0
    capsys.readouterr()
    assert main(["--store", str(root), "cat", "honest:v1", "/app/real.txt"]) == 0
    assert capsys.readouterr().out == "real\n"
    assert main(["--store", str(root), "ls", f"{stub.host}/liar/app:v1"]) == 1  # still refused
    # a docker-archive names layers by diff_id: saving the liar refuses it and writes nothing
    capsys.readouterr()
    assert main(["--store", str(root), "save", "-o", str(tmp_path / "liar.tar"), f"{stub.host}/liar/app:v1"]) == 1
    assert sha(real) in capsys.readouterr().err and not list(tmp_path.glob("*liar.tar*"))


def test_pull_then_first_use_indexes_like_verify(images, reg, pushed, tmp_path, capsys):
    """The first use of a pulled image shows the root filesystem that ``skopeo copy`` + ``umoci unpack``
    give for the same reference, and the same index that ``pull --verify`` makes."""
    from layerkit.cli import main

    lazy, eager = Store(tmp_path / "lazy"), Store(tmp_path / "eager")
    ref = f"{reg.host}/team/app:b"
    registry.pull(lazy, ref)
    assert not any((lazy.meta_dir / "layers").glob("*.idx"))  # nothing inflated yet
    need("umoci", "umoci")
    subprocess.run([need("skopeo", "skopeo"), "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                    f"oci:{tmp_path / 'layout'}:b"], check=True, capture_output=True)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:b", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    capsys.readouterr()
    assert main(["--store", str(lazy.root), "ls", ref, "-R", "--format", "json"]) == 0
    got = ls_tree(json.loads(capsys.readouterr().out))
    assert got == rootfs_tree(tmp_path / "bundle" / "rootfs") and len(got) > 100
    registry.pull(eager, ref, verify=True)
    a, b = lazy.image(ref), eager.image(ref)
    rows = [[(u.path, u.type, u.entry.size, u.entry.mode, u.layer) for u in st.image_view(im).walk("/")]
            for st, im in ((lazy, a), (eager, b))]
    assert rows[0] == rows[1] and len(rows[0]) > 100
    assert [la.size for la in a.layers] == [la.size for la in b.layers]
    # what the first use recorded goes with the image
    checked = {p.name for p in (lazy.meta_dir / "verified").iterdir()}
    assert checked == {la.digest[7:] for la in a.layers}
    lazy.remove_image(ref)
    assert not any((lazy.meta_dir / "verified").iterdir()) and not any((lazy.meta_dir / "layers").iterdir())


def test_manifest_not_json(victim, stub):
    stub.manifests[("bad/json", "v1")] = (OCI_MANIFEST, b"<html>surprise</html>")
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/bad/json:v1"),
                  errors.InvalidManifest, stub.host, "bad/json:v1", "not valid JSON")


def test_manifest_digest_mismatch(victim, stub):
    img = make_image([files_layer("dg", 14)], "dg")
    stub.add("bad/digest", "v1", img)
    wrong = sha(b"something else")
    stub.manifests[("bad/digest", wrong)] = (OCI_MANIFEST, img.manifest.data)
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/bad/digest@{wrong}"),
                  errors.DigestMismatch, stub.host, "bad/digest", wrong)


def test_index_platforms(victim, stub, tmp_path):
    os_, arch = host_platform()
    mine = make_image([files_layer("mine", 15)], "mine")
    other = make_image([files_layer("other", 16)], "other", arch="s390x")
    arm = make_image([files_layer("arm", 17)], "arm", arch="arm64")
    stub.add_index("multi/app", "none", [(other, {"os": "linux", "architecture": "s390x"}),
                                        (other, {"os": "windows", "architecture": arch})])
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/multi/app:none"),
                  PlatformNotFound, stub.host, "multi/app:none", f"{os_}/{arch}", "linux/s390x")

    idx = stub.add_index("multi/app", "v1", [(mine, {"os": os_, "architecture": arch}),
                                            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})])
    st = Store(tmp_path / "s")
    res = registry.pull(st, f"{stub.host}/multi/app:v1")
    assert res.image_id == mine.id and res.digest == idx and res.platform == f"{os_}/{arch}"
    res = registry.pull(st, f"{stub.host}/multi/app:v1", platform="linux/arm64")
    assert res.image_id == arm.id and res.platform == "linux/arm64/v8"
    with pytest.raises(RegistryError, match="expected os/arch"):
        registry.pull(st, f"{stub.host}/multi/app:v1", platform="arm64")


def test_interrupted_download_resumes(stub, tmp_path):
    img = make_image([files_layer("resume", 18, size=3_000_000)], "resume")
    stub.add("resume/app", "v1", img)
    digest = img.layers[0].digest
    full = stub.blobs[digest]
    stub.blobs[digest] = full[: len(full) // 2]  # the first answer is cut short ...
    calls = []
    orig = pulling.BlobReader._connect

    def connect(self):
        calls.append(self.pos)
        if len(calls) == 2:
            stub.blobs[digest] = full  # ... the second one is whole (the stub ignores Range: 200 and skip)
        return orig(self)

    pulling.BlobReader._connect = connect
    try:
        res = registry.pull(Store(tmp_path / "s"), f"{stub.host}/resume/app:v1")
    finally:
        pulling.BlobReader._connect = orig
    assert res.image_id == img.id
    assert calls[0] == 0 and calls[1] > 0


# ---- concurrent pull --------------------------------------------------------------------------------

def test_concurrent_pull_reports_every_layer(images, reg, tmp_path, monkeypatch):
    """Five layers (one of them twice) on four workers: each blob is fetched once, every layer is
    reported once, the progress callback is never entered by two threads at a time, and the lines are
    in the manifest's order whatever order the layers finished in."""
    monkeypatch.setattr(pulling, "pull_workers", lambda verify=True: 4)
    parts = [files_layer(f"multi{i}", 100 + i, size=1_500_000 + 300_000 * i) for i in range(5)]
    img = make_image([parts[0], parts[1], parts[2], parts[1], parts[3], parts[4]], "multi")
    src = Store(tmp_path / "src")
    load_path(src, f"{write_layout(tmp_path / 'multi-layout', {'lk.test/multi:1': img})}")
    registry.push(src, "lk.test/multi:1", f"{reg.host}/conc/app:1")

    seen: list[ProgressEvent] = []
    busy = threading.Lock()
    overlaps = []

    def progress(event: ProgressEvent) -> None:
        if not busy.acquire(blocking=False):
            overlaps.append(event)
            return
        try:
            time.sleep(0.003)  # widen the window a second caller would hit
            seen.append(event)
        finally:
            busy.release()

    st = Store(tmp_path / "dest")
    start = reg.mark()
    res = registry.pull(st, f"{reg.host}/conc/app:1", progress=progress)
    reqs = reg.requests(start)
    assert not overlaps
    assert res.image_id == img.id
    digests = [la.digest for la in img.layers]
    assert [la.digest for la in res.layers] == digests
    assert [la.action for la in res.layers] == ["Pull complete"] * 6
    done = [e.digest for e in seen if e.status == Status.DONE]
    assert sorted(done) == sorted(p.digest for p in parts)  # once per blob
    assert res.transferred_bytes == sum(len(p.data) for p in parts)
    assert bytes_reported(seen) == res.transferred_bytes
    for p in parts:
        got = [e.done for e in seen if e.digest == p.digest and e.status == Status.DOWNLOADING]
        assert got == sorted(got) and got[-1] == len(p.data)
    got = [path for m, path, _ in reqs if m == "GET" and "/blobs/" in path]
    assert sorted(got) == sorted(f"/v2/conc/app/blobs/{d}" for d in [img.id] + [p.digest for p in parts])
    assert res.lines()[1:7] == [f"{d[7:19]}: Pull complete" for d in digests]
    assert st.image(f"{reg.host}/conc/app:1").diff_ids == [la.diff_id for la in img.layers]
    assert not any((tmp_path / "dest" / "layerkit" / "tmp").iterdir())


def test_concurrent_pull_with_a_bad_layer_leaves_the_store_as_it_was(victim, stub, monkeypatch):
    monkeypatch.setattr(pulling, "pull_workers", lambda verify=True: 4)
    parts = [files_layer(f"part{i}", 200 + i, size=400_000) for i in range(5)]
    tar = tar_bytes({"app/middle.bin": random.Random(205).randbytes(400_000)})
    parts[2] = layer(tar, compress=False)
    img = make_image(parts, "bad-middle")
    stub.add("bad/middle", "v1", img)
    bad = bytearray(tar)
    bad[4096] ^= 0xFF  # inside the file's data: the tar still parses, the blob digest does not match
    stub.blobs[parts[2].digest] = bytes(bad)
    fails_cleanly(victim, lambda: registry.pull(Store(victim), f"{stub.host}/bad/middle:v1"),
                  errors.DigestMismatch, stub.host, "bad/middle:v1", parts[2].digest)


class _SlowReader(io.RawIOBase):
    """A layer stream that hands out 64 KiB per read, slowly, and counts the reads."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._buf = io.BytesIO(data)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        time.sleep(0.005)
        return self._buf.read(min(65536, n if n is not None and n >= 0 else 65536))


def test_concurrent_ingest_stops_the_other_layers_at_the_first_failure(tmp_path):
    """ImportBatch with workers: a layer that fails stops the slow one beside it at its next read, and
    no temporary blob and no layer of the image survive; nothing is pending afterwards."""
    from layerkit.formats.importer import ImportBatch, LayerSource

    big = layer(tar_bytes({"big.bin": random.Random(30).randbytes(4_000_000)}), compress=False)
    small = files_layer("small", 31)
    img = make_image([big, small], "stop")
    slow = _SlowReader(big.data)
    wrong = sha(b"not the layer")
    sources = [LayerSource(open=lambda: slow, label="big layer", size=len(big.data), digest=big.digest),
               LayerSource(open=lambda: io.BytesIO(small.data), label="small layer", size=len(small.data),
                           digest=wrong)]
    st = Store(tmp_path / "s")
    st.ensure()
    before = snapshot(tmp_path / "s")
    with pytest.raises(errors.DigestMismatch, match="small layer"), ImportBatch(st) as batch:
        batch.add(img.config.data, sources, [], "stop", workers=4)
    assert slow.reads < len(big.data) // 65536 // 2  # stopped early, not read to the end
    assert snapshot(tmp_path / "s") == before
    assert not any((tmp_path / "s" / "layerkit" / "tmp").iterdir())
    assert not batch._pending


# ---- chunked upload -----------------------------------------------------------------------------

def test_push_in_chunks_to_a_real_registry(images, reg, tmp_path, monkeypatch):
    """A blob over the threshold goes up in PATCHes of UPLOAD_CHUNK bytes (Content-Range), then one PUT
    with its digest; smaller blobs stay monolithic; the image pulls back whole."""
    monkeypatch.setattr(pushing, "CHUNKED_THRESHOLD", 100_000)
    monkeypatch.setattr(pushing, "UPLOAD_CHUNK", 65_536)
    big = files_layer("chunky", 40, size=400_000)
    img = make_image([big], "chunky")
    src = Store(tmp_path / "src")
    load_path(src, f"{write_layout(tmp_path / 'chunky-layout', {'lk.test/chunky:1': img})}")
    seen: list[ProgressEvent] = []
    start = reg.mark()
    res = registry.push(src, "lk.test/chunky:1", f"{reg.host}/chunks/app:1", progress=seen.append)
    reqs = reg.requests(start)
    assert [la.action for la in res.layers] == ["Pushed"]
    patches = [(p, c) for m, p, c in reqs if m == "PATCH"]
    assert len(patches) == -(-len(big.data) // 65_536) and all(c == 202 for _, c in patches)
    assert blob_puts(reqs) == {big.digest: 1, img.id: 1}  # each blob closed by one PUT with its digest
    sent = [e.done for e in seen if e.digest == big.digest and e.status == Status.UPLOADING]
    assert sent == sorted(sent) and sent[-1] == len(big.data)
    pulled = registry.pull(Store(tmp_path / "back"), f"{reg.host}/chunks/app:1")
    assert pulled.image_id == img.id and pulled.digest == res.digest


def test_push_falls_back_to_chunks_when_the_whole_blob_is_refused(images, stub, monkeypatch):
    """A 413 to the monolithic PUT (a proxy's body limit) leads to a chunked upload in a new session; a
    chunk that fails is sent again from the offset the registry reports (GET on the session)."""
    monkeypatch.setattr(pushing, "UPLOAD_CHUNK", 65_536)
    base = images.base.layers[0]
    assert len(base.data) > 3 * 65_536
    stub.max_body = 100_000
    stub.fail_patches = 1
    res = registry.push(Store(images.store), "lk.test/base:1", f"{stub.host}/proxy/base:1")
    assert [la.action for la in res.layers] == ["Pushed"]
    assert stub.blobs[base.digest] == base.data
    log = [(m, c) for m, p, c in stub.log if "/blobs/uploads/" in p]
    assert ("PUT", 413) in log and ("PATCH", 500) in log and ("GET", 204) in log
    assert log.count(("PATCH", 202)) == -(-len(base.data) // 65_536)
    assert ("DELETE", 204) in log  # the refused session was cancelled
    assert not stub.uploads  # every session closed


def test_credentials_files(tmp_path):
    assert transport.normalize_registry("https://index.docker.io/v1/") == "docker.io"
    assert transport.normalize_registry("HTTPS://Registry.Example.com:5000/v2/") == "registry.example.com:5000"
    assert transport.normalize_registry("") == "docker.io"
    assert credentials.credentials_for("example.com") is None
    credentials.save_credentials("docker.io", "bob", "pw:with:colons")
    assert credentials.credentials_for("index.docker.io") == ("bob", "pw:with:colons")
    assert "https://index.docker.io/v1/" in json.loads(credentials.config_path().read_text())["auths"]
    bad = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"auths": {"example.com": {"auth": "!!notbase64"}}}))
    with pytest.raises(credentials.CredentialsError) as exc:
        credentials.credentials_for("example.com")
    assert "notbase64" not in str(exc.value)
    assert auth.parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="a b"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "a b"})
    assert transport.is_localhost("[::1]:5000") and transport.is_localhost("localhost")
    assert not transport.is_localhost("registry.example.com")


def test_cli_push_pull_and_the_manifest_digest(images, reg, tmp_path, capsys):
    """The CLI verbs: push prints Docker's lines, pull into a fresh store keeps the registry's manifest
    digest (the store holds the manifest byte for byte), and a bad reference is one error line."""
    from layerkit.cli import main

    ref = f"{reg.host}/cli/app:a"
    assert main(["--store", str(images.store), "push", "lk.test/app-a:1", ref]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"The push refers to repository [{reg.host}/cli/app]")
    pushed_digest = next(line.split("digest: ")[1].split()[0] for line in out.splitlines() if "digest: " in line)
    fresh = tmp_path / "fresh"
    assert main(["--store", str(fresh), "pull", ref, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["digest"] == pushed_digest and data["image_id"] == images.app_a.id
    assert Store(fresh).image(ref).manifest_digest == pushed_digest
    assert main(["--store", str(fresh), "pull", f"{reg.host}/cli/App:a"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("layerkit: error:") and "must be lowercase" in err[0]
