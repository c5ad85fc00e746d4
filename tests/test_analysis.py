"""Analysis (issue 4): engine rows, the DataFrames built from them, and the plots drawn from those.

One small store is built once per module with the real CLI, in-process: busybox, then three images made
by ``run`` + ``commit`` whose scripts add, modify, chmod and delete files (a file, and a directory with
``rm -rf``) and copy one file's content into later layers. Every expectation below follows from those
scripts, so a wrong ``compare`` / ``layer_files`` / ``duplicates`` answer shows up as a path too many or
too few.

Plots are checked for a title, labelled axes and human sizes on the size axis, and, with a large
synthetic input (30 images, 162 layers, 100,000 files, built as rows without a store), for aggregating
the tail so that no chart draws more bars or ticks than the ``MAX_*`` constants allow. The PNGs are
written to ``out/test-plots/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from layerkit import commands
from layerkit.cli import main
from layerkit.engine import analysis
from layerkit.engine.image import Image
from layerkit.engine.store import Store
from layerkit.examples import MissingTool, busybox_archive
from layerkit.notebook import frames, plots
from layerkit.results import Table

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / "out" / "test-plots"

SEQ = "".join(f"{i}\n" for i in range(1, 3001)).encode()  # what `seq 1 3000` writes
SEQ_DIGEST = "sha256:" + hashlib.sha256(SEQ).hexdigest()

# app:v1 <- busybox: add files and directories, append to a file, chmod a file, delete a symlink
S1 = ("mkdir -p /app/sub /app/tree/deep && echo hello > /app/a.txt && seq 1 3000 > /app/big.bin && "
      "echo f > /app/sub/f && echo g > /app/tree/deep/g && echo extra >> /etc/passwd && chmod 600 /etc/group && "
      "rm /bin/vi")
# app:v2 <- app:v1: rewrite a file, copy one into this layer, chmod one, rm -rf a directory, add one
S2 = ("echo changed > /app/a.txt && cp /app/big.bin /app/copy.bin && chmod 700 /app/tree/deep/g && "
      "rm -rf /app/sub && echo new > /app/new.txt")
# other:v1 <- busybox: the same content as /app/big.bin under another name, and an empty directory removed
S3 = "mkdir /srv && seq 1 3000 > /srv/big.bin && echo other > /srv/o.txt && rm -rf /home"

NAMES = ["busybox:latest", "app:v1", "app:v2", "other:v1"]
HUMAN = re.compile(r"^(\d+(\.\d+)?(e\+\d+)?)(B|kB|MB|GB|TB|PB)$")


@dataclass
class Lab:
    root: Path
    store: Store
    images: dict[str, Image]

    def cli(self, *argv: str) -> str:
        """Run the CLI in-process on this store; return stdout (fails the test on a non-zero exit)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["--store", str(self.root), *argv])
        assert rc == 0, f"layerkit {' '.join(argv)} -> {rc}: {err.getvalue()}"
        return out.getvalue()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    if shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"):
        pytest.fail("runc is not installed (containers run with runc): apt-get install runc")
    root = tmp_path_factory.mktemp("analysis")
    try:
        archive = busybox_archive(root / "busybox.tar")
    except MissingTool as e:
        pytest.fail(str(e))
    lab = Lab(root / "store", None, {})  # type: ignore[arg-type]
    lab.cli("load", str(archive))
    for name, base, script, tag in (("c1", "busybox", S1, "app:v1"), ("c2", "app:v1", S2, "app:v2"),
                                    ("c3", "busybox", S3, "other:v1")):
        lab.cli("run", "--name", name, base, "sh", "-c", script)
        lab.cli("commit", "-m", f"commit of {name}", name, tag)
    lab.store = Store(lab.root)
    lab.images = {n: lab.store.image(n) for n in NAMES}
    assert [img.name for img in lab.images.values()] == NAMES
    return lab


def assert_sizes(df: pd.DataFrame, cols: list[str], nullable: bool = False) -> None:
    """Size columns are nullable Int64 bytes in every frame (never float, never a dtype that depends on
    whether a value happens to be missing); ``nullable``: this column has missing values here."""
    for c in cols:
        assert str(df[c].dtype) == "Int64", f"{c}: {df[c].dtype}"
        assert df[c].isna().any() == nullable, f"{c}: missing values {df[c].isna().sum()}"


def assert_utc(s: pd.Series, allow_missing: bool = False) -> None:
    assert isinstance(s.dtype, pd.DatetimeTZDtype), s.dtype
    assert str(s.dt.tz) == "UTC", s.dt.tz
    if not allow_missing:
        assert not s.isna().any(), f"unparsed times: {s[s.isna()].index.tolist()}"


# ---- DataFrames: columns, dtypes, index ---------------------------------------------------------

