"""Every notebook runs clean in a real kernel (nbclient); the tour tells its story in a store of its own and
leaves the user's store byte for byte as it was; and it does so from layerkit installed as a wheel.

The tour runs once, as ``layerkit tour DIR`` of the package built into a wheel (``pip wheel --no-deps``)
and installed with its dependencies into a fresh venv, from a directory outside the checkout, so nothing of
the repository can stand in for the package (issue 12, items 1 and 8).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from layerkit import commands
from layerkit.engine.container import find_container
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# names the tour uses for its own images and containers: a user's store holding the same names must survive
USER_IMAGES = ("demo:v1", "app:v1", "app:v2", "slim:v1")
USER_CONTAINERS = ("demo", "edit", "app1")


def _jupyter_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # an inherited Agg backend turns figures into text
    for var in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        env[var] = str(tmp / var.lower())
    return env


@pytest.fixture()
def kernel_env(tmp_path, monkeypatch):
    """Private store, output dir and Jupyter dirs; no inherited matplotlib backend."""
    monkeypatch.setenv("LAYERKIT_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("LAYERKIT_OUT", str(tmp_path / "out"))
    for var, value in _jupyter_env(tmp_path).items():
        if var.startswith("JUPYTER_"):
            monkeypatch.setenv(var, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return tmp_path


def _store_hashes(root: Path) -> dict[str, str]:
    """Every file, directory and link under ``root`` with its content hash, mode and owner."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            link = os.readlink(p) if p.is_symlink() else ""
            out[str(p.relative_to(root))] = f"{st.st_mode:o} {st.st_uid}:{st.st_gid} {st.st_size} {digest} {link}"
    return out


