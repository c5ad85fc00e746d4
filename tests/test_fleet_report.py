"""``layerkit report --fleet`` and the fleet figures (``%lk plot fleet ...``), over a real dataset.

The dataset is scanned here by ``layerkit scan`` (a LocalCluster of threads) from OCI layouts made of
crafted layers: a base two images share, the same content copied under other paths into other layers, a
file rewritten in a later layer (dive's waste), and a name that is HTML. What the report shows is checked
against what ``layerkit fleet ... --format json`` prints for the same dataset, read back from the HTML with
the standard library's parser; the figures are checked by their axes and bars, and as PNGs.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

try:  # a missing extra fails the run, naming what to install (nothing is skipped in CI)
    import distributed  # noqa: F401
    import duckdb  # noqa: F401
except ImportError as exc:
    raise ImportError(f"{exc.name} is missing: pip install 'layerkit[fleet]' (pyarrow, duckdb, distributed)") \
        from exc

from builders import WH, F, layer_tar, write_layout  # noqa: E402

from layerkit import commands  # noqa: E402
from layerkit.cli import main  # noqa: E402
from layerkit.notebook import fleet_plots, frames  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "opt/<script>alert(1)</script>.so"


def _layers() -> dict[str, bytes]:
    lib = bytes(range(256)) * 1200  # 307,200 bytes, copied into three layers under three paths
    return {
        "base": layer_tar([F("etc/os-release", b"ID=test\n"), F("bin/tool", b"\x7fELF" + b"x" * 90_000)]),
        "runtime": layer_tar([F("usr/lib/runtime.so", b"r" * 120_000)]),
        "web": layer_tar([F("app/web.py", b"print('web')\n"), F("app/vendor/lib.so", lib)]),
        "api": layer_tar([F("app/api.py", b"print('api')\n"), F("srv/lib/lib.so", lib), F("tmp/cache", b"c" * 40_000)]),
        "api-clean": layer_tar([WH("tmp/cache")]),
        "etl": layer_tar([F("bin/tool", b"\x7fELF" + b"x" * 90_000), F(EVIL, lib), F("var/data", b"1" * 5000)]),
        "etl-2": layer_tar([F("var/data", b"2" * 5000)]),
    }


IMAGES = {"web:1": ["base", "runtime", "web"], "api:1": ["base", "runtime", "api", "api-clean"],
          "cli:1": ["base", "web"], "etl:1": ["etl", "etl-2"]}


def _scan(root: Path, contents: bool) -> Path:
    from layerkit.fleet.scan import scan

    layers = _layers()
    sources = []
    for tag, names in IMAGES.items():
        d = root / tag.replace(":", "-")
        if not d.exists():
            write_layout(d, [layers[n] for n in names], tag)
        sources.append(f"oci:{d}")
    out = root / ("ds-contents" if contents else "ds-plain")
    res = scan(sources, str(out), workers=1, contents=contents, processes=False)
    assert res.failures == 0, res.failure_rows
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _scan(tmp_path_factory.mktemp("fleet-report"), contents=True)


def cli_json(capsys, *words: str):
    assert main([*words, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


class Tables(HTMLParser):
    """The report's sections (h2), each with its tables by caption (h3): header and rows of cell text; and
    every src and href of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[list[str]]]] = {}
        self.links: list[tuple[str, str, str]] = []
        self._tag: str | None = None
        self._text = ""
        self._section = self._caption = ""
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href", "action", "data", "poster", "srcset"):
                self.links.append((tag, k, v or ""))
        if tag in ("h2", "h3", "td", "th"):
            self._tag, self._text = tag, ""
        elif tag == "tr":
            self._row = []

    def handle_data(self, data):
        if self._tag:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "h2":
            self._section = self._text.strip()
            self.sections[self._section] = {}
        elif tag == "h3":
            self._caption = self._text.strip()
            self.sections[self._section][self._caption] = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._text.strip())
        elif tag == "tr" and self._row is not None:
            self.sections[self._section][self._caption].append(self._row)
            self._row = None
        if tag == self._tag:
            self._tag = None


