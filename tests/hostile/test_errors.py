"""Every error one line (issue 11, items 8 and 11): what used to end in a traceback now ends in exactly one
``layerkit: error: ...`` line on stderr that names the thing (the store, the file, the field), exit status
1, and the store exactly as it was (every file hashed before and after).

The CLI runs in-process (``layerkit.cli.main``) except where the case is about the process itself: stdout
on ``/dev/full`` (a real console-script process) and a store another user cannot write (a child process
that has become user ``nobody``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import F, layer_tar, write_layout

from layerkit import cli
from layerkit.cli import main
from layerkit.engine.container import find_container
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive

REF_NAME = "org.opencontainers.image.ref.name"
BUSYBOX = "docker.io/library/busybox:latest"


# ---- the store and how to compare it --------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return busybox_archive(tmp_path_factory.mktemp("archive") / "busybox.tar")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, archive) -> Path:
    st = tmp_path_factory.mktemp("errors") / "store"
    assert main(["--store", str(st), "load", str(archive)]) == 0
    return st


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    """A private copy of a store holding busybox."""
    dst = tmp_path / "store"
    shutil.copytree(base_store, dst, symlinks=True)
    return dst


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: directories with their mode, files and links with their content."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if rel == "layerkit/lock":
                continue
            st = p.lstat()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = f"dir {st.st_mode:o}"
            else:
                out[rel] = f"{st.st_mode:o} " + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(rc: int, err: str, *names: str) -> str:
    """Assert the contract: exit 1, exactly one line on stderr, ``layerkit: error:``, naming ``names``."""
    lines = err.splitlines()
    assert rc == 1, f"exit status {rc}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("layerkit: error: "), lines[0]
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    return lines[0]


def refused(capsys, store: Path, argv: list[str], *names: str) -> str:
    """``layerkit --store STORE ARGV`` fails with one line naming ``names`` and leaves the store as it was."""
    before = snapshot(store)
    rc, out, err = run_cli(capsys, ["--store", str(store), *argv])
    line = one_error_line(rc, err, *names)
    assert snapshot(store) == before, "the store changed"
    return line


# ---- the store path ---------------------------------------------------------------------------------

VERBS = [["images"], ["rmi", "busybox"], ["tag", "busybox", "x:1"], ["ps", "-a"]]


@pytest.mark.parametrize("argv", VERBS, ids=lambda a: a[0])
def test_store_that_is_a_regular_file(capsys, tmp_path, argv):
    f = tmp_path / "not-a-store"
    f.write_bytes(b"precious\n")
    rc, out, err = run_cli(capsys, ["--store", str(f), *argv])
    one_error_line(rc, err, str(f), "not a directory")
    assert f.read_bytes() == b"precious\n"


def test_store_that_is_a_regular_file_on_load(capsys, tmp_path, archive):
    f = tmp_path / "not-a-store"
    f.write_bytes(b"precious\n")
    rc, out, err = run_cli(capsys, ["--store", str(f), "load", str(archive)])
    one_error_line(rc, err, str(f), "not a directory")
    assert f.read_bytes() == b"precious\n"


@pytest.mark.parametrize("argv", [*VERBS, ["load", "ARCHIVE"]], ids=lambda a: a[0])
def test_store_that_is_dev_null(capsys, archive, argv):
    argv = [str(archive) if a == "ARCHIVE" else a for a in argv]
    rc, out, err = run_cli(capsys, ["--store", "/dev/null", *argv])
    one_error_line(rc, err, "/dev/null", "not a directory")
    assert Path("/dev/null").is_char_device()


def test_store_below_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = run_cli(capsys, ["--store", str(f / "store"), "images"])
    one_error_line(rc, err, str(f / "store"))


def test_empty_store_word_is_a_usage_error(capsys, tmp_path, archive, monkeypatch):
    """``--store ""`` once meant the default store: ``rmi`` removed the user's image there."""
    home = tmp_path / "home-store"
    monkeypatch.setenv("LAYERKIT_HOME", str(home))
    assert main(["load", str(archive)]) == 0
    before = snapshot(home)
    for argv in (["--store", "", "rmi", "busybox"], ["--store=", "images"]):
        rc, out, err = run_cli(capsys, argv)
        assert rc == 2, err
        assert err.startswith("layerkit: error: argument --store: the store directory is empty"), err
        assert "Traceback" not in err
    assert snapshot(home) == before
    with pytest.raises(Exception, match="empty"):
        Store("")


