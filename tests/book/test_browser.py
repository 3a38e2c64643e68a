"""The website in a real browser: every page of the toc opens in headless Chromium without errors.

The HTML build (test_html.py) proves that Sphinx is happy; this test proves that a reader is. The
site in ``_build/html`` (reused when it is newer than every source, else built as ``make html``
does) is served on localhost and each page listed by ``_toc.yml`` is opened through selenium and
Debian's ``chromium`` + ``chromium-driver``. For each page it checks that

* the browser console shows no SEVERE entry (failed loads, JavaScript exceptions);
* every resource the page loads comes from the site itself: the book must work offline, so no
  CDN (MathJax is served from ``book/_static/mathjax``);
* every ``<img>`` in the main content decoded (``naturalWidth > 0``);
* a chapter shows one ``.cell_output`` per code cell that has outputs in its ``.ipynb``, with one
  image per PNG output;
* where the source has ``$...$`` math, MathJax rendered every math element, without TeX errors;

and it saves a screenshot of each page to ``_build/html/_screenshots/<page>.png`` (the page's path
under ``book/``, ``/`` written as ``_``).

Without the browser or selenium the test is skipped with the command that installs them.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from segedu import book

ROOT = Path(__file__).resolve().parents[2]
PAGES = book.toc_files(ROOT)
INSTALL = ("install the browser with `apt-get install -y chromium chromium-driver` (Debian/Ubuntu; "
           ".ci/run does it) and selenium with `pip install -c requirements.lock -e '.[dev]'`")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1280,1600", "--hide-scrollbars"]
# Console errors tolerated because they come from the network, not from the book. None so far:
# the site loads nothing from outside (checked below), so nothing is listed here. Add a regular
# expression with the reason if a theme update brings an unavoidable remote font or script.
ALLOWED_SEVERE: list[str] = []
MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+\$", re.S)
SKIP_DIRS = {"_static", ".ipynb_checkpoints", "__pycache__"}


def _executable(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


def _sources() -> list[Path]:
    """The files the HTML is made from: the toc, the config and everything under book/."""
    files = [ROOT / "_toc.yml", ROOT / "_config.yml", *(ROOT / "book" / "_static").rglob("*")]
    files += [p for p in (ROOT / "book").rglob("*")
              if not any(part.startswith(".") or part in SKIP_DIRS for part in p.relative_to(ROOT / "book").parts)]
    return [p for p in files if p.is_file()]


@pytest.fixture(scope="module")
def html_dir() -> Path:
    """``_build/html``, rebuilt (strictly, as ``make html``) unless it is newer than every source."""
    site = ROOT / "_build" / "html"
    index = site / "index.html"
    fresh = (index.is_file() and all((site / f"{p}.html").is_file() for p in PAGES)
             and index.stat().st_mtime >= max(p.stat().st_mtime for p in _sources()))
    if not fresh:
        book.build_html(strict=True, quiet=True)
    return site


@pytest.fixture(scope="module")
def server(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output to the test results
        pass


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(f"selenium is missing ({exc}): {INSTALL}")
    chromium = _executable("chromium", "chromium-browser")
    chromedriver = _executable("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(f"Chromium or chromedriver not found: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def _expected_outputs(page: str) -> tuple[int, int] | None:
    """(code cells with outputs, PNG outputs) of a notebook page; None for a markdown page."""
    ipynb = ROOT / f"{page}.ipynb"
    if not ipynb.is_file():
        return None
    cells = [c for c in json.loads(ipynb.read_text())["cells"] if c["cell_type"] == "code"]
    pngs = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    return sum(bool(c.get("outputs")) for c in cells), pngs


def _has_math(page: str) -> bool:
    md = ROOT / f"{page}.md"
    if md.is_file():
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # not in code blocks
    else:
        cells = json.loads((ROOT / f"{page}.ipynb").read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return bool(MATH.search(re.sub(r"`[^`\n]*`", "", text)))


# Waits for MathJax's first typeset (when the page loads MathJax) and for every image of the main
# content to decode (a broken one rejects decode() and keeps naturalWidth 0), then reports.
_INSPECT = """
const done = arguments[arguments.length - 1];
const main = document.querySelector('main') || document.body;
const imgs = Array.from(main.querySelectorAll('img'));
imgs.forEach(i => { i.loading = 'eager'; });
const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
Promise.all([typeset.catch(e => String(e)), ...imgs.map(i => i.decode().catch(() => null))]).then(() => done({
  images: imgs.map(i => [i.getAttribute('src'), i.naturalWidth]),
  outputs: main.querySelectorAll('.cell_output').length,
  output_images: main.querySelectorAll('.cell_output img').length,
  math: main.querySelectorAll('.math').length,
  rendered: main.querySelectorAll('.math mjx-container').length,
  tex_errors: main.querySelectorAll('mjx-merror, [data-mjx-error]').length,
  mathjax: Boolean(window.MathJax && MathJax.version),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  title: document.title,
}));
"""


@pytest.mark.parametrize("page", PAGES)
def test_page_in_the_browser(page, driver, server, html_dir):
    url = f"{server}/{page}.html"
    driver.get_log("browser")  # drop entries left by the previous page
    driver.get(url)
    seen = driver.execute_async_script(_INSPECT)
    shots = html_dir / "_screenshots"
    shots.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(shots / (page.removeprefix("book/").replace("/", "_") + ".png")))

    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not any(re.search(p, e["message"]) for p in ALLOWED_SEVERE)]
    assert not severe, f"{page}: browser console errors:\n" + "\n".join(severe)
    remote = [r for r in seen["resources"] if not r.startswith(server)]
    assert not remote, f"{page}: loads resources from outside the site (the book must work offline): {remote}"
    assert "404" not in seen["title"] and seen["title"], f"{page}: title {seen['title']!r}"

    broken = [src for src, width in seen["images"] if not width]
    assert not broken, f"{page}: images that did not load: {broken}"

    expected = _expected_outputs(page)
    if expected is not None:
        outputs, pngs = expected
        assert outputs, f"{page}: the committed .ipynb has no outputs; run `make book NB={Path(page).name[:2]}`"
        assert (seen["outputs"], seen["output_images"]) == (outputs, pngs), (
            f"{page}: the page shows {seen['outputs']} cell outputs with {seen['output_images']} images; "
            f"the notebook has {outputs} cells with outputs and {pngs} PNG figures")

    if _has_math(page):
        assert seen["mathjax"], f"{page}: has $...$ math but MathJax did not load"
        assert seen["math"] > 0, f"{page}: has $...$ math but the HTML holds no math element"
        assert seen["rendered"] == seen["math"], (
            f"{page}: MathJax rendered {seen['rendered']} of {seen['math']} math elements")
        assert seen["tex_errors"] == 0, f"{page}: {seen['tex_errors']} TeX errors"