def _report(tmp_path: Path, dataset: Path, name: str = "fleet.html") -> tuple[str, Tables]:
    out = tmp_path / name
    assert main(["report", "--fleet", str(dataset), "-o", str(out)]) == 0
    html = out.read_text()
    t = Tables()
    t.feed(html)
    return html, t


def _as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_report_numbers_equal_fleet_json(dataset, tmp_path, capsys) -> None:
    """Every figure of the summary table is the one ``fleet summary --format json`` prints (bytes exact, as
    the table gives them in brackets); the waste, bases, duplicates and largest tables hold the rows of
    ``fleet waste|bases|duplicates|largest --format json``."""
    (summary,) = cli_json(capsys, "fleet", "summary", str(dataset))
    html, t = _report(tmp_path, dataset)
    capsys.readouterr()
    rows = {r["measure"]: r["value"] for r in _as_dicts(t.sections["Summary"]["The fleet in numbers"])}
    assert set(rows) == {k for k, _ in frames.FLEET_MEASURES}
    for key, shown in rows.items():
        v = summary[key]
        if key.endswith("_ratio"):
            assert shown == f"{v:.2f}", key
        elif key.endswith("_bytes"):
            assert int(re.fullmatch(r"\S+ \(([\d,]+) bytes\)", shown)[1].replace(",", "")) == v, key
        else:
            assert int(shown.replace(",", "")) == v, key
    assert (summary["images"], summary["repositories"], summary["failures"]) == (4, 4, 0)
    assert summary["file_dedup_ratio"] > 1  # lib.so in three layers, bin/tool in two

    waste = cli_json(capsys, "fleet", "waste", str(dataset))
    shown = _as_dicts(t.sections["Waste per image"]["Images, most wasted first"])
    assert [r["reference"] for r in shown] == [w["reference"] for w in waste]
    assert [r["inefficient files"] for r in shown] == [str(w["inefficient_files"]) for w in waste]
    assert any(w["wasted_bytes"] > 0 for w in waste)  # etl rewrites /var/data, api deletes /tmp/cache

    bases = [b for b in cli_json(capsys, "fleet", "bases", str(dataset)) if b["base"]]
    shown = _as_dicts(t.sections["Shared bases"]["Bases (most bytes saved first)"])
    assert sorted(r["top layer"] for r in shown) == sorted(b["top_layer"].removeprefix("sha256:")[:12] for b in bases)
    assert sorted(int(r["images"]) for r in shown) == sorted(b["images"] for b in bases)

    dups = cli_json(capsys, "fleet", "duplicates", str(dataset), "-n", "15")
    shown = _as_dicts(t.sections["Duplicated content"]["Top 15 by reclaimable bytes"])
    assert [(r["content"], r["copies"], r["path"]) for r in shown] == \
        [(d["sha256"][:12], str(d["copies"]), d["path"]) for d in dups]
    assert dups[0]["copies"] == 3  # the library, under three paths

    largest = cli_json(capsys, "fleet", "largest", str(dataset), "-n", "15")
    shown = _as_dicts(t.sections["Largest layers and files"]["Largest 15 files"])
    assert [r["path"] for r in shown] == [f["path"] for f in largest["files"]]
    assert "None: every source, image and layer was read." in html


def test_report_is_self_contained_and_escapes_names(dataset, tmp_path) -> None:
    """No script, no stylesheet or font to fetch, no http(s) anywhere: every src is an embedded PNG (one
    per figure: bytes, bases, waste, duplicates) and there is no href; a file named like HTML is text."""
    html, t = _report(tmp_path, dataset)
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html
    assert {k for _, k, _ in t.links} == {"src"}
    pngs = [v for _, _, v in t.links]
    assert len(pngs) == 4 and all(v.startswith("data:image/png;base64,") for v in pngs)
    assert all(base64.b64decode(v.split(",", 1)[1]).startswith(PNG) for v in pngs)
    assert "/opt/&lt;script&gt;alert(1)&lt;/script&gt;.so" in html  # the duplicate's path, escaped


