"""The %lk magics in-process: same words as the CLI, DataFrames and figures back, one-line errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from layerkit.cli import main
from layerkit.engine.store import Store
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
    assert str(hist["created"].dt.tz) == "UTC" and str(hist["size"].dtype) == "Int64"
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
    assert str(df["dir_size"].dtype) == "Int64" and (df["depth"] == 0).all()
    assert df.loc["/bin", "dir_size"] > 1_000_000 and df.loc["/bin", "permissions"] == "drwxr-xr-x"


# ---- every verb's frame follows the same rules (issue 12, item 4) -----------------------------------------

ID = re.compile(r"sha256:[0-9a-f]{64}")
PERMS = re.compile(r"[-dlcbps][-r][-w][-xsS][-r][-w][-xsS][-r][-w][-xtT]")
INDEX = {"images": "reference", "history": "step", "layers": "layer_index", "ls": "path", "files": "path",
         "tree": "path", "versions": "layer_index", "diff": "path", "ps": "container", "load": "reference",
         "efficiency": "path", "df/summary": "type", "df/images": "reference", "df/layers": "diff_id",
         "df/containers": "container", "compare/layers": "layer_index", "compare/files": "path"}


def assert_rules(name: str, df: pd.DataFrame) -> None:
    """The rules of layerkit.notebook.frames: a named index, no column or index named "index", sizes
    nullable Int64, times UTC, mode an integer with a permissions string beside it, full IDs."""
    from layerkit.notebook import frames

    assert isinstance(df, pd.DataFrame), (name, type(df))
    assert list(df.index.names) == [INDEX[name]], (name, df.index.names)
    assert "index" not in df.columns and "index" not in df.index.names, name
    assert "layerkit" in df.attrs, name
    for c in df.columns:
        if c in frames.SIZE_COLUMNS:
            assert str(df[c].dtype) == "Int64", (name, c, df[c].dtype)
        if c in frames.TIME_COLUMNS:
            assert isinstance(df[c].dtype, pd.DatetimeTZDtype) and str(df[c].dt.tz) == "UTC", (name, c, df[c].dtype)
        if c in ("id", "diff_id", "layer", "digest", "image_id") and len(df):
            vals = [v for v in df[c] if isinstance(v, str)]
            # a container ID is 64 hex without an algorithm, as Docker's
            want = re.compile(r"[0-9a-f]{64}") if name in ("ps", "df/containers") and c == "id" else ID
            assert all(want.fullmatch(v) or v == "<missing>" for v in vals), (name, c, vals[:3])
    if "mode" in df.columns:
        assert str(df["mode"].dtype) in ("int64", "Int64"), (name, df["mode"].dtype)
        cols = list(df.columns)
        assert cols[cols.index("mode") + 1] == "permissions", name
        perms = [v for v in df["permissions"] if isinstance(v, str)]
        assert perms and all(PERMS.fullmatch(v) for v in perms), (name, perms[:3])
        assert all(pd.isna(m) == (not isinstance(p, str)) for m, p in zip(df["mode"], df["permissions"], strict=True))


def test_every_verbs_frame_follows_the_rules(shell, store_dir, tmp_path):
    s = str(store_dir)
    assert main(["--store", s, "run", "--name", "framer", "busybox", "sh", "-c",
                 "echo x > /x.txt && rm /bin/vi && chmod 4755 /bin/busybox"]) == 0
    assert main(["--store", s, "commit", "-m", "framed", "framer", "framed:v1"]) == 0
    archive = busybox_archive(tmp_path / "bb.tar")
    got = {}
    for verb, line in (("images", "images"), ("history", "history framed:v1"), ("layers", "layers framed:v1"),
                       ("ls", "ls framed:v1 /bin"), ("files", "files framed:v1"), ("tree", "tree framed:v1"),
                       ("versions", "versions framed:v1 /bin/vi"), ("diff", "diff framer"), ("ps", "ps -a"),
                       ("load", f"load {archive}"), ("efficiency", "efficiency framed:v1"), ("df", "df -v"),
                       ("compare", "compare busybox framed:v1")):
        with capture_output():
            got[verb] = shell.run_line_magic("lk", line)
    for verb, res in got.items():
        if isinstance(res, dict):
            assert set(res) == {k.split("/")[1] for k in INDEX if k.startswith(verb + "/")}, verb
            for key, df in res.items():
                assert_rules(f"{verb}/{key}", df)
        else:
            assert_rules(verb, res)
    # what each frame says, checked against the store
    assert got["history"].loc[0, "id"] == "<missing>"
    busybox = got["ls"].loc["/bin/busybox"]
    assert busybox["permissions"] == "-rwsr-xr-x" and busybox["mode"] == 0o4755
    assert got["versions"]["union"].tolist() == ["hidden", "deleted"]
    assert got["versions"].loc[1, "entry"] == "whiteout" and got["versions"].loc[1, "tar_path"] == "/bin/.wh.vi"
    assert pd.isna(got["versions"].loc[1, "size"]) and pd.isna(got["versions"].loc[1, "permissions"])
    assert got["tree"].loc["/x.txt", "change"] == "added" and got["tree"].loc["/bin/vi", "change"] == "removed"
    assert got["df"]["images"].loc["framed:v1", "containers"] == 0
    assert pd.isna(got["compare"]["files"].loc["/x.txt", "size_a"])
    assert got["load"].index.tolist() == ["busybox:latest"]


def test_frames_display_human_sizes_and_honour_no_trunc(shell, store_dir):
    hist = shell.run_line_magic("lk", "history busybox")
    data, _ = shell.display_formatter.format(hist)
    page = data["text/html"]
    assert "1.98MB" in page and str(int(hist["size"].max())) not in page  # Docker's units shown ...
    assert hist["size"].max() > 1_000_000  # ... the values stay bytes
    assert "&lt;missing&gt;" in page and "2024-01-01 00:00:00 UTC" in page
    busybox_id = Store(store_dir).image("busybox").id
    assert busybox_id[7:19] in page and busybox_id not in page  # short IDs, as docker history prints them
    full = shell.run_line_magic("lk", "history busybox --no-trunc")
    assert full.attrs["layerkit"]["no_trunc"] and full.equals(hist)  # the same values ...
    page = shell.display_formatter.format(full)[0]["text/html"]
    assert busybox_id in page and "white-space: pre-wrap" in page  # ... shown whole, lines kept
    # --no-trunc applies to the display of any verb that returns a frame
    imgs = shell.run_line_magic("lk", "images --no-trunc")
    assert busybox_id in shell.display_formatter.format(imgs)[0]["text/html"]
    # a frame the user builds from a layerkit frame keeps the display; any other frame is pandas' own
    sub = hist[hist["size"] > 0]
    assert "1.98MB" in shell.display_formatter.format(sub)[0]["text/html"]
    plain = pd.DataFrame({"size": [1984233]})
    assert "1984233" in shell.display_formatter.format(plain)[0]["text/html"]


def test_format_json_and_no_trunc_are_honoured_or_refused(shell, store_dir, capsys):
    import json

    rows = shell.run_line_magic("lk", "history busybox --format json")
    main(["--store", str(store_dir), "history", "busybox", "--format", "json"])
    assert rows == json.loads(capsys.readouterr().out)
    assert rows[-1]["id"] == "<missing>"  # docker history --format json: "ID":"<missing>"
    tree = shell.run_line_magic("lk", "tree busybox --max-depth 2 --format json")
    assert isinstance(tree, list) and any(n.get("children") for n in tree)  # nested, as the CLI prints it
    versions = shell.run_line_magic("lk", "versions busybox /bin/sh --format json")
    assert versions[0]["entry"] == "symlink" and versions[0]["union"] == "shown"
    for line, words in (("inspect busybox --no-trunc", "--no-trunc does not apply to %lk inspect"),
                        ("cat busybox /etc/passwd --format json", "--format does not apply to %lk cat"),
                        ("tag busybox x:1 --format json", "--format does not apply to %lk tag")):
        with capture_output() as cap:
            res = shell.run_cell(f"%lk {line}")
        assert res.error_in_exec is not None and words in cap.stderr and "Traceback" not in cap.stderr, line
    assert "x:1" not in {t.familiar for i in Store(store_dir).images() for t in i.tags}  # refused before running


def test_efficiency_line_has_no_nan(shell):
    with capture_output() as cap:
        df = shell.run_line_magic("lk", "efficiency busybox")
    assert "no user layers" in cap.stdout and "nan" not in cap.stdout.lower()  # dive says NaN % here
    assert df.index.name == "path" and len(df) == 0


def test_build_cell_streams_steps_and_returns_their_frame(shell, store_dir, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("hello\n")
    cell = ("%%lk build -t lk.test/cellbuild:1 --context " + str(ctx) + "\n"
            "FROM busybox\n"
            "ENV GREETING=hi\n"
            "COPY app.txt /srv/app.txt\n"
            "RUN mkdir /made && echo $GREETING > /made/by-run && rm /bin/true\n"
            'CMD ["cat", "/srv/app.txt"]\n')
    with capture_output() as cap:
        res = shell.run_cell(cell)
    assert res.success, res.error_in_exec
    assert "Step 5/5 : CMD" in cap.stdout and "Successfully tagged lk.test/cellbuild:1" in cap.stdout
    df = res.result
    assert isinstance(df, pd.DataFrame) and list(df.index) == [1, 2, 3, 4, 5]
    assert df["instruction"].str.split().str[0].tolist() == ["FROM", "ENV", "COPY", "RUN", "CMD"]
    assert df["line"].tolist() == [1, 2, 3, 4, 5] and not df["cached"].any()
    # what each layer changes, as layer_files says of the built image's layers
    run_row, copy_row = df.loc[4], df.loc[3]
    assert (run_row["added"], run_row["deleted"]) == (2, 1)  # /made, /made/by-run; /bin/true removed
    assert copy_row["added"] == 2 and copy_row["size"] == 6  # /srv and /srv/app.txt (6 bytes)
    assert df.loc[[2, 5], "added"].isna().all()  # config-only steps made no layer
    rows = shell.run_cell("%lk images --format json").result
    tagged = [r for r in rows if r["repository"] == "lk.test/cellbuild" and r["tag"] == "1"]
    assert [r["id"] for r in tagged] == [df.loc[5, "id"]]  # the last step's image is the one tagged
    hist = shell.run_cell("%lk history lk.test/cellbuild:1").result
    assert len(hist) == len(shell.run_cell("%lk history busybox").result) + 4  # one row per step after FROM
    with capture_output() as cap:
        again = shell.run_cell(cell).result
    assert again["cached"].iloc[1:].all() and "Using cache" in cap.stdout
    assert again.loc[5, "id"] == df.loc[5, "id"]
    bad = shell.run_cell("%%lk build -f Dockerfile\nFROM busybox\n")
    assert bad.error_in_exec is not None


def test_plot_build_labels_each_step_with_its_instruction(shell, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "blob.bin").write_bytes(b"x" * 300_000)
    res = shell.run_cell("%%lk build -t lk.test/plotbuild:1 --build-arg V=7 --context " + str(ctx) + "\n"
                         "FROM busybox\nARG V\nCOPY blob.bin /blob.bin\nRUN echo $V > /v\nCMD [\"sh\"]\n")
    assert res.success, res.error_in_exec
    fig = shell.run_cell("%lk plot build lk.test/plotbuild:1").result
    ax = fig.axes[0]
    labels = [t.get_text().replace("\\$", "$") for t in ax.get_yticklabels()]  # mathtext escapes
    steps = len(shell.run_cell("%lk history lk.test/plotbuild:1").result)
    assert len(labels) == steps
    assert labels[0].startswith("0: ")  # the oldest step on top
    top = labels[-4:]  # the four steps of this Dockerfile, each named by its instruction
    assert top[0].endswith("ARG V") and top[1].startswith(f"{steps - 3}: COPY file:")
    assert top[2].endswith("RUN echo $V > /v") and top[3].endswith('CMD ["sh"]')
    widths = [p.get_width() for p in ax.patches]  # one bar per step, the oldest first
    assert widths[-3] == 300_000 and widths[-2] == 2  # the COPY's and the RUN's bytes (Docker's size)
    assert widths[-4] == widths[-1] == 0  # ARG and CMD made no layer
    fig.savefig(tmp_path / "build.png")
