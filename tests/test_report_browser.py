"""Reports in a real browser (issue 4): strings from an image are text, never markup or script.

A container writes files named ``<script>alert(1)</script>`` and ``<img src=x onerror=alert(1)>`` (and a
few Markdown traps), and is committed with a comment, an author and a label holding ``<b>`` and ``&&``; its
command (the layer's created_by) holds all of them too. The HTML report of the container, the image and
busybox is opened in headless Chromium through Playwright with JavaScript on, a ``window.__xss`` probe
around ``alert`` and a ``dialog`` listener: no script may run, no dialog open, no request leave for
anything but ``file:`` / ``data:`` URLs, and the names must be in the page's text. The page prints to PDF
and a full-page screenshot goes to ``out/report-browser.png`` for a person to look at. The Markdown report
of the same targets must show the same names as text when a Markdown renderer turns it into HTML.

Needs Debian's ``chromium`` and the ``playwright`` Python package (its own browser download cannot work
here); the test fails naming what to install when either is missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest

from layerkit.cli import main
from layerkit.examples import MissingTool, busybox_archive

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

SCRIPT_NAME = "/x/<script>alert(1)</script>"  # a directory "<script>alert(1)<" holding "script>"
IMG_NAME = "/x/<img src=x onerror=alert(1)>"
LINK_NAME = "/x/[click](javascript:alert(1))"
IMAGE_NAME = "/x/![pixel](http:127.0.0.1:9)"  # would make a Markdown viewer fetch a URL
ENTITY_NAME = "/x/a|b *em* `code` &amp; &lt;i&gt;"  # shown as written, not as "& <i>"
NEWLINE_NAME = "/x/line1\n# heading"
SCRIPT = ("mkdir -p '/x/<script>alert(1)<' && echo a > '/x/<script>alert(1)</script>' && "
          "echo b > '/x/<img src=x onerror=alert(1)>' && echo c > '/x/[click](javascript:alert(1))' && "
          "echo d > '/x/![pixel](http:127.0.0.1:9)' && echo e > '/x/a|b *em* `code` &amp; &lt;i&gt;' && "
          "echo f > \"/x/$(printf 'line1\\n# heading')\" && echo '<b>bold</b> && done' > /x/plain")
COMMENT = "<b>comment</b> && more"
AUTHOR = "<i>author</i> <evil@example.com>"
LABEL = "LABEL evil=<b>label</b>&&x"
NAMES = [SCRIPT_NAME, IMG_NAME, LINK_NAME, IMAGE_NAME, ENTITY_NAME]


def cli(store: Path, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--store", str(store), *argv])
    assert rc == 0, f"layerkit {' '.join(argv)} -> {rc}: {err.getvalue()}"
    return out.getvalue()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The hostile image, and its HTML and Markdown reports (container + image + busybox)."""
    if shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"):
        pytest.fail("runc is not installed (containers run with runc): apt-get install runc")
    root = tmp_path_factory.mktemp("report-xss")
    try:
        archive = busybox_archive(root / "busybox.tar")
    except MissingTool as e:
        pytest.fail(str(e))
    store = root / "store"
    cli(store, "load", str(archive))
    cli(store, "run", "--name", "evil", "busybox", "sh", "-c", SCRIPT)
    cli(store, "commit", "-m", COMMENT, "-a", AUTHOR, "-c", LABEL, "evil", "xss:v1")
    diff = cli(store, "diff", "evil")
    for name in NAMES:
        assert name in diff, f"the container did not create {name!r}: {diff}"
    out = {"html": root / "report.html", "md": root / "my report.md"}
    for path in out.values():
        cli(store, "report", "evil", "xss:v1", "busybox", "-o", str(path))
    return out


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: pip install playwright (or pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    return sync_playwright


PROBE = """
window.__xss = [];
const _alert = window.alert;
window.alert = function (m) { window.__xss.push(String(m)); return _alert.call(window, m); };
document.addEventListener('securitypolicyviolation', e => window.__xss.push('csp:' + e.blockedURI));
"""


def test_html_report_in_chromium(reports):
    sync_playwright = _playwright()
    html = reports["html"]
    raw = html.read_text(encoding="utf-8")
    assert "<script" not in raw.lower() and "<b>" not in raw and "<i>" not in raw
    tags = re.findall(r"<img\b[^>]*>", raw)
    assert tags and all(re.fullmatch(r'<img alt="[^"<>]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">', t)
                        for t in tags)
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, java_script_enabled=True)
            dialogs, errors, requests, external = [], [], [], []

            def route(r):
                url = r.request.url
                if url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    external.append(url)
                    r.abort()

            context.route("**/*", route)
            context.add_init_script(PROBE)
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(300)  # an onerror handler would have fired by now

            assert page.evaluate("window.__xss") == [], "a script from the report ran"
            assert dialogs == [] and errors == []
            assert external == [], f"the report fetched {external}"
            assert all(u.startswith(("file:", "data:")) for u in requests), requests
            # no element came from the data: the template has no script, b, i, a or on* handler
            assert page.evaluate("document.querySelectorAll('script, b, i, a, iframe, object, embed').length") == 0
            assert page.evaluate("""[...document.querySelectorAll('*')].flatMap(e => [...e.attributes])
                                     .filter(a => a.name.startsWith('on')).length""") == 0
            imgs = page.evaluate("[...document.images].map(i => [i.src.slice(0, 22), i.naturalWidth])")
            assert imgs and all(src == "data:image/png;base64," and w > 0 for src, w in imgs), imgs

            text = page.inner_text("body")
            for name in NAMES:
                assert name in text, f"{name!r} is not shown as text"
            assert "line1\\n# heading" in text or "line1\n# heading" in text
            assert COMMENT in text  # the commit comment, in the history table
            assert "echo '<b>bold</b> && done'" in text  # created_by
            assert "Container evil" in text and "Image xss:v1" in text and "Shared layers" in text

            page.screenshot(path=str(OUT / "report-browser.png"), full_page=True)
            page.emulate_media(media="print")
            pdf = page.pdf(format="A4", print_background=True)
            assert pdf.startswith(b"%PDF-") and len(pdf) > 20_000
            pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
            assert 2 <= pages <= 40, pages
            (OUT / "report-browser.pdf").write_bytes(pdf)
            assert page.evaluate("window.__xss") == [] and dialogs == [] and external == []
        finally:
            browser.close()