def _as_nobody(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in a forked child that became user ``nobody``: (exit status, stderr).

    A fork rather than a new interpreter: the test's interpreter may live where ``nobody`` cannot reach
    (a pyenv under /root), and the modules the command needs are imported already."""
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.close(r)
            sys.stdout = open(os.devnull, "w")
            sys.stderr = os.fdopen(w, "w")
            os.setgroups([])
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            code = main(argv)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user can traverse (pytest's temporary directories are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="lk-errors-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_store_not_writable_by_its_user(shared, tmp_path_factory, archive, store, capsys):
    """A store directory user ``nobody`` may read but not write: ``load`` says so in one line; a store of
    root's (private since this issue) cannot even be read by ``nobody``: one line naming what was denied."""
    empty = shared / "empty-store"
    empty.mkdir(mode=0o755)
    arch = shared / "busybox.tar"
    shutil.copy(archive, arch)
    os.chmod(arch, 0o644)
    assert main(["--store", str(tmp_path_factory.mktemp("warm") / "s"), "load", str(arch)]) == 0  # imports
    rc, err = _as_nobody(["--store", str(empty), "load", str(arch)])
    line = one_error_line(rc, err, str(empty), "Permission denied")
    assert "cannot write to the store" in line or str(empty / "blobs") in line, line
    assert list(empty.iterdir()) == []

    roots = shared / "roots-store"
    shutil.copytree(store, roots, symlinks=True)
    before = snapshot(roots)
    for argv in (["images"], ["rmi", "busybox"], ["load", str(arch)]):
        rc, err = _as_nobody(["--store", str(roots), *argv])
        one_error_line(rc, err, str(roots), "Permission denied")
    assert snapshot(roots) == before


# ---- a store whose documents have the wrong shape ------------------------------------------------

def _index(store: Path) -> dict:
    return json.loads((store / "index.json").read_text())


@pytest.mark.parametrize("doc, what", [
    ([], "not a JSON object"),
    ({"schemaVersion": 2, "manifests": {"digest": "x"}}, "manifests is not a list"),
    ({"schemaVersion": 2, "manifests": "abc"}, "manifests is not a list"),
    ({"schemaVersion": 2, "manifests": [5]}, "manifests[0] is not an object"),
    ({"schemaVersion": 2, "manifests": [{"digest": 5, "size": 1}]}, "manifests[0].digest is not a string"),
    ({"schemaVersion": 2, "manifests": [{"digest": ["sha256:x"]}]}, "manifests[0].digest is not a string"),
    ({"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "0" * 64, "annotations": ["x"]}]},
     "manifests[0].annotations"),
    ({"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "0" * 64, "annotations": {REF_NAME: 7}}]},
     "manifests[0].annotations"),
    ({"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "0" * 64, "size": "big"}]},
     "manifests[0].size"),
], ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("argv", [["images"], ["rmi", "busybox"], ["tag", "busybox", "y:1"], ["inspect", "busybox"]],
                         ids=lambda a: a[0])
def test_index_json_of_the_wrong_shape(capsys, store, doc, what, argv):
    (store / "index.json").write_text(json.dumps(doc))
    refused(capsys, store, argv, str(store / "index.json"), what)


def test_index_json_nested_too_deep(capsys, store):
    depth = 100_000
    (store / "index.json").write_text("[" * depth + "]" * depth)
    for argv in (["images"], ["rmi", "busybox"]):
        refused(capsys, store, argv, str(store / "index.json"), "nested too deeply")
    (store / "index.json").write_text('{"manifests": [' + '{"a":' * depth + "1" + "}" * depth + "]}")
    refused(capsys, store, ["images"], str(store / "index.json"), "nested too deeply")


def _put_blob(store: Path, data: bytes) -> str:
    h = hashlib.sha256(data).hexdigest()
    (store / "blobs" / "sha256" / h).write_bytes(data)
    return "sha256:" + h


def _point_tag_at(store: Path, manifest: bytes) -> str:
    """Store ``manifest`` as a blob and point busybox's index entry at it."""
    digest = _put_blob(store, manifest)
    idx = _index(store)
    for d in idx["manifests"]:
        d["digest"], d["size"] = digest, len(manifest)
    (store / "index.json").write_text(json.dumps(idx))
    return digest


def _busybox_docs(store: Path) -> tuple[dict, dict]:
    idx = _index(store)
    mpath = store / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]
    manifest = json.loads(mpath.read_bytes())
    config = json.loads((store / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes())
    return manifest, config


@pytest.mark.parametrize("case", ["manifest-list", "manifest-deep", "manifest-not-json", "config-not-object",
                                  "config-digest-int", "layers-not-list", "layer-not-object",
                                  "layer-digest-int", "layer-size-string"])
def test_manifest_of_the_wrong_shape(capsys, store, case):
    manifest, _ = _busybox_docs(store)
    if case == "manifest-list":
        data = json.dumps([manifest]).encode()
    elif case == "manifest-deep":
        data = b'{"config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    elif case == "manifest-not-json":
        data = b'{"config": \xff}'
    else:
        m = json.loads(json.dumps(manifest))
        if case == "config-not-object":
            m["config"] = "sha256:" + "a" * 64
        elif case == "config-digest-int":
            m["config"]["digest"] = 12
        elif case == "layers-not-list":
            m["layers"] = {"0": m["layers"][0]}
        elif case == "layer-not-object":
            m["layers"] = ["sha256:" + "a" * 64]
        elif case == "layer-digest-int":
            m["layers"][0]["digest"] = 1
        else:
            m["layers"][0]["size"] = "2MB"
        data = json.dumps(m).encode()
    digest = _point_tag_at(store, data)
    for argv in (["images"], ["history", "busybox"], ["rmi", "busybox"]):
        refused(capsys, store, argv, f"manifest {digest}", "busybox")


@pytest.mark.parametrize("case", ["list", "rootfs-list", "diff-ids-int", "history-dict", "created-number",
                                  "cmd-string", "deep", "fewer-diff-ids"])
def test_config_of_the_wrong_shape(capsys, store, case):
    manifest, config = _busybox_docs(store)
    c = json.loads(json.dumps(config))
    if case == "list":
        data = json.dumps([config]).encode()
    elif case == "deep":
        data = b'{"rootfs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    else:
        if case == "rootfs-list":
            c["rootfs"] = ["layers"]
        elif case == "diff-ids-int":
            c["rootfs"]["diff_ids"] = [1]
        elif case == "history-dict":
            c["history"] = {"created_by": "x"}
        elif case == "created-number":
            c["created"] = 1700000000
        elif case == "cmd-string":
            c["config"] = {"Cmd": "sh"}
        else:
            c["rootfs"]["diff_ids"] = []
        data = json.dumps(c).encode()
    cdigest = _put_blob(store, data)
    manifest["config"] = {**manifest["config"], "digest": cdigest, "size": len(data)}
    _point_tag_at(store, json.dumps(manifest).encode())
    for argv in (["images"], ["inspect", "busybox"], ["rmi", "busybox"]):
        refused(capsys, store, argv, cdigest if case != "fewer-diff-ids" else "manifest", "busybox")


# ---- outputs on the host ------------------------------------------------------------------------------

def test_save_into_a_missing_directory(capsys, store, tmp_path):
    for fmt in ("docker-archive", "oci-archive", "oci"):
        line = refused(capsys, store, ["save", "-o", str(tmp_path / "missing" / "x.tar"), "--format", fmt,
                                       "busybox"], str(tmp_path / "missing" / "x.tar"), "does not exist")
        assert str(tmp_path / "missing") in line
    assert not (tmp_path / "missing").exists()
    line = refused(capsys, store, ["save", "-o", "/missing-lk-dir/x.tar", "busybox"], "/missing-lk-dir/x.tar")
    assert not Path("/missing-lk-dir").exists()


def test_save_onto_a_directory(capsys, store, tmp_path):
    out = tmp_path / "outdir"
    out.mkdir()
    (out / "keep").write_text("k")
    for fmt in ("docker-archive", "oci-archive"):
        refused(capsys, store, ["save", "-o", str(out), "--format", fmt, "busybox"], str(out), "is a directory")
    assert sorted(p.name for p in out.iterdir()) == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir", "store"]  # no temporary file left


def test_save_below_a_file(capsys, store, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    refused(capsys, store, ["save", "-o", str(f / "x.tar"), "busybox"], str(f), "not a directory")
    assert f.read_text() == "x"


def test_report_into_a_missing_directory(capsys, store, tmp_path):
    for name in ("x.html", "x.md"):
        refused(capsys, store, ["report", "-o", str(tmp_path / "missing" / name), "busybox"],
                str(tmp_path / "missing" / name), "does not exist")
    assert not (tmp_path / "missing").exists()


def _console(*argv: str, stdout) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "layerkit", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          env=env, timeout=120)


@pytest.mark.parametrize("argv", [["images"], ["images", "--format", "json"], ["history", "busybox"],
                                  ["cat", "busybox", "/bin/busybox"], ["ref", "busybox"]],
                         ids=lambda a: "-".join(a[:3]))
def test_stdout_on_dev_full(store, argv):
    """A full disk under stdout: one line on stderr, exit 1, no traceback (Python's final flush too)."""
    with open("/dev/full", "w") as full:
        p = _console("--store", str(store), *argv, stdout=full)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert err.splitlines() == ["layerkit: error: cannot write the output: No space left on device"], err


def test_stdout_pipe_closed_early(store):
    """``layerkit ... | head -c1``: the reader leaves; no message, no traceback."""
    p = subprocess.run(f"{sys.executable} -m layerkit --store {store} cat busybox /bin/busybox | head -c1 "
                       "> /dev/null; echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                       capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    assert p.stderr == b"", p.stderr
    assert p.stdout.strip() in (b"141", b"0"), p.stdout  # 0 when the whole file fitted in the pipe


def test_debug_shows_the_traceback(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = run_cli(capsys, ["--debug", "--store", str(f), "images"])
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "HostPathError" in err
    rc, out, err = run_cli(capsys, ["--debug", "--store", str(tmp_path), "load", str(tmp_path / "nope.tar")])
    assert rc == 1 and "Traceback" in err


def test_bugs_are_not_swallowed(monkeypatch, store):
    """Only the expected classes become one line: a bug keeps its traceback."""
    from layerkit import commands

    def broken(*a, **k):
        return {}["no such key"]

    monkeypatch.setattr(commands, "images", broken)
    with pytest.raises(KeyError):
        main(["--store", str(store), "images"])


def test_os_error_names_the_path(capsys, store, tmp_path):
    locked = tmp_path / "dir-not-a-file.tar"
    locked.mkdir()
    rc, out, err = run_cli(capsys, ["--store", str(store), "load", str(locked)])
    one_error_line(rc, err, str(locked))


# ---- cp to the host -------------------------------------------------------------------------------------

@pytest.fixture
def container(store) -> str:
    assert main(["--store", str(store), "create", "--name", "c1", "busybox"]) == 0
    return "c1"


def test_cp_to_a_missing_parent_creates_nothing(capsys, store, container, tmp_path):
    """``docker cp C:/path /missing/deep/dir`` fails: the destination's parent must exist (moby's
    CopyInfoDestinationPath); layerkit used to create every missing directory."""
    host = tmp_path / "host"
    host.mkdir()
    for src in ("/bin/busybox", "/etc", "/"):
        refused(capsys, store, ["cp", f"{container}:{src}", str(host / "missing" / "deep" / "dir")],
                str(host / "missing" / "deep"), "does not exist")
    refused(capsys, store, ["cp", f"{container}:/etc/passwd", "/missing-lk/deep/dir"], "/missing-lk/deep")
    assert list(host.iterdir()) == [] and not Path("/missing-lk").exists()


def test_cp_docker_destination_rules(capsys, store, container, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "file").write_text("old")
    # a file source to "DIR/" that does not exist: docker's "no such directory"
    refused(capsys, store, ["cp", f"{container}:/etc/passwd", str(host / "newdir") + "/"],
            str(host / "newdir"), "no such directory")
    # a directory onto an existing file
    refused(capsys, store, ["cp", f"{container}:/etc", str(host / "file")], str(host / "file"), "directory")
    assert sorted(p.name for p in host.iterdir()) == ["file"] and (host / "file").read_text() == "old"
    # what docker does accept: a new name in an existing directory, a file over a file, into a directory
    assert main(["--store", str(store), "cp", f"{container}:/etc", str(host / "etc2")]) == 0
    assert (host / "etc2" / "passwd").read_bytes().startswith(b"root:")
    assert main(["--store", str(store), "cp", f"{container}:/etc/group", str(host / "file")]) == 0
    assert (host / "file").read_bytes().startswith(b"root:")
    assert main(["--store", str(store), "cp", f"{container}:/etc/group", str(host / "etc2")]) == 0
    assert (host / "etc2" / "group").is_file()
    # a dangling symlink at the destination is followed, as docker cp does: the file lands at its target
    (host / "link").symlink_to("made-by-cp")
    assert main(["--store", str(store), "cp", f"{container}:/etc/group", str(host / "link")]) == 0
    assert (host / "made-by-cp").read_bytes().startswith(b"root:") and (host / "link").is_symlink()
    assert not [p for p in host.rglob(".lk-*")]
    # into the container, the same rule for a file sent to "DIR/" that does not exist
    refused(capsys, store, ["cp", str(host / "file"), f"{container}:/newdir/"], "/newdir/", "no such directory")


def _long_name_image(store: Path, tmp_path: Path, capsys) -> str:
    long = "n" * 300
    members = [F(f"d/{long}", b"long\n"), F("d/short", b"short\n")]
    layout = write_layout(tmp_path / "layout", [layer_tar(members)], "long:1")
    assert main(["--store", str(store), "load", f"{layout}:long:1"]) == 0
    assert main(["--store", str(store), "create", "--name", "lc", "long:1", "sh"]) == 0
    capsys.readouterr()
    return long


def test_cp_out_a_name_longer_than_the_host_allows(capsys, store, tmp_path):
    long = _long_name_image(store, tmp_path, capsys)
    host = tmp_path / "host"
    host.mkdir()
    line = refused(capsys, store, ["cp", f"lc:/d/{long}", str(host)], "/d/n", "300 bytes", "255")
    assert long in line
    refused(capsys, store, ["cp", "lc:/d", str(host / "out")], "300 bytes")
    assert list(host.iterdir()) == []  # refused before anything was written
    assert main(["--store", str(store), "cp", "lc:/d/short", str(host)]) == 0


# ---- names that are not UTF-8 in a container's writable layer -----------------------------------

def _upper(store: Path, name: str) -> Path:
    return find_container(Store(store), name).upper


def test_diff_and_commit_with_a_name_that_is_not_utf8(capsysbinary, store, container, tmp_path):
    """A container's process can create any byte name. ``docker diff`` lists it and ``docker commit`` keeps
    it; layerkit used to end ``diff`` in a traceback (its path index stored UTF-8 text only)."""
    upper = os.fsencode(_upper(store, container))
    with open(upper + b"/bad\xff", "wb") as f:
        f.write(b"x\n")
    os.mkdir(upper + b"/dir\xfe")
    with open(upper + b"/dir\xfe/in", "wb") as f:
        f.write(b"y\n")
    capsysbinary.readouterr()
    assert main(["--store", str(store), "diff", container]) == 0
    out, err = capsysbinary.readouterr()
    assert out.splitlines() == [b"A /bad\xff", b"A /dir\xfe", b"A /dir\xfe/in"], out
    assert main(["--store", str(store), "commit", container, "bytes:1"]) == 0
    out, _ = capsysbinary.readouterr()
    # the committed layer holds the names byte for byte (GNU tar reads it)
    img = Store(store).image("bytes:1")
    blob = Store(store).blobs.path(img.layers[-1].digest)
    names = subprocess.run(["tar", "--quoting-style=literal", "-tf", str(blob)], capture_output=True,
                           check=True).stdout.splitlines()
    assert {b"bad\xff", b"dir\xfe/in"} <= {n.rstrip(b"/") for n in names}, names
    with tarfile.open(blob, encoding="utf-8", errors="surrogateescape") as tf:
        assert tf.extractfile("bad\udcff").read() == b"x\n"
    # a container of the new image: its lower layers now hold those names, and diff still works
    assert main(["--store", str(store), "create", "--name", "c2", "bytes:1"]) == 0
    find_container(Store(store), "c2").remove("/bad\udcff")
    capsysbinary.readouterr()
    assert main(["--store", str(store), "diff", "c2"]) == 0
    out, _ = capsysbinary.readouterr()
    assert out.splitlines() == [b"D /bad\xff"], out


# ---- the notebook face -----------------------------------------------------------------------------

def test_magic_shows_the_same_one_line(store, tmp_path):
    """``%lk`` renders the errors the CLI renders as one line (IPython's UsageError: no traceback)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=cfg)
    try:
        shell.run_line_magic("load_ext", "layerkit")
        f = tmp_path / "file"
        f.write_text("x")
        (store / "index.json").write_text("[" * 100_000 + "]" * 100_000)
        cases = [(f"--store {f} images", f"the store {f} is not a directory"),
                 (f"--store {store} images", f"{store / 'index.json'} is not valid JSON (nested too deeply)"),
                 (f"--store {store} save -o {tmp_path}/missing/x.tar busybox", "does not exist"),
                 ("--store '' images", "--store needs a directory")]
        for line, message in cases:
            with capture_output() as cap:
                res = shell.run_cell(f"%lk {line}")
            assert res.error_in_exec is not None, line
            errs = [x for x in cap.stderr.splitlines() if x.strip()]
            assert len(errs) == 1 and errs[0].startswith("UsageError: ") and message in errs[0], cap.stderr
            assert "Traceback" not in cap.stderr
        with capture_output() as cap:
            shell.run_cell(f"%lk --store {f} images --debug")
        assert "Traceback" in cap.stderr and "HostPathError" in cap.stderr
    finally:
        InteractiveShell.clear_instance()


def test_a_digest_with_a_trailing_newline_is_not_a_digest():
    """``$`` in a regular expression also matches before a final newline: a digest that ends in one would
    have become a blob file name with a newline in it."""
    from layerkit.engine.digests import InvalidDigest, is_digest, validate

    good = "sha256:" + "a" * 64
    assert validate(good) == good and is_digest(good)
    for bad in (good + "\n", "sha512:" + "a" * 128 + "\n"):
        assert not is_digest(bad)
        with pytest.raises(InvalidDigest, match="invalid digest"):
            validate(bad)
