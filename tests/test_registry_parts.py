"""The registry client's parts one by one (issue 13), and the typed progress events of real transfers.

* auth: ``WWW-Authenticate`` parsing, the basic header, and the bearer flow against a token server run
  here (scopes merged, the token cached, an expired one fetched again, refusals one line without secrets);
* retry: the backoff and which answers are tried again, through the real HTTP client against a server
  that fails on purpose and a port nothing listens on;
* errors: the distribution spec's error bodies (from a real ``docker-registry`` too) decoded into
  layerkit's exceptions, each keeping its cause;
* progress: the events of a real push, pull, load and first-use indexing (a layer the registry has is
  ``exists``, a mounted one ``mounted``), the CLI drawing them on a terminal only while printing the same
  lines, and ``df`` counting running containers by their state.

Needs the Debian packages ``docker-registry``, ``runc`` and ``busybox-static``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from builders import write_layout
from services import free_port, start_registry

from layerkit import commands
from layerkit.engine import store as store_module
from layerkit.engine.container import find_container
from layerkit.engine.progress import ProgressEvent, Status, Tally
from layerkit.engine.store import Store
from layerkit.errors import InvalidManifest
from layerkit.examples import busybox_archive
from layerkit.formats import registry
from layerkit.formats.load import load_path
from layerkit.formats.registry.auth import Authenticator, basic_header, parse_challenge, token_url
from layerkit.formats.registry.errors import (
    Diagnostic,
    ManifestNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
    decode_errors,
    error_for,
    status_message,
)
from layerkit.formats.registry.retry import RetryPolicy
from layerkit.formats.registry.transport import RegistryClient

pytestmark = pytest.mark.tools
ROOT = Path(__file__).resolve().parent.parent


class Canned(ThreadingHTTPServer):
    """A local HTTP server answering each path from a queue of (status, headers, body); it records what
    it was asked (method, path with query, headers). The last answer of a queue repeats."""

    daemon_threads = True

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, dict, bytes]]] = {}
        self.seen: list[tuple[str, str, dict]] = []

        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.seen.append((self.command, self.path, dict(self.headers)))
                queue = server.answers.get(urlsplit(self.path).path) or [(404, {}, b"")]
                status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def canned():
    server = Canned()
    yield server
    server.close()


def spec_errors(*errors: tuple[str, str]) -> bytes:
    """An error body as the distribution spec writes it."""
    return json.dumps({"errors": [{"code": c, "message": m, "detail": {"x": 1}} for c, m in errors]}).encode()


# ---- auth ---------------------------------------------------------------------------------------------

def test_parse_challenge_forms():
    header = 'Bearer realm="https://auth.example/token?a=1",service="reg, eu",scope="repository:x:pull",error="a\\"b"'
    assert parse_challenge(header) == ("bearer", {"realm": "https://auth.example/token?a=1", "service": "reg, eu",
                                                  "scope": "repository:x:pull", "error": 'a"b'})
    assert parse_challenge('BASIC Realm=registry') == ("basic", {"realm": "registry"})
    assert parse_challenge("Basic") == ("basic", {})
    assert parse_challenge("") is None and parse_challenge("   ") is None and parse_challenge(None) is None


def test_basic_header_is_utf8_and_token_url_keeps_the_realm_query():
    value = basic_header(("alice", "pässword"))
    assert value.startswith("Basic ") and base64.b64decode(value[6:]) == "alice:pässword".encode()
    url = token_url("https://auth.example/token?x=1", "reg", ["repository:a:pull,push", "repository:b:pull"], "bob")
    parts = urlsplit(url)
    assert parts.path == "/token" and parse_qs(parts.query) == {
        "x": ["1"], "service": ["reg"], "scope": ["repository:a:pull,push", "repository:b:pull"], "account": ["bob"]}
    assert token_url("https://auth.example/token", None, [], None) == "https://auth.example/token"


def _authenticator(canned: Canned, credentials=None, scopes=("repository:op:pull,push",)) -> Authenticator:
    client = RegistryClient(canned.host, "push x", credentials=credentials, scopes=list(scopes),
                            retry=RetryPolicy(sleep=lambda s: None))
    return client.auth


def test_bearer_flow_merges_scopes_caches_and_refreshes(canned):
    canned.answers["/token"] = [(200, {}, b'{"token": "t1"}'), (200, {}, b'{"access_token": "t2"}')]
    challenge = f'Bearer realm="http://{canned.host}/token",service="reg",scope="repository:ch:pull"'
    auth = _authenticator(canned)
    assert auth.answer(challenge) and auth.header == "Bearer t1"
    method, path, headers = canned.seen[-1]
    assert parse_qs(urlsplit(path).query) == {"service": ["reg"],
                                              "scope": ["repository:op:pull,push", "repository:ch:pull"]}
    assert "Authorization" not in headers  # anonymous
    # refused again with the token it was given for these scopes: expired, so a new one is fetched, once
    assert auth.answer(challenge) and auth.header == "Bearer t2"
    assert len(canned.seen) == 2


def test_bearer_flow_with_credentials_and_its_refusals(canned):
    challenge = f'Bearer realm="http://{canned.host}/token",service="reg"'
    canned.answers["/token"] = [(200, {}, b'{"token": "t"}')]
    auth = _authenticator(canned, credentials=("alice", "s3cret"))
    assert auth.answer(challenge)
    _, path, headers = canned.seen[-1]
    assert parse_qs(urlsplit(path).query)["account"] == ["alice"]
    assert headers["Authorization"] == basic_header(("alice", "s3cret"))

    canned.answers["/token"] = [(401, {}, b"")]
    with pytest.raises(RegistryAuthError) as exc:
        _authenticator(canned, credentials=("alice", "s3cret")).answer(challenge)
    assert "refused the credentials" in str(exc.value) and "s3cret" not in str(exc.value)
    with pytest.raises(RegistryAuthError, match="log in first: layerkit login"):
        _authenticator(canned).answer(challenge)
    canned.answers["/token"] = [(200, {}, b'{"nope": 1}')]
    with pytest.raises(RegistryAuthError, match="gave no token"):
        _authenticator(canned).answer(challenge)
    canned.answers["/token"] = [(503, {}, b"")]
    with pytest.raises(RegistryError, match="token server .* answered 503"):
        _authenticator(canned).answer(challenge)
    with pytest.raises(RegistryAuthError, match="without a usable realm"):
        _authenticator(canned).answer('Bearer realm="ftp://x/token"')


def test_basic_challenge():
    client = RegistryClient("127.0.0.1:1", "pull x", credentials=("bob", "pw"))
    assert client.auth.answer('Basic realm="r"') and client.auth.header == basic_header(("bob", "pw"))
    assert not client.auth.answer('Basic realm="r"')  # nothing new to try: the 401 stands
    assert not RegistryClient("127.0.0.1:1", "pull x").auth.answer('Basic realm="r"')  # no credentials
    assert not RegistryClient("127.0.0.1:1", "pull x").auth.answer("Negotiate abc")


# ---- retry --------------------------------------------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_and_which_answers_are_retried():
    policy = RetryPolicy()
    assert [policy.delay(i) for i in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(policy.retry_status(s) for s in (500, 502, 503, 504))
    assert not any(policy.retry_status(s) for s in (200, 400, 401, 404, 429, 501, 505))


def test_server_errors_are_tried_again_then_given_up(canned):
    sleeps: list[float] = []
    canned.answers["/v2/"] = [(503, {}, b""), (502, {}, b""), (200, {}, b"{}")]
    client = RegistryClient(canned.host, "pull x", retry=RetryPolicy(sleep=sleeps.append))
    resp = client.send("GET", f"http://{canned.host}/v2/")
    assert resp.status_code == 200 and sleeps == [0.25, 0.5] and len(canned.seen) == 3
    canned.answers["/v2/x"] = [(500, {}, b"")]
    sleeps.clear()
    assert client.send("GET", f"http://{canned.host}/v2/x").status_code == 500  # the last answer stands
    assert sleeps == [0.25, 0.5, 1.0]
    canned.answers["/v2/y"] = [(501, {}, b""), (200, {}, b"")]
    sleeps.clear()
    assert client.send("GET", f"http://{canned.host}/v2/y").status_code == 501 and sleeps == []


def test_refused_connection_is_tried_again_and_keeps_its_cause():
    sleeps: list[float] = []
    host = f"127.0.0.1:{free_port()}"
    client = RegistryClient(host, f"pull {host}/app:v1", retry=RetryPolicy(tries=3, sleep=sleeps.append))
    with pytest.raises(RegistryUnreachable, match="connection refused") as exc:
        client.send("GET", f"http://{host}/v2/")
    assert sleeps == [0.25, 0.5] and not exc.value.permanent
    assert isinstance(exc.value.__cause__, requests.ConnectionError)


def test_a_name_that_does_not_resolve_is_not_tried_again(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    sleeps: list[float] = []
    client = RegistryClient("reg.invalid", "pull reg.invalid/app", retry=RetryPolicy(sleep=sleeps.append))
    with pytest.raises(RegistryUnreachable, match="DNS lookup failed") as exc:
        client.send("GET", "https://reg.invalid/v2/")
    assert exc.value.permanent and sleeps == []


# ---- errors -------------------------------------------------------------------------------------------

def test_decode_errors_reads_the_spec_document_and_nothing_else():
    body = spec_errors(("MANIFEST_UNKNOWN", "manifest unknown"), ("NAME_UNKNOWN", ""))
    assert decode_errors(body) == [Diagnostic("MANIFEST_UNKNOWN", "manifest unknown", {"x": 1}),
                                   Diagnostic("NAME_UNKNOWN", "", {"x": 1})]
    assert decode_errors(b'{"errors": [1, {"code": 7, "message": ["m"]}]}') == [Diagnostic("", "", None)]
    for body in (b"", b"<html>502 Bad Gateway</html>", b"[]", b'{"errors": {}}', b'{"error": "x"}',
                 b"[" * 100_000, spec_errors(("DENIED", "x" * 70_000))):  # the last one cut at 64 KiB
        assert decode_errors(body) == []


def test_errors_by_status_name_the_operation_and_the_registry(canned):
    body = spec_errors(("UNAUTHORIZED", "authentication required"))
    canned.answers.update({"/401": [(401, {}, body)], "/403": [(403, {}, spec_errors(("DENIED", "no")))],
                           "/404": [(404, {}, b"not json")], "/500": [(500, {}, b"")]})
    client = RegistryClient(canned.host, "push h/app:1", retry=RetryPolicy(tries=1))
    base = f"http://{canned.host}"
    err = error_for(requests.get(f"{base}/401"), "push h/app:1", "h", login_hint="; log in")
    assert isinstance(err, RegistryAuthError)
    assert str(err) == "push h/app:1: unauthorized: authentication required by registry h (401 Unauthorized: " \
                       "authentication required); log in"
    assert str(error_for(requests.get(f"{base}/403"), "w", "h")) == "w: denied by registry h (403 Forbidden: no)"
    err = error_for(requests.get(f"{base}/404"), "w", "h")
    assert type(err) is RegistryError and str(err) == "w: registry h answered 404 (404 Not Found)"
    assert isinstance(error_for(requests.get(f"{base}/404"), "w", "h", not_found="no tag"), ManifestNotFound)
    assert str(error_for(requests.get(f"{base}/500"), "w", "h", tries=4)).endswith("(after 4 tries)")
    assert status_message(requests.head(f"{base}/403")) == "403 Forbidden"  # a HEAD answer has no body
    client.close()


def test_a_real_registry_error_is_decoded(reg, tmp_path):
    resp = requests.get(f"http://{reg.host}/v2/nothing/here/manifests/v1")
    assert [d.code for d in decode_errors(resp.content)] == ["MANIFEST_UNKNOWN"]
    with pytest.raises(ManifestNotFound, match=f"pull {reg.host}/nothing/here:v1: manifest unknown: registry "
                                               f"{reg.host} has no tag v1") as exc:
        registry.pull(Store(tmp_path / "s"), f"{reg.host}/nothing/here:v1")
    assert "MANIFEST_UNKNOWN" not in str(exc.value) and "manifest unknown" in str(exc.value)


def test_translated_errors_keep_their_cause(canned, tmp_path):
    canned.answers["/v2/"] = [(200, {}, b"{}")]
    canned.answers["/v2/bad/app/manifests/v1"] = [(200, {"Content-Type": "application/json"}, b"{not json")]
    with pytest.raises(InvalidManifest, match="is not valid JSON") as exc:
        registry.pull(Store(tmp_path / "s"), f"{canned.host}/bad/app:v1")
    assert isinstance(exc.value.__cause__, ValueError)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("sha256/*"))


# ---- progress events of real transfers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """No test reads the real credentials files."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def _layer(name: str, size: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = size
        tf.addfile(ti, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, list[bytes]]:
    """A layout of a two-layer image (lk.test/events:1) and its layer tars."""
    root = tmp_path_factory.mktemp("events")
    layers = [_layer("base.bin", 300_000), _layer("app.bin", 200_000)]
    return write_layout(root / "layout", layers, "lk.test/events:1"), layers


