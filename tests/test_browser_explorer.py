"""The image explorer in a real browser.

Voilà serves ``notebooks/explorer.ipynb`` on 127.0.0.1 (the notebook builds its own images on a private
store, then shows the explorer as its last output); Debian's headless chromium, driven by Playwright, waits
until the widgets have rendered, picks another image and another layer, and checks that the table and the
chart changed. Screenshots go to ``out/screenshots/`` (ignored by git): look at them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "explorer.ipynb"
SHOTS = ROOT / "out" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH = 1400


def _require_tools() -> None:
    """Fail (not skip) naming the package when a tool is missing: CI installs them all."""
    if importlib.util.find_spec("voila") is None:
        pytest.fail("voila is not installed: .venv/bin/pip install voila (it belongs in the test extra)")
    if importlib.util.find_spec("playwright") is None:
        pytest.fail("playwright is not installed: .venv/bin/pip install playwright")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@pytest.fixture()
def voila(tmp_path):
    """Voilà serving the explorer notebook on a free port, with private Jupyter dirs; stopped by PID."""
    _require_tools()
    port = _free_port()
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    for var in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR"):
        env[var] = str(tmp_path / var.lower())
    env["TMPDIR"] = str(tmp_path / "tmp")  # the notebook's private store goes under here
    env["LAYERKIT_HOME"] = str(tmp_path / "default-store")  # never the user's store
    (tmp_path / "tmp").mkdir()
    log = tmp_path / "voila.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with status {proc.returncode}:\n{_tail(log)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not listen on port {port} within 60 s:\n{_tail(log)}")
                time.sleep(0.2)
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", log=log)
    finally:
        proc.terminate()  # Voilà shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        try:  # a kernel left behind would still be in the session this test started
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        print(f"--- voila log ({log}) ---\n{_tail(log)}")  # shown by pytest when the test failed


def _shot(page, name: str) -> Path:
    """A screenshot of the whole rendered notebook (Voilà scrolls inside #rendered_cells, so grow the
    viewport to its height first)."""
    height = page.evaluate("() => { const e = document.querySelector('#rendered_cells');"
                           " return e ? e.scrollHeight : document.body.scrollHeight; }")
    page.set_viewport_size({"width": WIDTH, "height": min(max(1000, height + 80), 12000)})
    page.wait_for_timeout(300)
    path = SHOTS / f"explorer-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    return path


def _wait_changed(page, selector: str, prop: str, old: str, timeout: int = 60_000) -> None:
    """Wait until the element's ``prop`` (innerHTML, src) is present and differs from ``old``."""
    page.wait_for_function("([sel, prop, old]) => { const e = document.querySelector(sel);"
                           " return e && e[prop] && e[prop] !== old; }", arg=[selector, prop, old], timeout=timeout)


