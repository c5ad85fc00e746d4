"""Every notebook in notebooks/ runs clean in a real kernel (nbclient), on a private store."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture()
def kernel_env(tmp_path, monkeypatch):
    """Private store, output dir and Jupyter dirs; no inherited matplotlib backend."""
    monkeypatch.setenv("LAYERKIT_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("LAYERKIT_OUT", str(tmp_path / "out"))
    for var in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return tmp_path


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_clean(path, kernel_env):
    nb = _execute(path, kernel_env)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]
    stderr = [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr" and "UsageError" in o.text]
    assert not stderr, stderr


def test_tour_tells_the_story(kernel_env):
    nb = _execute(ROOT / "notebooks" / "tour.ipynb", kernel_env)
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
    report = kernel_env / "out" / "tour-report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    html = report.read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert os.environ["LAYERKIT_HOME"] in "".join(
        o.get("text", "") for o in outputs["%load_ext layerkit"])