def by_layer(events: list[ProgressEvent]) -> dict[str | None, list[Status]]:
    """Each item's statuses in order, repeats of one status folded."""
    out: dict[str | None, list[Status]] = {}
    for e in events:
        seq = out.setdefault(e.digest, [])
        if not seq or seq[-1] != e.status:
            seq.append(e.status)
    return out


def test_push_and_pull_events(image, reg, tmp_path):
    layout, layers = image
    src = Store(tmp_path / "src")
    load_path(src, str(layout))
    img = src.image("lk.test/events:1")
    digests = [la.digest for la in img.layers]

    seen: list[ProgressEvent] = []
    res = registry.push(src, "lk.test/events:1", f"{reg.host}/ev/one:1", progress=seen.append)
    assert by_layer(seen) == {d: [Status.WAITING, Status.UPLOADING, Status.DONE] for d in digests}
    for la in img.layers:
        sent = [e.done for e in seen if e.digest == la.digest and e.status == Status.UPLOADING]
        assert sent == sorted(sent) and sent[-1] == la.compressed_size
    assert [e.total for e in seen if e.status == Status.WAITING] == [la.compressed_size for la in img.layers]
    tally = Tally()
    for e in seen:
        tally.add(e)
    assert tally.total == res.transferred_bytes == sum(la.compressed_size for la in img.layers)

    seen.clear()  # the registry has every layer now
    again = registry.push(src, "lk.test/events:1", f"{reg.host}/ev/one:1", progress=seen.append)
    assert by_layer(seen) == {d: [Status.WAITING, Status.EXISTS] for d in digests}
    assert [la.action for la in again.layers] == ["Layer already exists"] * 2

    seen.clear()  # another repository of the same registry: mounted from the first
    mounted = registry.push(src, "lk.test/events:1", f"{reg.host}/ev/two:1", progress=seen.append)
    assert by_layer(seen) == {d: [Status.WAITING, Status.MOUNTED] for d in digests}
    assert [la.action for la in mounted.layers] == ["Mounted from ev/one"] * 2
    assert mounted.lines()[1:3] == [f"{d[7:19]}: Mounted from ev/one" for d in reversed(digests)]

    dest = Store(tmp_path / "dest")
    seen.clear()
    pulled = registry.pull(dest, f"{reg.host}/ev/two:1", progress=seen.append)
    assert by_layer(seen) == {d: [Status.WAITING, Status.DOWNLOADING, Status.DONE] for d in digests}
    assert pulled.lines()[1:3] == [f"{d[7:19]}: Pull complete" for d in digests]
    seen.clear()
    registry.pull(dest, f"{reg.host}/ev/one:1", progress=seen.append)
    assert by_layer(seen) == {d: [Status.WAITING, Status.EXISTS] for d in digests}

    # first use of the pulled image indexes its layers: indexing events, then done, for each
    monkey = store_module.INDEX_PROGRESS_MIN
    store_module.INDEX_PROGRESS_MIN = 0
    try:
        seen.clear()
        fresh = Store(tmp_path / "dest", progress=seen.append)
        fresh.image_view(fresh.image(f"{reg.host}/ev/one:1"))
    finally:
        store_module.INDEX_PROGRESS_MIN = monkey
    assert by_layer(seen) == {d: [Status.INDEXING, Status.DONE] for d in digests}
    assert all(e.total == len(layers[digests.index(e.digest)]) for e in seen)