def test_images_and_history_frames(lab: Lab):
    df = frames.images(commands.images(lab.store))
    assert list(df.columns) == commands.IMAGE_KEYS
    assert df.index.name == "reference" and df.index.is_unique
    assert set(df.index) == set(NAMES)
    assert_sizes(df, ["size", "shared_size", "unique_size"])
    # busybox's config says 2024-01-01T00:00:00Z (no fraction), the commits carry microseconds: both parse
    assert_utc(df["created"])
    assert df.loc["busybox:latest", "created"] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert (df.loc[["app:v1", "app:v2", "other:v1"], "created"] > pd.Timestamp("2024-01-02", tz="UTC")).all()

    h = frames.history(commands.history(lab.store, "app:v2"))
    assert list(h.columns) == ["id", "created", "created_by", "size", "comment", "empty_layer", "diff_id"]
    assert h.index.name == "step" and list(h.index) == [3, 2, 1, 0]
    assert h.loc[0, "id"] == "<missing>"  # as docker history prints a row no local image names
    assert_utc(h["created"])
    assert h.loc[0, "created"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert h["created"].is_monotonic_decreasing
    assert_sizes(h, ["size"])
    assert h.loc[3, "created_by"] == f"sh -c {S2}" and h.loc[3, "comment"] == "commit of c2"
    assert h.loc[1, "empty_layer"] and h.loc[1, "size"] == 0
    assert h.loc[3, "id"] == lab.images["app:v2"].id and h.loc[2, "id"] == lab.images["app:v1"].id


def test_layers_frame(lab: Lab):
    img = lab.images["app:v2"]
    df = frames.layers(commands.layers(lab.store, "app:v2"))
    assert list(df.columns) == [k for k in commands.LAYER_KEYS if k != "index"]
    assert df.index.name == "layer_index" and list(df.index) == [0, 1, 2]
    assert_sizes(df, ["size", "tar_size", "compressed_size"])
    assert str(df["files"].dtype) == "int64"  # a count
    assert list(df["diff_id"]) == img.diff_ids
    assert list(df["size"]) == [la.size for la in img.layers]
    assert (df["tar_size"] >= df["size"]).all()
    assert sorted(df.loc[1, "shared_by"]) == ["app:v1"]
    assert df.loc[2, "shared_by"] == []
    assert df.loc[2, "created_by"] == f"sh -c {S2}"


def test_shared_long_and_matrix(lab: Lab):
    imgs = list(lab.images.values())
    rows = analysis.shared_layers(imgs)
    long = frames.shared_long(rows)
    assert list(long.columns) == ["image_id", "diff_id", "chain_id", "size", "compressed_size", "created_by",
                                  "shared_by", "shared_with"]
    assert long.index.names == ["image", "layer_index"] and long.index.is_unique
    assert len(long) == sum(len(i.diff_ids) for i in imgs) == 8
    assert_sizes(long, ["size", "compressed_size"])
    base = lab.images["busybox:latest"].chain_ids[0]
    assert (long.xs(0, level="layer_index")["chain_id"] == base).all()
    assert (long.xs(0, level="layer_index")["shared_by"] == 4).all()
    assert long.loc[("app:v1", 1), "shared_by"] == 2 and long.loc[("app:v1", 1), "shared_with"] == ["app:v2"]
    assert long.loc[("app:v2", 2), "shared_by"] == 1 and long.loc[("other:v1", 1), "shared_by"] == 1

    m = frames.shared_matrix(rows)
    assert list(m.index) == NAMES and m.index.name == "image" and m.columns.name == "layer"  # order given
    assert all(str(t) == "Int64" for t in m.dtypes)
    assert m.shape == (4, 4)  # four distinct chains
    assert m.columns[0] == lab.images["busybox:latest"].diff_ids[0]  # most shared first, named by diff_id
    for (image, _), r in long.iterrows():
        assert m.loc[image, r["diff_id"]] == r["size"]
    # present is a size (even 0), absent is <NA>
    assert m.notna().sum(axis=1).to_dict() == {n: len(lab.images[n].diff_ids) for n in NAMES}


def test_sharing_summary_equals_docker_df(lab: Lab):
    summary = frames.sharing_summary(analysis.shared_layers(list(lab.images.values())))
    assert list(summary.columns) == ["size", "shared_size", "unique_size"]
    assert summary.index.name == "image" and set(summary.index) == set(NAMES)
    assert_sizes(summary, ["size", "shared_size", "unique_size"])
    df = json.loads(lab.cli("df", "-v", "--format", "json"))
    want = {f"{r['repository']}:{r['tag']}": (r["size"], r["shared_size"], r["unique_size"]) for r in df["images"]}
    got = {n: tuple(int(v) for v in summary.loc[n, ["size", "shared_size", "unique_size"]]) for n in NAMES}
    assert got == want
    # and what that means here: busybox's layer is shared by all four, app:v1's layer by app:v1 and app:v2
    layer = {n: [la.size for la in img.layers] for n, img in lab.images.items()}
    assert got["busybox:latest"] == (layer["busybox:latest"][0], layer["busybox:latest"][0], 0)
    assert got["app:v1"] == (sum(layer["app:v1"]), sum(layer["app:v1"]), 0)
    assert got["app:v2"][2] == layer["app:v2"][2] and got["other:v1"][2] == layer["other:v1"][1]


def test_an_image_named_twice_counts_once(lab: Lab):
    """``report app:v1 app:v1`` (or two tags of one image) must not double its size or call it shared."""
    from layerkit.notebook import report

    again = lab.store.image("app:v1")
    rows = analysis.shared_layers([lab.images["app:v1"], lab.images["busybox:latest"], again])
    assert [(r["image"], r["index"]) for r in rows] == [("app:v1", 0), ("app:v1", 1), ("busybox:latest", 0)]
    summary = frames.sharing_summary(rows)
    assert summary.loc["app:v1", "size"] == lab.images["app:v1"].size
    assert summary.loc["app:v1", "unique_size"] == lab.images["app:v1"].layers[1].size
    titles = [s.title for s in report.build(lab.store, ["app:v1", "app:v1"])]
    assert titles == ["Summary", "Image app:v1"]


def test_files_frame_is_the_union_view(lab: Lab):
    img = lab.images["app:v2"]
    df = frames.files(analysis.files(lab.store, img))
    assert list(df.columns) == ["type", "size", "mode", "permissions", "uid", "gid", "link", "layer_index", "layer"]
    assert df.index.name == "path" and df.index.is_unique
    assert_sizes(df, ["size"])
    assert str(df["mode"].dtype) == "int64" and str(df["layer_index"].dtype) == "int64"
    assert "/app/sub" not in df.index and "/app/sub/f" not in df.index and "/bin/vi" not in df.index
    where = df["layer_index"].to_dict()
    assert where["/app/a.txt"] == 2 and where["/app/copy.bin"] == 2 and where["/app/new.txt"] == 2
    assert where["/app/big.bin"] == 1 and where["/etc/passwd"] == 1 and where["/etc/group"] == 1
    assert where["/bin/busybox"] == 0 and where["/bin/sh"] == 0
    assert df.loc["/etc/group", "mode"] == 0o600 and df.loc["/app/tree/deep/g", "mode"] == 0o700
    assert df.loc["/bin/sh", "type"] == "symlink" and df.loc["/bin/sh", "link"] == "busybox"
    assert df.loc["/app/big.bin", "size"] == len(SEQ)
    assert (df["layer"] == [img.diff_ids[i] for i in df["layer_index"]]).all()
    # the CLI verb prints the same rows
    cli = json.loads(lab.cli("files", "app:v2", "--format", "json"))
    assert [r["path"] for r in cli] == list(df.index)


# what each commit did, as layer_files must report it (parents of changed paths are copied up as dirs)
LAYER_CHANGES = {
    ("app:v1", 1): {
        "added": {"/app", "/app/a.txt", "/app/big.bin", "/app/sub", "/app/sub/f", "/app/tree", "/app/tree/deep",
                  "/app/tree/deep/g"},
        "modified": {"/bin", "/etc", "/etc/group", "/etc/passwd"},
        "deleted": {"/bin/vi"},
    },
    ("app:v2", 2): {
        "added": {"/app/copy.bin", "/app/new.txt"},
        "modified": {"/app", "/app/a.txt", "/app/tree", "/app/tree/deep", "/app/tree/deep/g"},
        "deleted": {"/app/sub", "/app/sub/f"},
    },
    ("other:v1", 1): {"added": {"/srv", "/srv/big.bin", "/srv/o.txt"}, "modified": set(), "deleted": {"/home"}},
    ("busybox:latest", 0): None,  # everything added
}


@pytest.mark.parametrize("name,index", list(LAYER_CHANGES))
def test_layer_files_kinds(lab: Lab, name: str, index: int):
    img = lab.images[name]
    df = frames.layer_files(analysis.layer_files(lab.store, img, index))
    assert list(df.columns) == ["kind", "type", "size", "below_size", "below_layer"]
    assert df.index.name == "path" and df.index.is_unique
    assert_sizes(df, ["size", "below_size"])
    assert str(df["below_layer"].dtype) == "Int64"
    want = LAYER_CHANGES[(name, index)]
    if want is None:
        assert set(df["kind"]) == {"added"} and len(df) == len(img.layers[0].index().entries)
        assert (df["type"] != "dir").sum() == img.layers[0].files
        assert df["below_layer"].isna().all()
        return
    got = {k: set(df.index[df["kind"] == k]) for k in ("added", "modified", "deleted")}
    assert got == want
    assert set(df["kind"]) <= {"added", "modified", "deleted"}
    assert df.loc[df["kind"] == "added", "below_layer"].isna().all()
    assert df.loc[df["kind"] != "added", "below_layer"].notna().all()
    if name == "app:v1":
        assert df.loc["/etc/passwd", "size"] == df.loc["/etc/passwd", "below_size"] + len("extra\n")
        assert df.loc["/etc/group", "size"] == df.loc["/etc/group", "below_size"]  # chmod copies it up
        assert df.loc["/bin/vi", "type"] == "symlink" and df.loc["/bin/vi", "below_layer"] == 0
    if name == "app:v2":
        assert df.loc["/app/a.txt", ["size", "below_size"]].tolist() == [len("changed\n"), len("hello\n")]
        assert df.loc["/app/sub/f", ["size", "below_size", "below_layer"]].tolist() == [0, 2, 1]
        assert df.loc["/app/copy.bin", "size"] == len(SEQ)


def test_container_diff_frame(lab: Lab):
    df = frames.diff(commands.diff(lab.store, "c2"))
    assert list(df.columns) == ["kind", "size"] and df.index.name == "path" and df.index.is_unique
    assert_sizes(df, ["size"])
    # a modified file marks no directory above it; an added or deleted one marks them all (the overlay walk)
    assert df["kind"].to_dict() == {"/app": "C", "/app/a.txt": "C", "/app/copy.bin": "A", "/app/new.txt": "A",
                                    "/app/sub": "D", "/app/tree/deep/g": "C"}


# ---- compare ------------------------------------------------------------------------------------

def kinds(result: dict) -> dict[str, set[str]]:
    df = frames.compare_files(result)
    return {k: set(df.index[df["kind"] == k]) for k in ("added", "removed", "changed", "metadata")}


def test_compare_parent_and_child(lab: Lab):
    res = analysis.compare(lab.store, lab.images["app:v1"], lab.images["app:v2"])
    assert res["shared_prefix"] == 2 and res["diverges_at"] == 2
    assert kinds(res) == {"added": {"/app/copy.bin", "/app/new.txt"}, "removed": {"/app/sub", "/app/sub/f"},
                          "changed": {"/app/a.txt"}, "metadata": {"/app/tree/deep/g"}}
    f = frames.compare_files(res)
    assert list(f.columns) == ["kind", "size_a", "size_b"] and f.index.name == "path" and f.index.is_unique
    assert_sizes(f, ["size_a", "size_b"], nullable=True)
    assert pd.isna(f.loc["/app/copy.bin", "size_a"]) and f.loc["/app/copy.bin", "size_b"] == len(SEQ)
    assert pd.isna(f.loc["/app/sub/f", "size_b"]) and f.loc["/app/sub/f", "size_a"] == 2
    assert f.loc["/app/a.txt", ["size_a", "size_b"]].tolist() == [6, 8]
    la = frames.compare_layers(res)
    assert list(la.columns) == ["diff_id_a", "diff_id_b", "size_a", "size_b", "shared"]
    assert la.index.name == "layer_index" and list(la.index) == [0, 1, 2]
    assert la["shared"].tolist() == [True, True, False]
    assert pd.isna(la.loc[2, "diff_id_a"]) and la.loc[2, "diff_id_b"] == lab.images["app:v2"].diff_ids[2]
    assert_sizes(la, ["size_a"], nullable=True)  # app:v1 has no layer 2
    assert_sizes(la, ["size_b"])


def test_compare_siblings_both_ways(lab: Lab):
    a, b = lab.images["app:v1"], lab.images["other:v1"]
    res = analysis.compare(lab.store, a, b)
    assert res["shared_prefix"] == 1 and res["diverges_at"] == 1
    app = {"/app", "/app/a.txt", "/app/big.bin", "/app/sub", "/app/sub/f", "/app/tree", "/app/tree/deep",
           "/app/tree/deep/g"}
    want = {"added": {"/bin/vi", "/srv", "/srv/big.bin", "/srv/o.txt"}, "removed": app | {"/home"},
            "changed": {"/etc/passwd"}, "metadata": {"/etc/group"}}
    assert kinds(res) == want
    back = kinds(analysis.compare(lab.store, b, a))
    assert back == {"added": want["removed"], "removed": want["added"], "changed": want["changed"],
                    "metadata": want["metadata"]}
    # /srv/big.bin and /app/big.bin have one content, but a different path: that is duplicates' job


def test_compare_with_base_and_itself(lab: Lab):
    res = analysis.compare(lab.store, lab.images["busybox:latest"], lab.images["app:v2"])
    assert res["shared_prefix"] == 1 and res["diverges_at"] == 1
    assert kinds(res) == {"added": {"/app", "/app/a.txt", "/app/big.bin", "/app/copy.bin", "/app/new.txt",
                                    "/app/tree", "/app/tree/deep", "/app/tree/deep/g"},
                          "removed": {"/bin/vi"}, "changed": {"/etc/passwd"}, "metadata": {"/etc/group"}}
    same = analysis.compare(lab.store, lab.images["app:v2"], lab.images["app:v2"])
    assert same["files"] == [] and same["shared_prefix"] == 3 and same["diverges_at"] is None
    out = lab.cli("compare", "app:v1", "app:v2", "--format", "json")
    assert json.loads(out)["files"] == analysis.compare(lab.store, lab.images["app:v1"],
                                                        lab.images["app:v2"])["files"]


# ---- duplicates ---------------------------------------------------------------------------------

def test_duplicates_across_layers_and_images(lab: Lab):
    imgs = list(lab.images.values())
    df = frames.duplicates(analysis.duplicates(lab.store, imgs))
    assert list(df.columns) == ["image", "layer_index", "size", "copies", "wasted_bytes"]
    assert df.index.names == ["content_digest", "diff_id", "path"] and df.index.is_unique
    assert_sizes(df, ["size", "wasted_bytes"])
    groups = {d: set(g.index.get_level_values("path")) for d, g in df.groupby(level="content_digest")}
    # the copied file (cp in app:v2, the same bytes written in other:v1) and the two chmod copy-ups
    assert groups[SEQ_DIGEST] == {"/app/big.bin", "/app/copy.bin", "/srv/big.bin"}
    assert sorted(groups.values(), key=sorted) == sorted(
        [{"/app/big.bin", "/app/copy.bin", "/srv/big.bin"}, {"/etc/group"}, {"/app/tree/deep/g"}], key=sorted)
    big = df.xs(SEQ_DIGEST, level="content_digest")
    assert set(zip(big["image"], big["layer_index"], strict=True)) == {("app:v1", 1), ("app:v2", 2), ("other:v1", 1)}
    assert (big["size"] == len(SEQ)).all() and (big["copies"] == 3).all()
    assert (big["wasted_bytes"] == 2 * len(SEQ)).all()
    grp = df.xs("/etc/group", level="path")
    assert len(grp) == 2 and len(set(grp.index.get_level_values("diff_id"))) == 2
    # the biggest waste first
    assert df.index.get_level_values("content_digest")[0] == SEQ_DIGEST
    # one image alone: only its own layers count, and a layer shared by two images is read once
    one = analysis.duplicates(lab.store, [lab.images["app:v1"]])
    assert {r["path"] for r in one} == {"/etc/group"}
    assert analysis.duplicates(lab.store, [lab.images["busybox:latest"]]) == []
    assert {r["path"] for r in analysis.duplicates(lab.store, imgs, min_size=100)} == groups[SEQ_DIGEST]


# ---- plots ---------------------------------------------------------------------------------------

def save(fig: Figure, name: str) -> tuple[Path, float]:
    """Render to PNG under out/test-plots/; returns the file and the seconds it took."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{name}.png"
    t = time.perf_counter()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    elapsed = time.perf_counter() - t
    assert path.stat().st_size > 5000
    return path, elapsed


def plot_axes(fig: Figure):
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def assert_labelled(fig: Figure) -> None:
    """A title (the figure's or each axes') and both axes labelled."""
    assert isinstance(fig, Figure)
    axes = plot_axes(fig)
    assert axes
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_title() or sup, "no title"
        assert ax.get_xlabel() and ax.get_ylabel(), (ax.get_xlabel(), ax.get_ylabel())


def size_ticks(ax, axis: str) -> list[str]:
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in labels if t.get_text()]


def assert_human_ticks(ax, axis: str) -> None:
    ticks = size_ticks(ax, axis)
    assert ticks, "no size ticks"
    bad = [t for t in ticks if not HUMAN.match(t)]
    assert not bad, f"size ticks not in Docker's units: {bad}"


def test_plots_of_the_lab(lab: Lab):
    imgs = list(lab.images.values())
    rows = analysis.shared_layers(imgs)
    long, summary = frames.shared_long(rows), frames.sharing_summary(rows)
    img = lab.images["app:v2"]
    lay = frames.layers(commands.layers(lab.store, "app:v2"))
    files = frames.files(analysis.files(lab.store, img))
    ch = pd.concat([frames.layer_files(analysis.layer_files(lab.store, img, i)).assign(layer=i)
                    for i in range(len(img.diff_ids))])
    diff = frames.diff(commands.diff(lab.store, "c1"))
    figs = {
        "lab-layer-sizes": (plots.layer_sizes(long), "y"),
        "lab-shared-heatmap": (plots.shared_heatmap(frames.shared_matrix(rows)), None),
        "lab-shared-vs-unique": (plots.shared_vs_unique(summary), "x"),
        "lab-cumulative": (plots.cumulative_size(lay), "y"),
        "lab-wasted": (plots.wasted_by_layer(ch), "y"),
        "lab-largest-files": (plots.largest_files(files), "x"),
        "lab-largest-dirs": (plots.largest_files(files, by_directory=True), "x"),
        "lab-diff": (plots.diff_bytes(diff), None),
    }
    for name, (fig, size_axis) in figs.items():
        save(fig, name)
        assert_labelled(fig)
        if size_axis:
            assert_human_ticks(plot_axes(fig)[0], size_axis)
    ax = plot_axes(figs["lab-diff"][0])
    assert_human_ticks(ax[0], "y")
    assert_human_ticks(ax[1], "x")
    # layer_sizes: one colour per layer in every image that has it, one bar per image
    ax = plot_axes(figs["lab-layer-sizes"][0])[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES  # in the order given
    base_colour = {tuple(p.get_facecolor()) for p in ax.patches if p.get_y() == 0}
    assert len(base_colour) == 1  # the busybox layer is at the bottom of every bar, in one colour
    # layers are named by diff_id, as in the layers table; the lab's own layers (a few kB) are under
    # 1.2% of busybox's 2MB: drawn at a visible height, and the legend says so
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {t[:12] for t in legend if not t.startswith("outlined")} == {d[7:19] for d in long["diff_id"]}
    assert any(t.startswith("outlined: under") for t in legend)
    # largest files: the two copies of the sequence come first
    ax = plot_axes(figs["lab-largest-files"][0])[0]
    top = [t.get_text() for t in ax.get_yticklabels()][-3:]
    assert "/bin/busybox" in top and {"/app/big.bin", "/app/copy.bin"} & set(top)
    # one layer: integer layer ticks, not -0.4 ... 0.4; nothing wasted: a sentence, not fractional bytes
    bb = lab.images["busybox:latest"]
    fig = plots.cumulative_size(frames.layers(commands.layers(lab.store, "busybox")))
    save(fig, "lab-cumulative-one-layer")
    assert [t.get_text() for t in plot_axes(fig)[0].get_xticklabels() if t.get_text()] == [
        f"0\n{bb.diff_ids[0][7:19]}"]  # the layer's position and diff_id, as the layers table names it
    # nothing wasted: one line of text, no empty chart
    nothing = plots.wasted_by_layer(frames.layer_files(analysis.layer_files(lab.store, bb, 0)).assign(layer=0))
    assert isinstance(nothing, plots.NothingToShow) and "no layer overrides" in nothing.message
    assert "nothing to show" in nothing._repr_html_() and not hasattr(nothing, "savefig")
    # the colorbar of the heatmap shows human sizes too
    cbar = [a for a in figs["lab-shared-heatmap"][0].axes if hasattr(a, "_colorbar")]
    assert cbar and cbar[0].get_ylabel()
    assert_human_ticks(cbar[0], "y")


# ---- large inputs: aggregated, and fast -----------------------------------------------------------

N_IMAGES, N_FILES = 30, 100_000


def synthetic_shared_rows() -> list[dict]:
    """30 images: a 2-layer base shared by all, 5 families of 2 layers, 5 own layers each: 162 layers."""
    def chain(*parts) -> str:
        return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()

    stacks = {}
    for i in range(N_IMAGES):
        fam = i % 5
        stacks[f"registry.example/team{fam}/service-{i:02d}:1.{i}"] = (
            [("base", 0), ("base", 1), (f"fam{fam}", 0), (f"fam{fam}", 1)] + [(f"img{i}", k) for k in range(5)])
    users: dict[str, list[str]] = {}
    chains = {}
    for name, parts in stacks.items():
        ids = []
        for depth in range(len(parts)):
            ids.append(chain(*parts[: depth + 1]))
        chains[name] = ids
        for cid in ids:
            users.setdefault(cid, []).append(name)
    rows = []
    for name, ids in chains.items():
        for idx, cid in enumerate(ids):
            size = (70_000_000 if idx < 2 else 12_000_000 if idx < 4 else 0) + int(cid[7:13], 16) % 9_000_000 + 100
            rows.append({"image": name, "image_id": chain(name), "index": idx, "diff_id": chain("d", cid),
                         "chain_id": cid, "size": size, "compressed_size": size // 3,
                         "created_by": f"/bin/sh -c apt-get install -y pkg{idx} && rm -rf /var/lib/apt/lists/*",
                         "shared_by": len(users[cid]), "shared_with": [u for u in users[cid] if u != name]})
    assert len({r["chain_id"] for r in rows}) == 2 + 10 + 5 * N_IMAGES
    return rows


def test_large_inputs_are_aggregated_and_fast():
    rows = synthetic_shared_rows()
    long, summary, matrix = frames.shared_long(rows), frames.sharing_summary(rows), frames.shared_matrix(rows)
    assert matrix.shape == (N_IMAGES, 162)
    n_layers = 150
    lay = frames.layers(Table([], [{"index": i, "diff_id": f"sha256:{i:064x}", "digest": f"sha256:{i:064x}",
                                   "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "size": 1000 + (i * 7919) % 5_000_000, "tar_size": 0, "compressed_size": 0,
                                   "files": 10, "created_by": f"RUN step {i}", "shared_by": []}
                                  for i in range(n_layers)], commands.LAYER_KEYS))
    files = frames.files([{"path": f"/usr/share/pkg{i % 500:03d}/dir{i % 37}/file-{i:06d}.dat", "type": "file",
                           "size": (i * 2654435761) % 3_000_000, "mode": 0o644, "uid": 0, "gid": 0, "link": None,
                           "layer_index": i % n_layers, "layer": f"sha256:{i % n_layers:064x}"}
                          for i in range(N_FILES)])
    ch = frames.layer_files([{"path": f"/var/cache/f{i}", "kind": ("added", "modified", "deleted")[i % 3],
                              "type": "file", "size": 100, "below_size": 1000 + i, "below_layer": 0}
                             for i in range(N_FILES)])
    ch["layer"] = [1 + i % (n_layers - 1) for i in range(N_FILES)]
    diff = frames.diff(Table([], [{"kind": "ACD"[i % 3], "path": f"/top{i % 60}/sub/f{i}", "size": i % 4096}
                                  for i in range(N_FILES)], ["kind", "path", "size"]))

    timings = {}

    def draw(name, fn, *args, **kw):
        t = time.perf_counter()
        fig = fn(*args, **kw)
        built = time.perf_counter() - t
        _, rendered = save(fig, name)
        timings[name] = round(built + rendered, 2)
        assert_labelled(fig)
        return fig, plot_axes(fig)[0]

    fig, ax = draw("large-layer-sizes", plots.layer_sizes, long)
    assert len(ax.get_xticks()) <= plots.MAX_IMAGES
    assert f"of {N_IMAGES}" in ax.get_title()
    colours = {tuple(p.get_facecolor()) for p in ax.patches}
    assert len(ax.get_legend().get_texts()) <= plots.MAX_LAYERS + 1
    assert "other" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    for x in range(plots.MAX_IMAGES):  # bands per bar
        assert sum(1 for p in ax.patches if abs(p.get_x() + p.get_width() / 2 - x) < 1e-6) <= plots.MAX_LAYERS + 1
    # every layer in the legend has a colour of its own (a hash into 20 colours used to repeat them)
    assert len(colours) == len(ax.get_legend().get_texts())

    fig, ax = draw("large-shared-heatmap", plots.shared_heatmap, matrix)
    data = ax.images[0].get_array()
    assert data.shape[0] <= plots.MAX_IMAGES and data.shape[1] <= plots.MAX_LAYERS
    assert len(ax.get_xticks()) <= plots.MAX_LAYERS and len(ax.get_yticks()) <= plots.MAX_IMAGES
    assert ax.get_xticklabels()[-1].get_text() == "other"

    fig, ax = draw("large-shared-vs-unique", plots.shared_vs_unique, summary)
    assert len(ax.get_yticks()) <= plots.MAX_IMAGES
    assert_human_ticks(ax, "x")

    fig, ax = draw("large-cumulative", plots.cumulative_size, lay)
    assert len(ax.patches) <= plots.MAX_LAYERS + 1, f"{len(ax.patches)} bars for {n_layers} layers"
    assert len(ax.get_xticks()) <= plots.MAX_LAYERS + 2
    assert_human_ticks(ax, "y")
    top = max(p.get_y() + p.get_height() for p in ax.patches)
    assert top <= lay["size"].sum()
    line = ax.lines[0].get_ydata()
    assert line[-1] == lay["size"].sum()  # nothing lost in the aggregation

    fig, ax = draw("large-wasted", plots.wasted_by_layer, ch)
    assert len(ax.patches) <= plots.MAX_LAYERS + 1, f"{len(ax.patches)} bars for {n_layers} layers"
    assert sum(p.get_height() for p in ax.patches) == ch.loc[ch["kind"] != "added", "below_size"].sum()

    for by_dir in (False, True):
        fig, ax = draw(f"large-largest-{'dirs' if by_dir else 'files'}", plots.largest_files, files,
                       by_directory=by_dir)
        assert len(ax.patches) <= plots.MAX_BARS + 1
        assert len(ax.get_yticks()) <= plots.MAX_BARS + 1
        assert sum(p.get_width() for p in ax.patches) == files["size"].sum()
        if not by_dir:
            assert ax.get_yticklabels()[0].get_text().startswith("other (")

    fig, _ = draw("large-diff", plots.diff_bytes, diff)
    ax_kind, ax_dir = plot_axes(fig)
    assert len(ax_kind.patches) == 3
    assert len(ax_dir.patches) <= plots.MAX_BARS + 1
    assert sum(p.get_width() for p in ax_dir.patches) == diff["size"].sum()

    slow = {k: v for k, v in timings.items() if v > 5}
    assert not slow, f"plots too slow (s): {timings}"
    assert sum(timings.values()) < 20, timings
    print("plot timings (s):", timings)


def test_plot_labels_taken_from_images_are_literal():
    """Strings from images reach tick labels and legends: a ``$`` must not switch matplotlib to mathtext
    (a created_by like ``"$(dpkg --print-architecture)"; ${a##*-}`` would fail to render), and a long path
    keeps its file name so two files in one deep directory get two bars, not one."""
    deep = "/usr/lib/python3/dist-packages/some/very/long/package/directory/name/for/modules"
    paths = [f"{deep}/module_a.cpython-311-x86_64-linux-gnu.so", f"{deep}/module_b.cpython-311-x86_64-linux-gnu.so",
             "/app/$\\frac$", "/app/$HOME and $PATH"]
    files = frames.files([{"path": p, "type": "file", "size": 1000 * (i + 1), "mode": 0o644, "uid": 0, "gid": 0,
                           "link": None, "layer_index": 0, "layer": "sha256:" + "0" * 64}
                          for i, p in enumerate(paths)])
    fig = plots.largest_files(files)
    save(fig, "literal-labels-files")
    labels = [t.get_text() for t in plot_axes(fig)[0].get_yticklabels()]
    assert len(set(labels)) == len(paths) == len(plot_axes(fig)[0].patches), labels
    assert any("module_a" in t for t in labels) and any("module_b" in t for t in labels)

    cb = 'RUN set -eux; dpkgArch="$(dpkg --print-architecture)"; url="${base}/${dpkgArch##*-}"'
    rows = [{"image": "a:1", "image_id": "sha256:" + "a" * 64, "index": 0, "diff_id": "sha256:" + "1" * 64,
             "chain_id": "sha256:" + "1" * 64, "size": 5_000_000, "compressed_size": 1, "created_by": cb,
             "shared_by": 1, "shared_with": []},
            {"image": "a:1", "image_id": "sha256:" + "a" * 64, "index": 1, "diff_id": "sha256:" + "2" * 64,
             "chain_id": "sha256:" + "2" * 64, "size": 3_000_000, "compressed_size": 1,
             "created_by": r"/bin/sh -c echo $\frac$", "shared_by": 1, "shared_with": []}]
    fig = plots.layer_sizes(frames.shared_long(rows))
    save(fig, "literal-labels-layers")  # raised ValueError (mathtext) before
    diff = frames.diff(Table([], [{"kind": "A", "path": "/$x$/y", "size": 10}], ["kind", "path", "size"]))
    save(plots.diff_bytes(diff), "literal-labels-diff")


# ---- plots that do not mislead (issue 12, item 5) -----------------------------------------------------

def _rows(stacks: dict[str, list[tuple[str, int]]]) -> list[dict]:
    """shared_layers-like rows for images given as [(layer name, size), ...] bottom first."""
    def h(*parts) -> str:
        return "sha256:" + hashlib.sha256("/".join(parts).encode()).hexdigest()

    users: dict[str, list[str]] = {}
    chains = {}
    for img, layers in stacks.items():
        chains[img] = [h(*[n for n, _ in layers[:k + 1]]) for k in range(len(layers))]
        for c in chains[img]:
            users.setdefault(c, []).append(img)
    return [{"image": img, "image_id": h("img", img), "index": k, "diff_id": h("diff", name), "chain_id": cid,
             "size": size, "compressed_size": size, "created_by": f"RUN {name}", "shared_by": len(users[cid]),
             "shared_with": [u for u in users[cid] if u != img]}
            for img, layers in stacks.items()
            for k, ((name, size), cid) in enumerate(zip(layers, chains[img], strict=True))]


STACKS = {"zeta:1": [("base", 5_000_000), ("env", 0), ("tiny", 12)],
          "alpha:1": [("base", 5_000_000), ("big", 3_000_000)],
          "mid:1": [("base", 5_000_000), ("env", 0)]}


def test_zero_byte_and_tiny_layers_are_drawn_present():
    rows = _rows(STACKS)
    long = frames.shared_long(rows)
    fig = plots.layer_sizes(long)
    save(fig, "honest-layer-sizes")
    ax = plot_axes(fig)[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(STACKS)  # the order given, not by size
    tallest = max(sum(s for _, s in layers) for layers in STACKS.values())
    floor = plots.MIN_VISIBLE * tallest
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2  # env in zeta:1 and in mid:1
    assert all(p.get_facecolor()[:3] == (1.0, 1.0, 1.0) and p.get_height() >= floor * 0.999 for p in hatched)
    visible = [p for p in ax.patches if p.get_height() > 0]
    assert len(visible) == len(ax.patches) == sum(len(v) for v in STACKS.values())  # nothing invisible
    tiny = [p for p in ax.patches if not p.get_hatch() and p.get_edgecolor()[:3] == (0.0, 0.0, 0.0)]
    assert len(tiny) == 1 and tiny[0].get_height() >= floor * 0.999  # the 12-byte layer, raised and outlined
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("(0B)" in t for t in legend) and any(t.startswith("hatched") for t in legend)
    assert any(t.startswith("outlined: under") for t in legend)
    env = [r["diff_id"] for r in rows if r["created_by"] == "RUN env"][0]
    assert any(t.startswith(env[7:19]) for t in legend)  # named by diff_id

    # the heatmap: a 0-byte layer that is there is a hatched cell, absent is blank; images in the order given
    m = frames.shared_matrix(rows)
    assert pd.isna(m.loc["alpha:1", env]) and m.loc["mid:1", env] == 0
    fig = plots.shared_heatmap(m)
    save(fig, "honest-heatmap")
    ax = plot_axes(fig)[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(STACKS)
    cells = [p for p in ax.patches if p.get_hatch()]
    col = list(m.columns).index(env)
    assert sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in cells) == [(0, col), (2, col)]
    data = ax.images[0].get_array()
    assert data.mask[1, col] and data.mask[0, col]  # neither absent nor 0 takes a colour of the scale

    fig = plots.shared_vs_unique(frames.sharing_summary(rows))
    save(fig, "honest-shared-vs-unique")
    ax = plot_axes(fig)[0]
    assert [t.get_text() for t in ax.get_yticklabels()][::-1] == list(STACKS)  # top to bottom as given
    assert sum(1 for t in ax.texts if "unique" in t.get_text()) == 3  # every bar says its parts

    lay = frames.layers(Table([], [{"index": i, "diff_id": r["diff_id"], "digest": r["diff_id"], "media_type": "",
                                    "size": r["size"], "tar_size": r["size"], "compressed_size": r["size"],
                                    "files": 1, "created_by": r["created_by"], "shared_by": []}
                                   for i, r in enumerate(r for r in rows if r["image"] == "zeta:1")],
                              commands.LAYER_KEYS))
    fig = plots.cumulative_size(lay)
    save(fig, "honest-cumulative")
    ax = plot_axes(fig)[0]
    bars = ax.patches
    assert [bool(p.get_hatch()) for p in bars] == [False, True, False]
    assert all(p.get_height() >= plots.MIN_VISIBLE * 5_000_000 * 0.999 for p in bars)
    assert {t.get_text() for t in ax.texts} == {"0B", "12B"}  # the raised bars say their real size
    assert ax.lines[0].get_ydata()[-1] == 5_000_012  # the running total is exact


def test_largest_files_leaves_out_directories_and_empty_entries():
    files = frames.files([{"path": p, "type": t, "size": s, "mode": 0o644, "uid": 0, "gid": 0, "link": None,
                           "layer_index": 0, "layer": "sha256:" + "0" * 64}
                          for p, t, s in (("/d", "dir", 4096), ("/d/a", "file", 300), ("/d/empty", "file", 0),
                                          ("/d/l", "symlink", 1), ("/e", "dir", 0))])
    fig = plots.largest_files(files, image="demo:v1")
    save(fig, "honest-largest")
    ax = plot_axes(fig)[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["/d/l", "/d/a"]
    assert "demo:v1" in ax.get_title()
    assert {t.get_text().strip() for t in ax.texts} == {"300B", "1B"}
    only_dirs = files[files["type"] == "dir"]
    nothing = plots.largest_files(only_dirs, image="demo:v1")
    assert isinstance(nothing, plots.NothingToShow) and "demo:v1" in nothing.message


def test_nothing_to_show_is_one_line_not_an_empty_chart():
    empty_long = frames.shared_long([])
    assert isinstance(plots.layer_sizes(empty_long), plots.NothingToShow)
    assert isinstance(plots.shared_heatmap(frames.shared_matrix([])), plots.NothingToShow)
    assert isinstance(plots.shared_vs_unique(frames.sharing_summary([])), plots.NothingToShow)
    empty_diff = frames.diff(Table([], [], ["kind", "path", "size"]))
    assert isinstance(plots.diff_bytes(empty_diff), plots.NothingToShow)
    deletions = frames.diff(Table([], [{"kind": "D", "path": "/x", "size": 0}], ["kind", "path", "size"]))
    assert "no bytes" in plots.diff_bytes(deletions).message
    assert isinstance(plots.cumulative_size(frames.layers(Table([], [], commands.LAYER_KEYS))), plots.NothingToShow)
    for obj in (plots.layer_sizes(empty_long), plots.diff_bytes(empty_diff)):
        assert "\n" not in obj.message and obj.message.startswith("nothing to show")