@pytest.mark.timeout(300)
def test_explorer_in_voila_and_chromium(voila):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:100]} {r.failure}"))
            page.goto(voila.url, timeout=120_000)
            page.wait_for_selector(".widget-dropdown select", timeout=120_000)  # the notebook ran first
            page.wait_for_selector(".lk-chart img", timeout=60_000)
            page.wait_for_selector(".lk-tree table", timeout=60_000)
            try:
                page.wait_for_function("() => !document.body.innerText.includes('Loading widget')", timeout=20_000)
            except Exception:  # noqa: BLE001 - the assertion below says what is wrong
                pass
            body = page.inner_text("body")
            shot = _shot(page, "1-initial")
            assert "Loading widget" not in body, f"a widget never rendered (see {shot})"

            image = page.locator(".lk-image select")
            layer = page.locator(".lk-layer select")
            assert image.input_value().startswith("web:v2")
            assert layer.locator("option").count() == 3 and layer.input_value().startswith("2:")
            src = page.locator(".lk-chart img").get_attribute("src")
            assert src.startswith("data:image/png;base64,iVBORw0KGgo"), src[:80]  # a PNG, not [object Object]
            history = page.locator(".lk-history").inner_html()
            assert "site v2" in history and "<table" in history

            # the history table: every column on the page, no inner scroll; a multi-line command keeps its lines
            scrolls = page.evaluate("""() => [...document.querySelectorAll('.lk-history *')].filter(e =>
                e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'visible'
                || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible').length""")
            assert scrolls == 0, "the history table scrolls inside the page"
            cells = page.locator(".lk-history td").all_inner_texts()
            assert any("mkdir -p /www\necho" in c for c in cells), "the site script lost its lines"
            assert page.locator(".lk-history th").count() == 7

            # dive's layer tree of the top layer: marks and colours, fold a directory, preview a file
            tree = page.locator(".lk-layertree .lk-tree-list select")
            page.wait_for_selector(".lk-layertree .lk-tree-list select option", timeout=60_000)
            t0 = time.monotonic()
            page.locator(".lk-layertree .lk-tree-changes input").check()  # only what layer 2 changed
            page.wait_for_function("() => document.querySelectorAll('.lk-layertree select option').length < 20")
            changed_ms = round(1000 * (time.monotonic() - t0))
            lines = tree.locator("option").all_inner_texts()
            marks = {line.split("\u00a0", 1)[0] for line in lines}
            assert marks == {"A", "M", "R"}, lines
            colour = {line.replace("\u00a0", " ").split()[-1].rstrip("/"): c for line, c in zip(lines, tree.locator(
                "option").evaluate_all("os => os.map(o => getComputedStyle(o).color)"), strict=True)}
            assert colour["old.txt"] == "rgb(198, 40, 40)" and colour["app.bin"] == "rgb(46, 125, 50)"
            assert colour["index.html"] == "rgb(160, 109, 0)"  # dive's red, green, yellow
            www = next(i for i, line in enumerate(lines) if line.endswith("www/"))
            assert "20kB" in lines[www]  # the directory's size rolled up (app.bin and index.html)
            t0 = time.monotonic()
            tree.select_option(index=www)  # fold /www
            page.wait_for_function("() => [...document.querySelectorAll('.lk-layertree select option')]"
                                   ".some(o => o.textContent.endsWith('\u25b8\u00a0www/'))")
            fold_ms = round(1000 * (time.monotonic() - t0))
            assert not [x for x in tree.locator("option").all_inner_texts() if x.endswith("index.html")]
            tree.select_option(index=www)  # unfold it
            page.wait_for_function("() => [...document.querySelectorAll('.lk-layertree select option')]"
                                   ".some(o => o.textContent.endsWith('index.html'))")
            lines = tree.locator("option").all_inner_texts()
            t0 = time.monotonic()
            tree.select_option(index=next(i for i, x in enumerate(lines) if x.endswith("index.html")))
            page.wait_for_selector(".lk-tree-preview pre", timeout=30_000)
            preview_ms = round(1000 * (time.monotonic() - t0))
            assert "hello from v2" in page.locator(".lk-tree-preview").inner_text()
            print(f"explorer in chromium (ms): only changes {changed_ms}, fold {fold_ms}, preview {preview_ms}")
            page.locator(".lk-layertree").screenshot(path=str(SHOTS / "explorer-layer-tree.png"))
            page.locator(".lk-layertree .lk-tree-changes input").uncheck()
            page.wait_for_function("() => document.querySelectorAll('.lk-layertree select option').length > 100")

            # another image: the history table and the layer-size chart follow
            values = image.locator("option").evaluate_all("os => os.map(o => o.value)")
            v1 = next(v for v in values if v.startswith("web:v1"))
            image.select_option(value=v1)
            _wait_changed(page, ".lk-chart img", "src", src)
            page.wait_for_function("() => document.querySelectorAll('.lk-layer select option').length === 2")
            page.wait_for_function("() => !document.querySelector('.lk-history').innerHTML.includes('site v2')")
            new_history = page.locator(".lk-history").inner_html()
            assert new_history != history and "add the site" in new_history and "site v2" not in new_history
            assert page.locator(".lk-chart img").get_attribute("src") != src
            _shot(page, "2-other-image")

            # another layer: its changes, the union view up to it, and the chart (the layer highlighted)
            src = page.locator(".lk-chart img").get_attribute("src")
            changes = page.locator(".lk-changes").inner_html()
            tree = page.locator(".lk-tree").inner_html()
            tree_chart = page.locator(".lk-tree-chart img").get_attribute("src")
            assert "Layer 1 of web:v1" in changes
            layer.select_option(index=0)
            _wait_changed(page, ".lk-changes", "innerHTML", changes)
            _wait_changed(page, ".lk-chart img", "src", src)
            _wait_changed(page, ".lk-tree", "innerHTML", tree)
            _wait_changed(page, ".lk-tree-chart img", "src", tree_chart)
            assert "Layer 0 of web:v1" in page.locator(".lk-changes").inner_html()
            page.wait_for_function("() => document.querySelector('.lk-tree-caption').innerText.includes("
                                   "'Layer 0 of web:v1')")  # the layer tree follows the layer
            assert "/www/index.html" not in page.locator(".lk-tree").inner_html()

            # filter the union view by path, pick a file: its content as layer 0 has it
            page.locator(".lk-filter input").fill("passwd")
            page.locator(".lk-filter input").press("Enter")
            page.wait_for_selector(".lk-file select option[data-value='%2Fetc%2Fpasswd']", state="attached",
                                   timeout=30_000)
            assert page.locator(".lk-file select option").count() < 10  # only paths holding "passwd"
            page.locator(".lk-file select").select_option(value="/etc/passwd")
            page.wait_for_selector(".lk-file-preview pre", timeout=30_000)
            preview = page.locator(".lk-file-preview").inner_text()
            assert "root:x:0:0" in preview and "www:x:33" not in preview and "from layer 0" in preview
            _shot(page, "3-other-layer-and-file")
            assert not errors, errors
        finally:
            browser.close()
    # Voilà's page asks a CDN for Font Awesome, which fails offline; anything else failing (a broken
    # data: URL of a chart, a local resource) is ours
    assert not [f for f in failed if not f.startswith("https://cdn.jsdelivr.net/")], failed