def _user_store(root: Path, work: Path) -> Store:
    """A user's store holding images and containers with the tour's names, one with uncommitted files."""
    store = Store(root)
    archive = busybox_archive(work / "busybox.tar")
    commands.load(store, str(archive))
    for name in USER_IMAGES:
        commands.tag(store, "busybox", name)
    for name in USER_CONTAINERS:
        commands.create(store, "busybox", ["sh"], name)
    edit = find_container(store, "edit")
    edit.write("/root/my-notes.txt", b"uncommitted work\n")
    edit.remove("/bin/vi")
    return store


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """layerkit's wheel, checked for its contents and installed into a fresh venv; returns its bin dir."""
    tmp = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    (wheel,) = (tmp / "dist").glob("layerkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "layerkit/notebook/ipynb/tour.ipynb" in names and "layerkit/notebook/ipynb/explorer.ipynb" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "benchmarks/"))]
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    p = subprocess.run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp / "venv" / "bin"


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of the installed layerkit: no PYTHONPATH, no test venv on PATH."""
    env = _jupyter_env(tmp) | extra
    for var in ("PYTHONPATH", "LAYERKIT_OUT", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory, installed):
    """The tour from the installed wheel (``layerkit tour DIR``, what ``make demo`` runs), with
    LAYERKIT_HOME pointing at a user's store that holds the tour's names; returns (output dir, user store
    dir, its hashes before the tour, the command's stdout)."""
    tmp = tmp_path_factory.mktemp("demo")
    user = tmp / "user-store"
    _user_store(user, tmp)
    before = _store_hashes(user)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(tmp, LAYERKIT_HOME=str(user))
    p = subprocess.run([str(installed / "python"), "-c", "import layerkit; print(layerkit.__file__)"], env=env,
                       cwd=elsewhere, capture_output=True, text=True)
    assert p.stdout.strip().startswith(str(installed.parent)), p.stdout  # the venv's copy, not the checkout
    p = subprocess.run([str(installed / "layerkit"), "tour", "tour-out"], env=env, capture_output=True,
                       text=True, timeout=900, cwd=elsewhere)
    assert p.returncode == 0, p.stderr[-3000:]
    return elsewhere / "tour-out", user, before, p.stdout


def test_installed_version(installed, tmp_path):
    p = subprocess.run([str(installed / "layerkit"), "--version"], env=_clean_env(tmp_path), capture_output=True,
                       text=True, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "layerkit 0.1.0"


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _errors(nb: nbformat.NotebookNode) -> list:
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    usage = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "stream" and o.name == "stderr" and "UsageError" in o.text]
    return errors + usage


OTHERS = [p for p in NOTEBOOKS if p.name not in ("tour.ipynb", "fleet.ipynb")]  # those two: tests of their own


@pytest.mark.parametrize("path", OTHERS, ids=[p.name for p in OTHERS])
def test_notebook_runs_clean(path, kernel_env):
    assert not _errors(_execute(path, kernel_env))


def test_tour_runs_clean(demo):
    out, _, _, _ = demo
    assert not _errors(nbformat.read(out / "tour.ipynb", as_version=4))


def test_tour_leaves_the_users_store_untouched(demo):
    out, user, before, stdout = demo
    assert _store_hashes(user) == before
    store = Store(user)
    assert find_container(store, "edit").read("/root/my-notes.txt") == b"uncommitted work\n"
    # the tour worked in its own store, under the output directory
    assert (out / "tour-store" / "index.json").is_file()
    assert f"report:            {out / 'tour-report.html'}" in stdout
    assert (out / "notebooks" / "explorer.ipynb").is_file()  # written out to open in Jupyter next
    assert {t.familiar for img in Store(out / "tour-store").images() for t in img.tags} >= {"app:v1", "slim:v1"}


def test_tour_refuses_a_store_it_did_not_make(kernel_env):
    """A directory named like the tour's store but not made by it is never removed."""
    mine = kernel_env / "out" / "tour-store"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("keep me")
    with pytest.raises(Exception, match="was not made by this tour"):
        _execute(ROOT / "notebooks" / "tour.ipynb", kernel_env)
    assert (mine / "precious.txt").read_text() == "keep me"


def test_tour_tells_the_story(demo):
    out, _, _, _ = demo
    nb = nbformat.read(out / "tour.ipynb", as_version=4)
    outputs = {}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        outputs[c.source.splitlines()[0]] = c.outputs
    pngs = sum(1 for outs in outputs.values() for o in outs if "image/png" in o.get("data", {}))
    assert pngs >= 5, f"expected the tour's figures as PNG, got {pngs}"
    diff_html = next(o["data"]["text/html"] for o in outputs["%lk diff demo"] if "data" in o)
    assert "/file1" in diff_html and "/file2" in diff_html
    hist = next(o["data"]["text/plain"] for o in outputs["%lk history demo:v1"] if "data" in o)
    assert "add files" in hist
    rmi = "".join(o.get("text", "") for o in outputs["%lk rm demo"])
    assert "Untagged: demo:v1" in rmi and "Deleted: sha256:" in rmi
    still = "".join(o.get("text", "") for o in outputs["%lk run --rm busybox echo busybox still runs"])
    assert "busybox still runs" in still

    def html_of(first_line: str) -> str:
        return "".join(o["data"].get("text/html", "") for o in outputs[first_line] if "data" in o)

    def text_of(first_line: str) -> str:
        return "".join(o.get("text", "") for o in outputs[first_line])

    # union lookup: app:v2's /app/VERSION hides app:v1's copy
    lookup = html_of("%lk versions app:v2 /app/VERSION")
    assert lookup.index(">hidden<") < lookup.index(">shown<")  # layer 1 hidden, layer 2 shown
    assert text_of("%lk cat app:v2 /app/VERSION").strip() == "v2"
    # the whiteout of the deleted file, under its own name in the clean-up layer
    wh = html_of("%lk versions bloated:v1 /tmp/build-cache")
    assert "/tmp/.wh.build-cache" in wh and ">whiteout<" in wh and ">deleted<" in wh and "1.98MB" in wh
    assert ">removed<" in html_of("%lk tree bloated:v1 --changes")
    # /tmp after the fix: in two layers, as directories, no bytes
    tmp = html_of("%lk versions slim:v1 /tmp")
    assert tmp.count(">dir<") >= 2 and ">drwxrwxrwt<" in tmp
    assert "nan" not in text_of("%lk efficiency slim:v1").lower()
    # the <none> parent: image prune keeps it and reclaims nothing
    prune = text_of("%lk rm bloat1 bloat2")
    assert "Total reclaimed space: 0B" in prune and "Deleted Images" not in prune
    assert "&lt;none&gt;:&lt;none&gt;" in html_of("%lk rm bloat1 bloat2")
    # chapter 7: app:v2 built again from a Dockerfile; a rebuild all from the cache; a changed input rebuilds
    # its step only; the wasteful line named
    builds = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%lk build -t app:built")]
    assert len(builds) == 3

    def cached(cell) -> list[str]:
        html = "".join(o["data"].get("text/html", "") for o in cell.outputs if "data" in o)
        return re.findall(r">(True|False)</td>", html)

    assert [cached(c) for c in builds] == [["False"] * 4, ["False", "True", "True", "True"],
                                          ["False", "True", "True", "False"]]
    assert "Step 4/4 : COPY notes.txt /app/notes.txt" in "".join(o.get("text", "") for o in builds[0].outputs)
    sides = html_of("committed = %lk history app:v2")
    assert "run + commit (app:v2)" in sides and "#(nop) COPY file:" in sides
    waste = text_of("%lk check bloated:dockerfile --dockerfile {bloat}/Dockerfile")
    assert re.search(r"\n2 +RUN cp /bin/busybox /tmp/build-cache +1\.98MB +deleted by line 4: do both in one RUN",
                     waste), waste
    report = out / "tour-report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    html = report.read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert str(out / "tour-store") in "".join(o.get("text", "") for o in outputs["%load_ext layerkit"])


# ---- the fleet notebook: a registry of its own, filled, scanned, analysed, reported ------------------

@pytest.fixture(scope="module")
def fleet_nb(tmp_path_factory) -> tuple[nbformat.NotebookNode, Path, float]:
    """``notebooks/fleet.ipynb`` executed once in a real kernel with a private output directory; returns
    the executed notebook, the output directory and the seconds it took."""
    import time

    tmp = tmp_path_factory.mktemp("fleet-nb")
    env = {"LAYERKIT_OUT": str(tmp / "out"), "LAYERKIT_HOME": str(tmp / "user-store"),
           **{k: v for k, v in _jupyter_env(tmp).items() if k.startswith("JUPYTER_")}}
    saved = {k: os.environ.get(k) for k in [*env, "MPLBACKEND"]}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)
    try:
        t = time.monotonic()
        nb = _execute(ROOT / "notebooks" / "fleet.ipynb", tmp)
        return nb, tmp / "out", time.monotonic() - t
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _first_lines(nb: nbformat.NotebookNode) -> dict[str, list]:
    return {c.source.splitlines()[0]: c.outputs for c in nb.cells if c.cell_type == "code"}


def _html(outputs: list) -> str:
    return "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)


def _text(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs)


def test_fleet_notebook_tells_the_story(fleet_nb) -> None:
    """It runs clean; the scan finds exactly the images and repositories it pushed; file-level
    dedup finds what layer sharing misses; the figures are PNGs; the report holds the summary; the
    registry it started is stopped."""
    import re

    nb, out, _ = fleet_nb
    assert not _errors(nb)
    cells = _first_lines(nb)
    # what was pushed: 6 images (busybox, runtime and 4 applications) in 5 repositories
    push = _text(cells["registry = start_registry(work / \"registry\", access_log=False)"])
    repos = set(re.findall(r"The push refers to repository \[127\.0\.0\.1:\d+/([^\]]+)\]", push))
    assert repos == {"library/busybox", "library/runtime", "shop/web", "shop/api", "data/etl"}
    assert push.count(": digest: sha256:") == 6
    assert "Mounted from" in push  # the registry already had the shared layers
    scan = _text(cells["%lk scan {' '.join(sources)} -o {dataset} --contents --workers 1"])
    assert "images added: 6" in scan and "failures: 0" in scan
    summary = _html(cells["summary = %lk fleet summary {dataset}"])
    # the dataset the notebook made: the images and repositories it pushed, and file-level redundancy
    (facts,) = commands.fleet_summary(str(out / "fleet" / "dataset")).to_json()
    assert (facts["images"], facts["repositories"], facts["failures"]) == (6, 5, 0)
    assert facts["file_dedup_ratio"] > 1.0  # copies across layers that layer sharing cannot see
    # what the notebook showed: the frame's columns and its one row, cell by cell
    heads = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>.*?</th>", summary, re.S)]
    cells_ = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>.*?</td>", summary, re.S)]
    heads = [h for h in heads if h not in ("", "&nbsp;") and not h.isdigit()]  # the index's own headers out
    shown = dict(zip(heads, cells_, strict=True))
    assert (shown["images"], shown["repositories"], shown["failures"]) == ("6", "5", "0"), shown
    pngs = [o for outs in cells.values() for o in outs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3
    dups = _html(cells["%lk fleet duplicates {dataset}"])
    assert "/usr/lib/runtime/libcore.so" in dups or "/opt/runtime/libcore.so" in dups
    waste = _html(cells["%lk fleet waste {dataset}"])
    assert "data/etl:1" in waste
    sql = _html(cells["%%lk sql {dataset}"])
    assert "unique_percent" in sql
    report = out / "fleet-report.html"
    written = _text(cells["%lk report --fleet {dataset} -o {report}"])
    assert report.is_file() and f"Report written to {report}" in written
    html = report.read_text()
    assert "<h2>Summary</h2>" in html and "<td>images</td>" in html.replace(' class="w"', "")
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "registry stopped: True" in _text(cells["registry.stop()"])
