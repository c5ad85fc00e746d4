"""The widget panels in-process (no kernel): controls changed programmatically, Output widgets updated in
place with text/html tables and image/png charts, paging, filtering, the commit button."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import tarfile
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from layerkit.cli import main
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive
from layerkit.notebook import widgets as lkw

SITE_V1 = ("mkdir -p /www && echo '<h1>v1</h1>' > /www/index.html && echo bye > /www/old.txt && "
           "echo 'www:x:33:33::/www:/bin/false' >> /etc/passwd")
SITE_V2 = "echo '<h1>v2</h1>' > /www/index.html && rm /www/old.txt /bin/vi && head -c 20000 /bin/busybox > /www/app.bin"


@pytest.fixture(scope="module", autouse=True)
def shell():
    """An in-memory IPython shell: ``Output.append_display_data`` formats through its display formatter."""
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    yield sh
    InteractiveShell.clear_instance()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """busybox, web:v1 and web:v2 (each committed from a container); containers site1 and site2 stay."""
    d = tmp_path_factory.mktemp("widgets")
    s = str(d / "store")
    assert main(["--store", s, "load", str(busybox_archive(d / "bb.tar"))]) == 0
    assert main(["--store", s, "run", "--name", "site1", "busybox", "sh", "-c", SITE_V1]) == 0
    assert main(["--store", s, "commit", "-m", "site v1", "site1", "web:v1"]) == 0
    assert main(["--store", s, "run", "--name", "site2", "web:v1", "sh", "-c", SITE_V2]) == 0
    assert main(["--store", s, "commit", "-m", "site v2", "site2", "web:v2"]) == 0
    return d / "store"


@pytest.fixture()
def store(store_dir):
    return Store(store_dir)


def mimes(out) -> list[set[str]]:
    """The MIME types of each output of an Output widget."""
    return [set(o["data"]) for o in out.outputs]


def html_of(out) -> str:
    return "".join(o["data"].get("text/html", "") for o in out.outputs)


def png_of(out) -> bytes:
    """The one PNG an Output shows; base64 text as in a notebook file (raw bytes would reach the browser
    as a binary buffer and render as a broken image)."""
    pngs = [o["data"]["image/png"] for o in out.outputs if "image/png" in o["data"]]
    assert len(pngs) == 1, mimes(out)
    assert isinstance(pngs[0], str)
    png = base64.b64decode(pngs[0])
    assert png[:4] == b"\x89PNG"
    return png


def rows_of(text: str) -> list[list[str]]:
    """The body rows of the HTML tables in ``text``, as lists of cell texts (header rows have no td)."""
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", text, re.S):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            out.append(cells)
    return out


def table_paths(out) -> list[str]:
    """The first cells of the table rows (the path column of a files table)."""
    return [r[0] for r in rows_of(html_of(out))]


# ---- image explorer ------------------------------------------------------------------------------

def test_explorer_updates_in_place_on_image_and_layer(store):
    ex = lkw.image_explorer(store, "web:v2")
    assert isinstance(ex, lkw.widgets.VBox)
    assert ex.image.value == store.image("web:v2").id
    assert mimes(ex.history_out) == [{"text/plain", "text/html"}]
    assert "<table" in html_of(ex.history_out) and "site v2" in html_of(ex.history_out)
    assert [r[0] for r in rows_of(html_of(ex.history_out))] == ["3", "2", "1", "0"]
    assert rows_of(html_of(ex.history_out))[-1][1] == "<missing>"  # as docker history prints it
    chart = png_of(ex.chart_out)
    assert [v for _, v in ex.layer.options] == [0, 1, 2] and ex.layer.value == 2
    assert "efficiency" in html_of(ex.efficiency_out)
    assert "web:v2" in ex.summary.value and "3 layers" in ex.summary.value
    hist, changes, tree = html_of(ex.history_out), html_of(ex.changes_out), html_of(ex.tree_out)

    ex.image.value = store.image("web:v1").id  # pick another image: everything follows
    assert html_of(ex.history_out) != hist and "site v1" in html_of(ex.history_out)
    assert "site v2" not in html_of(ex.history_out)
    assert png_of(ex.chart_out) != chart
    assert [v for _, v in ex.layer.options] == [0, 1] and ex.layer.value == 1
    assert len(ex.history_out.outputs) == 1 and len(ex.chart_out.outputs) == 1  # replaced, not stacked
    assert html_of(ex.changes_out) != changes

    chart, changes, tree = png_of(ex.chart_out), html_of(ex.changes_out), html_of(ex.tree_out)
    ex.layer.value = 0  # pick another layer: its changes, the union view up to it, the highlighted chart
    assert png_of(ex.chart_out) != chart
    assert html_of(ex.changes_out) != changes and "Layer 0 of web:v1" in html_of(ex.changes_out)
    assert html_of(ex.tree_out) != tree and "/www" not in table_paths(ex.tree_out)
    assert mimes(ex.tree_chart_out) == [{"text/plain", "image/png"}]
    assert len(ex.changes_out.outputs) == 1 and len(ex.tree_out.outputs) == 1


def test_layer_changes_marked_added_modified_deleted(store):
    ex = lkw.image_explorer(store, "web:v2")
    rows = {r[0]: r[1] for r in rows_of(html_of(ex.changes_out))}
    assert rows["/www/index.html"] == "modified"
    assert rows["/www/old.txt"] == "deleted" and rows["/bin/vi"] == "deleted"
    assert rows["/www/app.bin"] == "added"
    assert "20kB" in html_of(ex.changes_out)  # sizes in Docker's units
    assert rows_of(html_of(ex.changes_out))[3] == ["/www/app.bin", "added", "file", "20kB", "0B", ""]
    ex.change_kind.value = "deleted"
    assert set(table_paths(ex.changes_out)) == {"/bin/vi", "/www/old.txt"}
    ex.change_kind.value = "all"
    assert len(table_paths(ex.changes_out)) == len(rows)


def test_tree_paging_filtering_sorting(store):
    ex = lkw.ImageExplorer(store, "web:v2", page_size=50)
    total = ex.tree_pager.total
    assert total > 250  # busybox: one symlink per applet
    first = table_paths(ex.tree_out)
    assert len(first) == 50 and first == sorted(first, key=lambda p: p.split("/"))
    assert list(ex.file.options) == first
    ex.tree_pager.next.click()
    second = table_paths(ex.tree_out)
    assert len(second) == 50 and not set(first) & set(second) and ex.tree_pager.page == 1
    ex.tree_pager.go(10_000)
    assert ex.tree_pager.page == ex.tree_pager.pages - 1 and len(table_paths(ex.tree_out)) == total - 50 * (
        ex.tree_pager.pages - 1)
    assert ex.tree_pager.next.disabled and not ex.tree_pager.prev.disabled

    ex.path_filter.value = "/www"  # filtering resets to the first page
    assert ex.tree_pager.page == 0
    assert set(table_paths(ex.tree_out)) == {"/www", "/www/index.html", "/www/app.bin"}
    ex.type_filter.value = "file"
    assert set(table_paths(ex.tree_out)) == {"/www/index.html", "/www/app.bin"}
    ex.sort.value = "size_asc"
    assert table_paths(ex.tree_out) == ["/www/index.html", "/www/app.bin"]
    ex.path_filter.value = ""
    ex.sort.value = "size_desc"
    assert table_paths(ex.tree_out)[0] == "/bin/busybox"
    ex.type_filter.value = "symlink"
    assert 250 < ex.tree_pager.total < total and ex.tree_pager.page == 0
    assert all(r[1] == "symlink" for r in rows_of(html_of(ex.tree_out)))


def test_file_preview_text_hex_and_versions(store):
    ex = lkw.image_explorer(store, "web:v2")
    ex.file_path.value = "/etc/passwd"
    text = html_of(ex.file_out)
    assert "root:x:0:0" in text and "www:x:33" in text and "from layer 1" in text
    versions = [r[:3] + r[5:6] for r in rows_of(text)]
    web = store.image("web:v2")
    assert versions == [["0", web.diff_ids[0][7:19], "file", "hidden"], ["1", web.diff_ids[1][7:19], "file", "shown"]]

    ex.layer.value = 0  # the union view up to layer 0 has busybox's /etc/passwd
    assert ex.file_out.outputs == ()  # the old preview does not linger
    ex.show_file("/etc/passwd")
    text = html_of(ex.file_out)
    assert "root:x:0:0" in text and "www:x:33" not in text and "from layer 0" in text

    ex.layer.value = 2
    ex.path_filter.value = "app.bin"
    ex.file.value = "/www/app.bin"
    text = html_of(ex.file_out)
    assert "binary: first 4,096 bytes of 20,000" in text and "|.ELF" in text
    ex.show_file("/www/old.txt")
    text = html_of(ex.file_out)
    assert "no such file" in text
    assert [(r[0], r[2], r[5], r[6]) for r in rows_of(text)] == [("1", "file", "hidden", "/www/old.txt"),
                                                               ("2", "whiteout", "deleted", "/www/.wh.old.txt")]
    ex.show_file("/bin/sh")
    assert "symbolic link to busybox" in html_of(ex.file_out)


def _big_archive(out, n: int) -> None:
    """A one-layer docker-archive of ``n`` small files in 100 directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in range(100):
            ti = tarfile.TarInfo(f"data/d{d:03d}")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        for i in range(n):
            data = b"x" * (i % 97)
            ti = tarfile.TarInfo(f"data/d{i % 100:03d}/f{i:06d}.txt")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    layer = buf.getvalue()
    h = hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h]},
                         "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "many files"}]}).encode()
    ch = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{ch}.json", "RepoTags": ["big:latest"], "Layers": [f"{h}/layer.tar"]}])
    with tarfile.open(out, "w") as tf:
        for name, data in ((f"{ch}.json", config), (f"{h}/layer.tar", layer), ("manifest.json", manifest.encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_explorer_stays_responsive_on_100k_files(tmp_path):
    _big_archive(tmp_path / "big.tar", 100_000)
    assert main(["--store", str(tmp_path / "store"), "load", str(tmp_path / "big.tar")]) == 0
    store = Store(tmp_path / "store")
    t = time.perf_counter()
    ex = lkw.image_explorer(store, "big")
    built = time.perf_counter() - t
    assert built < 15, built
    assert ex.tree_pager.total == 100_101 and ex.changes_pager.total >= 100_100  # + the implied /data
    assert len(table_paths(ex.tree_out)) == lkw.PAGE_SIZE and len(table_paths(ex.changes_out)) == lkw.PAGE_SIZE
    assert len(html_of(ex.tree_out)) < 200_000 and len(ex.file.options) == lkw.PAGE_SIZE
    for action in (lambda: ex.sort.__setattr__("value", "size_desc"),
                   lambda: ex.path_filter.__setattr__("value", "d042/"),
                   lambda: ex.tree_pager.go(3),
                   lambda: ex.file.__setattr__("value", ex.file.options[7])):
        t = time.perf_counter()
        action()
        assert time.perf_counter() - t < 2, action
    assert ex.tree_pager.total == 1000 and ex.tree_pager.page == 3
    assert "/data/d042/" in html_of(ex.file_out)


def test_explorer_on_an_empty_store(tmp_path):
    ex = lkw.image_explorer(Store(tmp_path / "empty"))
    assert "no images" in ex.summary.value and ex.image.options == ()


# ---- shared layers --------------------------------------------------------------------------------

def test_shared_layers_panel(store):
    sp = lkw.shared_layers_panel(store, ["busybox", "web:v1"])
    assert set(sp.images.value) == {store.image("busybox").id, store.image("web:v1").id}
    heat, bars = png_of(sp.heatmap_out), png_of(sp.sharing_out)
    table = html_of(sp.table_out)
    assert "<table" in table and "web:v1" in table and "web:v2" not in table
    sp.images.value = tuple(v for _, v in sp.images.options)  # all three
    assert png_of(sp.heatmap_out) != heat and png_of(sp.sharing_out) != bars
    table = html_of(sp.table_out)
    assert "web:v2" in table and "shared_size" in table
    assert len(sp.table_out.outputs) == 2
    sp.images.value = ()
    assert sp.heatmap_out.outputs == () and "Pick one or more images" in html_of(sp.table_out)


# ---- containers ------------------------------------------------------------------------------------

def test_container_panel_diff_and_commit(store):
    cp = lkw.container_panel(store, "site2")
    diff = html_of(cp.diff_out)
    assert "/www/app.bin" in diff and "/bin/vi" in diff and "site2:" in diff
    chart = png_of(cp.chart_out)
    cp.container.value = "site1"
    assert html_of(cp.diff_out) != diff and "/www/old.txt" in html_of(cp.diff_out)
    assert png_of(cp.chart_out) != chart

    cp.message.value = "from the panel"
    cp.tag.value = "web:panel"
    cp.commit.click()
    new = store.image("web:panel")
    assert cp.new_image == new.id and new.id in cp.status.value
    hist = html_of(cp.result_out)
    assert "from the panel" in hist and "site v1" not in hist
    assert len(rows_of(hist)) == 3  # busybox's two entries and the commit

    before = len(store.images())
    cp.tag.value = "Not:Valid"
    cp.commit.click()
    assert "lk-error" in cp.status.value and "lowercase" in cp.status.value
    assert len(store.images()) == before and "from the panel" in html_of(cp.result_out)


# ---- the magic --------------------------------------------------------------------------------------

def test_lk_panel_magic(shell, store_dir):
    shell.run_line_magic("load_ext", "layerkit")
    shell.run_line_magic("lk", f"store {store_dir}")
    res = shell.run_cell("p = %lk panel web:v1")
    assert res.success and isinstance(shell.user_ns["p"], lkw.ImageExplorer)
    assert shell.user_ns["p"].image.value == Store(store_dir).image("web:v1").id
    data, _ = shell.display_formatter.format(shell.user_ns["p"])
    assert "application/vnd.jupyter.widget-view+json" in data
    assert isinstance(shell.run_cell("%lk panel explorer busybox").result, lkw.ImageExplorer)
    assert isinstance(shell.run_cell("%lk panel shared busybox web:v1").result, lkw.SharedLayersPanel)
    assert isinstance(shell.run_cell("%lk panel container site1").result, lkw.ContainerPanel)
    assert isinstance(shell.run_cell("%lk panel site2").result, lkw.ContainerPanel)  # containers first
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        res = shell.run_cell("%lk panel explorer nope:1")
    assert res.result is None and "No such image: nope:1" in cap.stderr and "Traceback" not in cap.stderr
    with capture_output() as cap:
        shell.run_cell("%lk panel explorer busybox web:v1")
    assert "takes one name" in cap.stderr


def test_file_preview_of_a_hardlink(store_dir):
    s = str(store_dir)
    assert main(["--store", s, "run", "--name", "linker", "web:v2", "sh", "-c", "ln /www/index.html /www/hl"]) == 0
    assert main(["--store", s, "commit", "linker", "web:hl"]) == 0
    ex = lkw.image_explorer(Store(store_dir), "web:hl")
    ex.show_file("/www/hl")
    text = html_of(ex.file_out)
    assert "&lt;h1&gt;v2&lt;/h1&gt;" in text, text  # the linked file's bytes, escaped


# ---- dive's layer tree in the explorer (issue 12, item 3) ----------------------------------------------------

def _row_of(lt, path: str) -> int:
    """The line number (0-based) of ``path`` on the tree's current page."""
    return [v for _, v in lt.list.options].index(path)


def test_layer_tree_marks_sizes_and_colours(store):
    ex = lkw.image_explorer(store, "web:v2")
    lt = ex.layer_tree
    assert lt.target == store.image("web:v2").id and lt.layer == 2 and not lt.mode.value
    assert len(lt.list.options) == lkw.PAGE_SIZE < len(lt.frame)  # busybox's applets: two pages
    lt.reveal("/www/index.html")  # the page with /www (names sorted: after /bin, /etc, /tmp ...)
    assert lt.pager.page == 1
    labels = {}
    for page in range(lt.pager.pages):
        lt.pager.go(page)
        labels.update((v, k) for k, v in lt.list.options)
    assert set(labels) == set(lt.frame.index)
    # dive's marks: what layer 2 did (SITE_V2)
    assert labels["/www/index.html"].startswith("M\u00a0") and labels["/www/app.bin"].startswith("A\u00a0")
    assert labels["/www/old.txt"].startswith("R\u00a0") and labels["/bin/vi"].startswith("R\u00a0")
    assert labels["/bin/busybox"].startswith("\u00a0") and labels["/etc/passwd"].startswith("\u00a0")
    # a directory's size rolled up: what ls -R says /www holds now (old.txt is gone)
    www = [r for r in json.loads(_cli_json(store, "ls", "web:v2", "/www", "-R")) if r["type"] == "file"]
    assert "\u00a0".join(["", "20kB", ""]) in labels["/www"] and sum(r["size"] for r in www) == 20_000 + len(
        "<h1>v2</h1>\n")
    assert "▾\u00a0www/" in labels["/www"] and "-rw-r--r--" in labels["/www/index.html"]
    # dive's colours, line by line: green added, yellow modified, red removed, nothing for the rest
    for path, colour in (("/www/app.bin", "#2e7d32"), ("/www/index.html", "#a06d00"), ("/www/old.txt", "#c62828"),
                         ("/bin/vi", "#c62828")):
        lt.reveal(path)
        assert f"option:nth-child({_row_of(lt, path) + 1}) {{ color: {colour} }}" in lt.style_html.value, path
    lt.reveal("/bin/busybox")
    assert f"option:nth-child({_row_of(lt, '/bin/busybox') + 1}) " not in lt.style_html.value
    assert "1 added" in lt.caption.value and "2 removed" in lt.caption.value  # files: app.bin; old.txt, vi


def _cli_json(store, *argv) -> str:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["--store", str(store.root), *argv, "--format", "json"]) == 0
    return out.getvalue()


def test_layer_tree_expand_collapse_modes_and_preview(store):
    ex = lkw.ImageExplorer(store, "web:v2", page_size=50)
    lt = ex.layer_tree
    assert "/www/index.html" in lt.visible  # a small tree opens expanded
    lt.reveal("/www")
    lt.list.value = "/www"  # a click on a directory collapses it ...
    assert "/www/index.html" not in lt.visible and "/www" in lt.visible and lt.list.value is None
    assert "▸\u00a0www/" in dict((v, k) for k, v in lt.list.options)["/www"]
    lt.list.value = "/www"  # ... and expands it again
    assert "/www/index.html" in lt.visible
    lt.collapse_all.click()
    assert all("/" not in p[1:] for p in lt.visible)  # only the top level
    lt.expand_all.click()
    assert lt.pager.total == len(lt.frame) > 250 and len(lt.list.options) == 50  # paged
    first = [v for _, v in lt.list.options]
    lt.pager.next.click()
    assert not set(first) & {v for _, v in lt.list.options}

    lt.only_changes.value = True  # what layer 2 changed and the directories leading there
    assert set(lt.frame.index) == {"/bin", "/bin/vi", "/www", "/www/app.bin", "/www/index.html", "/www/old.txt"}
    assert set(lt.visible) == set(lt.frame.index)
    lt.mode.value = True  # aggregate: everything above busybox's layer
    assert {"/etc/passwd", "/www", "/www/index.html", "/www/app.bin"} <= set(lt.frame.index)
    assert lt.frame.loc["/www", "change"] == "added" and lt.frame.loc["/etc/passwd", "change"] == "modified"
    assert "/www/old.txt" not in lt.frame.index  # added by web:v1, removed by web:v2: never in the aggregate
    lt.mode.value = False
    lt.only_changes.value = False

    # a click on a file previews it as this layer has it; a removed file as the layer below had it
    lt.reveal("/www/index.html")
    lt.list.value = "/www/index.html"
    text = html_of(lt.preview)
    assert "&lt;h1&gt;v2&lt;/h1&gt;" in text and "modified in this layer" in text and lt.list.value is None
    lt.list.value = "/www/old.txt"
    text = html_of(lt.preview)
    assert "bye" in text and "removed here; as layer 1 had it" in text
    lt.list.value = "/www/app.bin"
    assert "binary: first 4,096 bytes of 20,000" in html_of(lt.preview)
    ex.layer.value = 1  # the explorer's layer drives the tree
    assert lt.layer == 1 and lt.frame.loc["/www/index.html", "change"] == "added"
    lt.reveal("/www/index.html")
    lt.list.value = "/www/index.html"
    assert "&lt;h1&gt;v1&lt;/h1&gt;" in html_of(lt.preview)
    lt.reveal("/bin/sh")
    lt.list.value = "/bin/sh"
    assert "symbolic link to busybox" in html_of(lt.preview)


def test_layer_tree_of_a_container(store):
    lt = lkw.LayerTree(store)
    lt.show("site2", 2)  # the writable layer, above web:v1's two
    assert lt.frame.loc["/www/app.bin", "change"] == "added" and pd_isna(lt.frame.loc["/www/app.bin", "layer"])
    assert lt.frame.loc["/www/old.txt", "change"] == "removed"
    lt.reveal("/www/index.html")
    lt.list.value = "/www/index.html"
    assert "&lt;h1&gt;v2&lt;/h1&gt;" in html_of(lt.preview)


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def test_history_shows_every_column_and_keeps_lines(store_dir):
    s = str(store_dir)
    assert main(["--store", s, "run", "--name", "lines", "busybox", "sh", "-c", "echo one\necho two > /two"]) == 0
    assert main(["--store", s, "commit", "-m", "two\nlines", "lines", "web:lines"]) == 0
    ex = lkw.image_explorer(Store(store_dir), "web:lines")
    page = html_of(ex.history_out)
    assert "max-height" not in page  # no inner scroll box
    header = re.findall(r"<th style=[^>]*>(.*?)</th>", page)
    assert header == ["step", "id", "created", "created_by", "size", "comment", "empty_layer"]
    cells = rows_of(page)[0]
    assert cells[3] == "sh -c echo one\necho two > /two" and cells[5] == "two\nlines"  # whole, lines kept
    assert re.search(r'<td style="[^"]*white-space:pre-wrap[^"]*">sh -c echo one\n', page)


def test_file_picker_reaches_every_path(store):
    ex = lkw.ImageExplorer(store, "web:v2", page_size=50)
    every = list(ex.view_files(2).index)
    seen = []
    while True:
        seen += list(ex.file.options)
        if ex.tree_pager.next.disabled:
            break
        ex.tree_pager.next.click()
    assert seen == every and len(every) > 250  # page by page, the picker offers every path once
    ex.path_filter.value = every[-1]
    assert every[-1] in ex.file.options  # or a search finds it on the first page


def test_layer_tree_of_100k_files_is_built_on_request(tmp_path):
    _big_archive(tmp_path / "big.tar", 100_000)
    assert main(["--store", str(tmp_path / "store"), "load", str(tmp_path / "big.tar")]) == 0
    ex = lkw.image_explorer(Store(tmp_path / "store"), "big")
    lt = ex.layer_tree
    assert lt.frame is None and lt.build.layout.display is None and "100,000 paths" in lt.caption.value
    t = time.perf_counter()
    lt.build.click()
    built = time.perf_counter() - t
    assert len(lt.frame) == 100_101 and lt.visible == ["/data"]  # a big tree opens collapsed
    assert lt.frame.loc["/data", "dir_size"] == sum(i % 97 for i in range(100_000))
    timings = {"build": round(built, 2)}
    for name, action in (("expand /data", lambda: lt.toggle("/data")),
                         ("expand one directory", lambda: lt.toggle("/data/d042")),
                         ("expand all", lambda: lt.set_expanded(True)),
                         ("next page", lambda: lt.pager.next.click()),
                         ("preview a file", lambda: setattr(lt.list, "value", lt.list.options[3][1])),
                         ("collapse all", lambda: lt.set_expanded(False))):
        t = time.perf_counter()
        action()
        timings[name] = round(time.perf_counter() - t, 3)
    print("layer tree of 100,000 files (s):", timings)
    assert built < 15 and max(v for k, v in timings.items() if k != "build") < 2, timings
    assert "xxxx" in html_of(lt.preview)  # the file's bytes (x * (i % 97))