def test_markdown_report_escapes(reports):
    md = reports["md"]
    text = md.read_text(encoding="utf-8")
    assert not re.search(r"(?<!\\)<", text), "a < that Markdown may take as HTML"  # every < is \<
    # only what Markdown would interpret is escaped, so the raw text stays readable
    assert "\\<script>alert(1)\\</script>" in text
    assert "\\[click\\](javascript:alert(1))" in text  # no link
    assert "!\\[pixel\\](http:127.0.0.1:9)" in text  # no image
    assert "\\&amp; \\&lt;i\\&gt;" in text  # the name as written, not "& <i>"
    assert "a\\|b \\*em\\* \\`code\\`" in text
    assert "line1\\\\n# heading" in text  # one table row, not a heading
    assert "&& done" in text and "#(nop)" in text
    assert "1.98MB" in text and "\\." not in text  # sizes and IDs as they are
    for line in text.splitlines():
        assert not line.startswith("# heading")
        if line.startswith("|"):
            assert line.endswith("|"), f"a table row was cut: {line!r}"
    # the PNGs sit beside the file and the links find them, although the name holds a space
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((md.parent / link.replace("%20", " ")).is_file() for link in links)

    # what a Markdown viewer makes of it (raw HTML passed through, as many viewers do)
    try:
        import mistune
    except ImportError:
        pytest.fail("mistune is missing (renders the Markdown report in this test): pip install mistune")
    html = mistune.create_markdown(escape=False, plugins=["table", "url", "strikethrough"])(text)
    tags = set(re.findall(r"<([a-z0-9]+)", html))
    assert tags <= {"h1", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "img"}, tags
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(re.fullmatch(r"my%20report-\d+\.png", s) for s in srcs), srcs
    import html as htmllib

    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", html))
    for name in NAMES:
        assert name in shown, f"{name!r} not shown as text by a Markdown renderer"
    assert COMMENT in shown


# ---- a report of four images: summary first, compact, honest (issue 12, items 3 and 5) ---------------------