def test_report_markdown_and_refusals(dataset, tmp_path, capsys) -> None:
    """``.md`` writes Markdown with the PNGs beside it; --fleet with a TARGET, no TARGET at all, a directory
    that is no dataset and a suffix that is no report are refused with one line, writing nothing."""
    md = tmp_path / "fleet.md"
    assert main(["report", "--fleet", str(dataset), "-o", str(md)]) == 0
    text = md.read_text()
    assert "## Summary" in text and "## Shared bases" in text
    assert len(list(tmp_path.glob("fleet-*.png"))) == 4
    capsys.readouterr()
    out = tmp_path / "no.html"
    assert main(["report", "--fleet", str(dataset), "busybox", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "layerkit report: error: --fleet takes no TARGET (got busybox)\n"
    assert main(["report", "-o", str(out)]) == 2
    assert "--fleet DATASET" in capsys.readouterr().err
    assert main(["report", "--fleet", str(tmp_path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"layerkit: error: {tmp_path}: not a fleet dataset") and err.count("\n") == 1
    assert main(["report", "--fleet", str(dataset), "-o", str(tmp_path / "r.pdf")]) == 1
    assert "must end in .html or .md" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "r.pdf").exists()


def test_without_contents_the_report_says_not_measured(tmp_path) -> None:
    """A scan without --contents: no unique-content figures, said in the table, the figure and the section."""
    plain = _scan(tmp_path, contents=False)
    html, t = _report(tmp_path, plain)
    rows = {r["measure"]: r["value"] for r in _as_dicts(t.sections["Summary"]["The fleet in numbers"])}
    assert rows["unique_content_bytes"] == rows["file_dedup_ratio"] == "n/a"
    assert "Not measured: the dataset was scanned without --contents" in html
    fig = fleet_plots.dedup_bytes(frames.table(commands.fleet_summary(str(plain))))
    texts = [x.get_text() for x in fig.axes[0].texts]
    assert "not measured\n(scan --contents)" in texts and "file dedup n/a" in fig.axes[0].get_title()


def test_dedup_figure(dataset) -> None:
    """Five bars, in order: images summed, unique layers as tars, as pushed, their file bytes, unique
    contents; heights and the ratios in the title are the summary's."""
    s = frames.table(commands.fleet_summary(str(dataset)))
    fig = fleet_plots.dedup_bytes(s)
    ax = fig.axes[0]
    keys = [k for k, _, _ in fleet_plots.BYTES_BARS]
    assert [p.get_height() for p in ax.patches] == [int(s.loc[0, k]) for k in keys]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == \
        ["images summed", "unique layers", "as pushed", "unique layers", "unique file"]
    assert ax.get_ylabel() == "bytes"
    assert f"layer dedup ×{s.loc[0, 'layer_dedup_ratio']:.2f}" in ax.get_title()
    assert f"file dedup ×{s.loc[0, 'file_dedup_ratio']:.2f}" in ax.get_title()
    assert fig._repr_png_().startswith(PNG)


def test_bases_tree_figure(dataset) -> None:
    """One rectangle per base, as tall as the images sharing it, a base extending another to its right and
    within its span; each labelled with its top layer."""
    b = frames.table(commands.fleet_bases(str(dataset)))
    bases = b[b["base"].astype(bool)]
    fig = fleet_plots.bases_tree(b, images=4)
    ax = fig.axes[0]
    rects = ax.patches
    assert len(rects) == len(bases) == 2  # base+runtime (web, api) inside base (web, api, cli)
    by_height = sorted(rects, key=lambda r: -r.get_height())
    outer, inner = by_height
    assert (outer.get_height(), inner.get_height()) == (3, 2)
    assert inner.get_x() > outer.get_x() and outer.get_y() <= inner.get_y() <= outer.get_y() + 1
    labels = " ".join(t.get_text() for t in ax.texts)
    assert all(d.removeprefix("sha256:")[:12] in labels for d in bases["top_layer"])
    assert ax.get_ylabel() == "images" and ax.get_ylim() == (4, 0)
    assert fig._repr_png_().startswith(PNG)
    # nothing shared: one line, no empty chart
    nothing = fleet_plots.bases_tree(b.iloc[0:0])
    assert isinstance(nothing, fleet_plots.NothingToShow) and "no two images share a layer" in nothing.message


def test_duplicates_and_waste_figures(dataset) -> None:
    """One bar per duplicated content, its reclaimable bytes, labelled with a path and its copies; one bar
    per image that wastes bytes."""
    d = frames.table(commands.fleet_duplicates(str(dataset)))
    fig = fleet_plots.duplicates(d)
    ax = fig.axes[0]
    assert sorted(p.get_width() for p in ax.patches) == sorted(int(v) for v in d["reclaimable_bytes"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(d) and any("lib.so ×3" in x for x in labels)
    assert ax.get_xlabel() == "reclaimable bytes (size × (copies − 1))"
    w = frames.table(commands.fleet_waste(str(dataset)))
    fig = fleet_plots.waste(w)
    ax = fig.axes[0]
    wasting = sorted(int(v) for v in w["wasted_bytes"] if v > 0)
    assert sorted(p.get_width() for p in ax.patches) == wasting and len(wasting) == 2  # api and etl
    assert ax.get_xlabel() == "wasted bytes" and ax.get_title().endswith(f": 2 of {len(w)} images")


def test_lk_plot_fleet_and_report(dataset, tmp_path) -> None:
    """``%lk plot fleet summary|bases|duplicates|waste DATASET`` return figures that show as PNG; a wrong
    word is a one-line usage error; ``%lk report --fleet`` writes the report."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    try:
        sh.run_line_magic("load_ext", "layerkit")
        sh.run_line_magic("lk", f"store {tmp_path / 'store'}")
        for what, ylabel in (("summary", "bytes"), ("bases", "images"), ("waste", "image"),
                             ("duplicates", "content (a path ×copies [sha256])")):
            res = sh.run_cell(f"%lk plot fleet {what} {dataset}")
            assert res.success
            data, _ = sh.display_formatter.format(res.result)
            assert base64.b64decode(data["image/png"]).startswith(PNG) if isinstance(data["image/png"], str) \
                else data["image/png"].startswith(PNG)
            assert res.result.axes[0].get_ylabel() == ylabel
        with capture_output() as cap:
            res = sh.run_cell(f"%lk plot fleet pie {dataset}")
        assert res.result is None and "usage: %lk plot fleet summary|bases|duplicates|waste DATASET" in cap.stderr
        out = tmp_path / "magic.html"
        with capture_output() as cap:
            sh.run_line_magic("lk", f"report --fleet {dataset} -o {out}")
        assert f"Report written to {out}" in cap.stdout and "<h2>Summary</h2>" in out.read_text()
    finally:
        InteractiveShell.clear_instance()


def test_example_registry_stops_when_python_exits_on_an_error(tmp_path) -> None:
    """``layerkit.examples.start_registry`` (what the fleet notebook starts): a Python that fails after
    starting it leaves no registry running; the registry answered while it ran."""
    import os
    import subprocess
    import sys
    import time

    code = ("import sys\nfrom layerkit.examples import start_registry\n"
            f"reg = start_registry({str(tmp_path / 'reg')!r})\n"
            "import urllib.request\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            "print(reg.proc.pid, opener.open(f'http://{reg.host}/v2/').status, flush=True)\n"
            "raise RuntimeError('a cell failed')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "a cell failed" in p.stderr
    pid, status = map(int, p.stdout.split())
    assert status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError(f"docker-registry {pid} still runs after its Python exited")
