"""The %lk magics in-process: same words as the CLI, DataFrames and figures back, one-line errors."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from layerkit.cli import main
from layerkit.examples import busybox_archive


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("magics")
    archive = busybox_archive(d / "bb.tar")
    assert main(["--store", str(d / "store"), "load", str(archive)]) == 0
    return d / "store"


@pytest.fixture()
def shell(store_dir):
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    sh.run_line_magic("load_ext", "layerkit")
    sh.run_line_magic("lk", f"store {store_dir}")
    yield sh
    InteractiveShell.clear_instance()


def test_alias_dropped_and_usage(shell):
    assert "lk" not in dict(shell.alias_manager.default_aliases)
    with capture_output() as cap:
        shell.run_line_magic("lk", "")
    assert "%lk VERB ARGS" in cap.stdout


def test_history_returns_frame_like_cli(shell, store_dir, capsys):
    res = shell.run_cell("hist = %lk history busybox")
    assert res.success
    hist = shell.user_ns["hist"]
    assert isinstance(hist, pd.DataFrame)
    assert list(hist.columns) == ["id", "created", "created_by", "size", "comment", "empty_layer", "diff_id"]
    assert str(hist["created"].dt.tz) == "UTC" and hist["size"].dtype == "int64"
    import json

    main(["--store", str(store_dir), "history", "busybox", "--format", "json"])
    cli = json.loads(capsys.readouterr().out)
    assert [r["created_by"] for r in cli] == list(hist["created_by"])
    data, _ = shell.display_formatter.format(hist)
    assert "text/html" in data


def test_variables_expand_and_errors_are_one_line(shell):
    shell.user_ns["name"] = "busybox"
    res = shell.run_cell("x = %lk layers {name}")
    assert res.success and len(shell.user_ns["x"]) == 1
    with capture_output() as cap:
        res = shell.run_cell("%lk history Nope")
    assert not res.success or res.error_in_exec is not None
    assert "must be lowercase" in cap.stderr and "Traceback" not in cap.stderr


def test_plot_returns_png_figure(shell):
    res = shell.run_cell("%lk plot layers busybox")
    assert res.success
    data, _ = shell.display_formatter.format(res.result)
    assert data["image/png"][:4] == b"\x89PNG"


def test_cell_runs_script_in_container(shell):
    with capture_output() as cap:
        res = shell.run_cell("%%lk run --name cellrun busybox\necho one\necho two > /made-by-cell\n")
    assert res.success
    assert "one" in cap.stdout
    d = shell.run_cell("%lk diff cellrun").result
    assert d.loc["/made-by-cell", "kind"] == "A"


def test_prune_needs_force_in_a_notebook(shell, store_dir):
    from layerkit.engine.store import Store

    before = {i.id for i in Store(store_dir).images()}
    with capture_output() as cap:
        res = shell.run_cell("%lk image prune")
    assert res.error_in_exec is not None and "add -f" in cap.stderr and "Traceback" not in cap.stderr
    assert {i.id for i in Store(store_dir).images()} == before
    with capture_output() as cap:
        shell.run_line_magic("lk", "image prune -f")
    assert "Total reclaimed space: 0B" in cap.stdout


def test_tree_returns_frame(shell):
    df = shell.run_line_magic("lk", "tree busybox --max-depth 1")
    assert df.index.name == "path" and "/bin" in df.index
    assert {"depth", "dir_size", "change"} <= set(df.columns)
    assert str(df["dir_size"].dtype) == "int64" and (df["depth"] == 0).all()
    assert df.loc["/bin", "dir_size"] > 1_000_000 and df.loc["/bin", "permissions"] == "drwxr-xr-x"