def test_load_events(image, tmp_path):
    layout, layers = image
    seen: list[ProgressEvent] = []
    st = Store(tmp_path / "s")
    load_path(st, str(layout), progress=seen.append)
    sizes = {la.digest: la.compressed_size for la in st.image("lk.test/events:1").layers}
    assert [(e.digest, e.status, e.done) for e in seen] == [(d, Status.DONE, n) for d, n in sizes.items()]
    seen.clear()
    load_path(st, str(layout), progress=seen.append)
    assert [(e.digest, e.status) for e in seen] == [(d, Status.EXISTS) for d in sizes]


def _cli_pull(store: Path, ref: str, stderr_tty: bool) -> tuple[int, str, bytes]:
    """``layerkit --store STORE pull REF`` in a child; stderr on a pseudo-terminal or a pipe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "layerkit", "--store", str(store), "pull", ref]
    if not stderr_tty:
        p = subprocess.run(argv, capture_output=True, env=env, timeout=120)
        return p.returncode, p.stdout.decode(), p.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm sizes its bar by it
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    err = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    proc.wait(timeout=120)
    os.close(leader)
    return proc.returncode, out, err


def test_cli_draws_bars_on_a_terminal_only_and_prints_the_same_lines(image, reg, tmp_path):
    layout, _ = image
    src = Store(tmp_path / "src")
    load_path(src, str(layout))
    ref = f"{reg.host}/ev/cli:1"
    registry.push(src, "lk.test/events:1", ref)
    rc, out_tty, err_tty = _cli_pull(tmp_path / "a", ref, stderr_tty=True)
    assert rc == 0, err_tty
    assert f"pull {ref}".encode() in err_tty and b"B/s" in err_tty  # tqdm's bar, with its rate ...
    assert b": Complete]" in err_tty  # ... and the last layer's state
    rc, out_pipe, err_pipe = _cli_pull(tmp_path / "b", ref, stderr_tty=False)
    assert rc == 0 and err_pipe == b""  # nothing drawn when stderr is not a terminal
    assert out_tty == out_pipe and out_pipe.splitlines()[0] == "1: Pulling from ev/cli"
    assert out_pipe.splitlines()[-1] == f"Status: Downloaded newer image for {ref}"


# ---- df reads the container's state ---------------------------------------------------------------------

def test_df_counts_running_containers_by_state(tmp_path):
    st = Store(tmp_path / "s")
    load_path(st, str(busybox_archive(tmp_path / "busybox.tar")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    commands.create(st, "busybox", ["true"], "idle")
    sleeper = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(st.root), "run", "--name",
                                "sleeper", "busybox", "sleep", "30"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            c = find_container(Store(st.root), "sleeper", missing_ok=True)
            if c is not None and c.state == "running":
                break
            assert sleeper.poll() is None and time.monotonic() < deadline, sleeper.stderr.read()
            time.sleep(0.1)
        find_container(Store(st.root), "idle").write("/scratch", b"x" * 700)
        summary = {r["type"]: r for r in commands.df(Store(st.root)).to_json()["summary"]}
        assert summary["Containers"]["total"] == 2 and summary["Containers"]["active"] == 1
        assert summary["Containers"]["reclaimable"] == 700  # what the stopped one holds
    finally:
        subprocess.run([sys.executable, "-m", "layerkit", "--store", str(st.root), "rm", "-f", "sleeper", "idle"],
                       env=env, capture_output=True, timeout=60)
        sleeper.wait(timeout=30)


def test_only_the_faces_draw():
    """No module of the engine, the transports or ``commands`` imports tqdm, not even inside a function:
    they report events, the faces draw them."""
    import ast

    offenders = []
    for path in [*(ROOT / "layerkit" / "engine").rglob("*.py"), *(ROOT / "layerkit" / "formats").rglob("*.py"),
                 ROOT / "layerkit" / "commands.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "tqdm"]
    assert offenders == []


# ---- listings from a hostile registry -------------------------------------------------------------------

def test_a_catalog_page_linking_to_another_host_is_refused_before_credentials_go_there(canned):
    """The ``next`` link of a catalog page names another server: the listing stops with one line naming the
    link, and that server is never asked (the client's Authorization would have gone with the request)."""
    from layerkit.errors import RegistryError
    from layerkit.formats.registry.listing import catalog

    thief = Canned()
    try:
        canned.answers["/v2/"] = [(200, {}, b"{}")]
        link = f'<http://{thief.host}/v2/_catalog?n=1000&last=a>; rel="next"'
        canned.answers["/v2/_catalog"] = [(200, {"Content-Type": "application/json", "Link": link},
                                           json.dumps({"repositories": ["a"]}).encode())]
        client = RegistryClient(canned.host, "scan x", credentials=("bob", "secret"), retry=RetryPolicy(tries=1))
        with pytest.raises(RegistryError, match=rf"links the next catalog page to 'http://{thief.host}/v2/_catalog"):
            catalog(client)
        assert thief.seen == []
        # a link on the same registry but to another path (another repository's tags) is refused too
        canned.answers["/v2/_catalog"] = [(200, {"Link": '</v2/secret/tags/list?n=1>; rel="next"'},
                                           json.dumps({"repositories": ["a"]}).encode())]
        with pytest.raises(RegistryError, match="which is not /v2/_catalog"):
            catalog(client)
        assert not [p for _, p, _ in canned.seen if p.startswith("/v2/secret")]
    finally:
        thief.close()


def test_a_credentials_file_error_carries_no_secret_in_its_traceback(tmp_path):
    """A credentials file that is not JSON: the error names the file, and no exception chained to it (what a
    traceback, a debugger or a log of the error reaches) holds the file's contents: a JSONDecodeError keeps
    the whole document in ``doc``."""
    import traceback

    from layerkit.errors import CredentialsError
    from layerkit.formats.registry.credentials import _read_config

    bad = tmp_path / "auth.json"
    bad.write_text('{"auths": {"r": {"auth": "c2VjcmV0LXBhc3N3b3Jk"}} SECRET-TAIL')
    with pytest.raises(CredentialsError) as info:
        _read_config(bad)
    text = "".join(traceback.format_exception(info.value))
    assert str(bad) in text and "SECRET-TAIL" not in text and "c2VjcmV0" not in text
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    held = repr([(x.args, getattr(x, "doc", None), getattr(x, "object", None)) for x in chain])
    assert "SECRET-TAIL" not in held and "c2VjcmV0" not in held


def test_a_catalog_naming_invalid_repositories_and_tags_gives_failures_and_no_request_for_them(canned):
    """A hostile catalog lists ``../../v2/_catalog``, an upper-case name and a tag with a slash: each is a
    failure naming it, and no request is ever made with such a name in its path."""
    from layerkit.fleet.registry import images

    canned.answers["/v2/"] = [(200, {}, b"{}")]
    canned.answers["/v2/_catalog"] = [(200, {}, json.dumps({"repositories": ["ok/a", "../../v2/_catalog",
                                                                           "Team/App"]}).encode())]
    canned.answers["/v2/ok/a/tags/list"] = [(200, {}, json.dumps({"tags": ["v1", "x/../../y"]}).encode())]
    found = list(images(f"docker://{canned.host}"))
    errors = {f.label: str(f.error) for f in found if f.error is not None}
    assert len(errors) == 3 and all("which is not a valid reference" in e for e in errors.values()), errors
    assert any("/../../v2/_catalog'" in e for e in errors.values())
    assert any("x/../../y" in e for e in errors.values())  # the tag: the whole repository's listing fails
    asked = [p for _, p, _ in canned.seen]
    assert not [p for p in asked if ".." in p or "Team" in p], asked