FOUR = ["busybox", "app:v1", "app:v2", "bloated:v1"]
MAX_HEIGHT = 7000  # px at 1280 wide; the report before these changes was 12,557 px tall
SHOTS = OUT / "screenshots"


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> dict[str, Path]:
    """The tour's images: two apps on busybox, and an image whose second commit deletes what the first
    added (1.98 MB wasted). Their HTML and Markdown reports."""
    root = tmp_path_factory.mktemp("report-four")
    store = root / "store"
    cli(store, "load", str(busybox_archive(root / "busybox.tar")))
    cli(store, "run", "--name", "app1", "busybox", "sh", "-c",
        "mkdir -p /app && head -c 400000 /bin/busybox > /app/lib.bin && echo v1 > /app/VERSION")
    cli(store, "commit", "-m", "app v1", "app1", "app:v1")
    cli(store, "run", "--name", "app2", "app:v1", "sh", "-c", "echo v2 > /app/VERSION && echo f > /app/f.txt")
    cli(store, "commit", "-m", "app v2", "app2", "app:v2")
    cli(store, "run", "--name", "bloat1", "busybox", "sh", "-c", "cp /bin/busybox /tmp/build-cache")
    cli(store, "commit", "-m", "download", "bloat1", "bloated:v1")
    cli(store, "run", "--name", "bloat2", "bloated:v1", "sh", "-c", "rm /tmp/build-cache")
    cli(store, "commit", "-m", "clean up", "bloat2", "bloated:v1")
    out = {"html": root / "four.html", "md": root / "four.md"}
    for path in out.values():
        cli(store, "report", *FOUR, "-o", str(path))
    return out


def test_four_image_report_in_chromium(four):
    sync_playwright = _playwright()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(four["html"].resolve().as_uri(), wait_until="load")
            height = page.evaluate("document.documentElement.scrollHeight")
            print(f"4-image report: {height} px tall at 1280 px wide")
            page.screenshot(path=str(SHOTS / "report-4-images.png"), full_page=True)
            summary = page.locator("section").first
            summary.screenshot(path=str(SHOTS / "report-summary.png"))
            assert height < MAX_HEIGHT, f"{height} px (see {SHOTS / 'report-4-images.png'})"

            # the summary opens the report: every target with its numbers
            assert page.locator("h2").first.inner_text() == "Summary"
            rows = summary.locator("tbody tr").evaluate_all(
                "rs => rs.map(r => [...r.cells].map(c => c.innerText.trim()))")
            head = summary.locator("thead th").evaluate_all("hs => hs.map(h => h.innerText.trim())")
            assert head == ["target", "kind", "id", "size", "layers", "efficiency", "wasted", "reclaimable", "shared"]
            by = {r[0]: dict(zip(head, r, strict=True)) for r in rows}
            assert list(by) == FOUR
            assert by["bloated:v1"]["wasted"] == "1.98MB" and by["bloated:v1"]["reclaimable"] == "1.98MB"
            assert by["bloated:v1"]["efficiency"] == "50.00%" and by["bloated:v1"]["layers"] == "3"
            assert by["busybox"]["efficiency"] == "100.00%" and by["busybox"]["wasted"] == "0B"
            assert by["app:v2"]["shared"] == by["app:v1"]["size"]  # app:v2 shares app:v1's stack
            text = page.inner_text("body")
            assert not re.search(r"\bnan\b|nan%|NaN", text), "nan in the report"
            assert "no user layers" in text  # busybox: dive's user wasted percent is not a number
            assert "<missing>" in text  # history rows no local image names
            assert page.locator("p.none").filter(has_text="none").count() >= 2  # busybox, app:v1: no inefficient files
            # dive's layer changes: bloated:v1's top layer removed the 1.98MB file, in dive's red
            removed = page.locator("section", has_text="Image bloated:v1").locator("div.ch-removed")
            assert removed.count() == 2 and "/tmp/build-cache 1.98MB" in removed.last.inner_text()
            assert removed.first.evaluate("e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
            added = page.locator("section", has_text="Image app:v1").locator("div.ch-added")
            assert "/app 400kB" in " ".join(added.all_inner_texts())  # the added directory, folded
        finally:
            browser.close()


def test_four_image_markdown(four):
    text = four["md"].read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[2] == "## Summary" and "| target | kind | id |" in text
    assert "| bloated:v1 | image |" in text and "1.98MB" in text
    assert "\\<missing>" in text and "nan" not in text.lower().replace("nothing", "")
    assert lines.count("none") >= 2
    assert "R 1 removed (1.98MB)" in text and "R /tmp/build-cache 1.98MB" in text
