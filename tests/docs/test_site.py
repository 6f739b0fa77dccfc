"""The docs site, built with its one command and opened in a real browser (headless Chromium).

Slow (the tutorials execute: minutes), so it only runs when asked: ``pytest -m docs`` with the docs
extra installed and Debian's ``chromium`` on the machine. CI runs it with TORCHRL_RGM_REQUIRE_DOCS=1,
where a missing tool is a failure rather than a skip. Screenshots go to ``docs/_build/screenshots``.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import importlib
import inspect
import json
import os
import pkgutil
import posixpath
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from tests.conftest import requires

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
SHOTS = DOCS / "_build" / "screenshots"
TUTORIALS = sorted(p.stem for p in (DOCS / "tutorials").glob("[0-9][0-9]_*.py"))
# The pages the browser opens: the index, one tutorial, one API page (with the losses' equations).
PAGES = {"index": "index.html", "tutorial": "auto_tutorials/01_rgm_in_five_minutes.html",
         "api": "api/objectives.html", "results": "results.html", "design": "design.html"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("TORCHRL_RGM_REQUIRE_DOCS") == "1":
        pytest.fail("No chromium: install Debian's package (apt-get install chromium) or set CHROMIUM=<path>.")
    pytest.skip("needs Debian's chromium (apt-get install chromium)")


def _make_html() -> subprocess.CompletedProcess:
    """``make -C docs html`` — the command the README gives — with this interpreter's Sphinx."""
    env = {**os.environ, "SPHINXBUILD": f"{sys.executable} -m sphinx", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["make", "-C", str(DOCS), "html"], env=env, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def site() -> Path:
    for module in ("sphinx", "sphinx_gallery", "pydata_sphinx_theme", "playwright"):
        requires(module, "docs")
    proc = _make_html()
    assert proc.returncode == 0, f"make -C docs html failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert (SITE / "index.html").is_file()
    return SITE


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet; the browser reports what failed
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = requires("playwright.sync_api", "docs")
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def _ids(path: Path) -> frozenset:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _broken_local_links(base: str, page_url: str, hrefs: list[str], site: Path) -> list[str]:
    """Links into the site whose file, or whose ``#anchor`` in that file, does not exist."""
    broken = []
    for href in hrefs:
        url = urljoin(page_url, href)
        if not url.startswith(base):
            continue
        parts = urlsplit(url)
        rel = unquote(posixpath.normpath(parts.path[len(urlsplit(base).path):]))
        target = site / rel if rel not in (".", "") else site / "index.html"
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no file {target.relative_to(site)})")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
            broken.append(f"{href} (no anchor #{parts.fragment} in {target.relative_to(site)})")
    return broken


def _visit(browser, base: str, name: str, path: str, site: Path) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, bad_requests = [], []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: bad_requests.append(f"{r.url} failed ({r.failure})"))
    page.on("response", lambda r: bad_requests.append(f"{r.url} → HTTP {r.status}") if r.status >= 400 else None)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:", "blob:")) else None)
    url = base + path
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    # MathJax typesets after load: wait for it where the page has equations.
    if page.locator(".math").count():
        page.wait_for_selector("mjx-container", timeout=30_000)
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.currentSrc || e.src, ok: e.complete && e.naturalWidth > 0}))")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    info = {
        "errors": errors,
        "bad_requests": bad_requests,
        "outside_requests": outside,
        "missing_images": [i["src"] for i in images if not i["ok"]],
        "images": [i["src"] for i in images if i["ok"]],
        "broken_links": _broken_local_links(base, url, hrefs, site),
        "links": len(hrefs),
        "math_rendered": page.locator("mjx-container").count(),
        "math_source": page.locator(".math").count(),
        # TeX that MathJax could not parse, and TeX printed literally (e.g. ``\\_`` inside ``\\text{}``),
        # read from the hidden MathML MathJax writes beside each equation.
        "math_errors": page.locator("mjx-merror").count(),
        "math_literal_tex": [t for t in page.eval_on_selector_all(
            "mjx-assistive-mml", "els => els.map(e => e.textContent)") if "\\" in t],
        "text": page.inner_text("main") if page.locator("main").count() else page.inner_text("body"),
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.close()
    return info


@pytest.fixture(scope="module")
def visits(browser, server, site):
    results = {name: _visit(browser, server, name, path, site) for name, path in PAGES.items()}
    summary = {k: {f: v[f] for f in v if f != "text"} for k, v in results.items()}
    (SHOTS / "pages.json").write_text(json.dumps(summary, indent=1))
    return results


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_cleanly(visits, name):
    v = visits[name]
    assert v["errors"] == [], f"{name}: console errors {v['errors']}"
    assert v["bad_requests"] == [], f"{name}: failed requests {v['bad_requests']}"
    assert v["outside_requests"] == [], f"{name}: the site reached outside localhost: {v['outside_requests']}"
    assert v["missing_images"] == [], f"{name}: images that did not load {v['missing_images']}"
    assert v["broken_links"] == [], f"{name}: broken local links {v['broken_links']}"
    assert v["links"] > 10, f"{name}: only {v['links']} links — navigation missing?"
    assert v["math_rendered"] >= v["math_source"], f"{name}: equations MathJax did not typeset"
    assert v["math_errors"] == 0 and v["math_literal_tex"] == [], f"{name}: broken TeX {v['math_literal_tex']}"
    assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def test_equations_render_offline(visits):
    """The losses' docstring equations are typeset by the MathJax the site serves itself."""
    api = visits["api"]
    assert api["math_source"] >= 4, "the objectives page lost its equations"
    assert api["math_rendered"] >= api["math_source"], api
    assert "RGMLoss" in api["text"] and "reward_correction_objective" in api["text"]


def test_tutorial_page_shows_its_executed_output(visits, site):
    """The tutorial ran at build time: its printed results and figures are on the page."""
    tut = visits["tutorial"]
    assert "final normalised score" in tut["text"], "the recipe's printed summary is missing"
    assert "rank correlation with the true reward" in tut["text"]
    figures = [src for src in tut["images"] if "sphx_glr_01_rgm_in_five_minutes" in src]
    assert len(figures) >= 2, f"the tutorial's figures are missing: {tut['images']}"


def test_every_tutorial_executed(site):
    """Each tutorial has a page with its output; sphinx-gallery's timing table lists them all."""
    for stem in TUTORIALS:
        page = (site / "auto_tutorials" / f"{stem}.html").read_text(encoding="utf-8")
        assert "sphx-glr-script-out" in page, f"{stem} has no executed output"
    times = (DOCS / "auto_tutorials" / "sg_execution_times.rst").read_text(encoding="utf-8")
    for stem in TUTORIALS:
        assert stem in times, f"{stem} missing from sg_execution_times.rst"


def _public_names():
    """``module.name`` of every name in a public module's ``__all__``: classes and functions at the module
    that defines them; constants at their module (a package's re-exported constants are listed, and
    documented, by the submodule that defines them)."""
    import torchrl_rgm

    for m in pkgutil.walk_packages(torchrl_rgm.__path__, "torchrl_rgm."):
        if any(part.startswith("_") for part in m.name.split(".")):
            continue
        module = importlib.import_module(m.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{obj.__module__}.{obj.__qualname__}"
            elif not hasattr(module, "__path__"):
                yield f"{m.name}.{name}"


def test_api_reference_documents_every_public_name(site):
    """Every name in every public module's ``__all__`` (re-exports at their defining module) is in the
    site's object inventory — so a new public function cannot ship undocumented."""
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    documented = {name for objects in (inventory.data if hasattr(inventory, "data") else inventory).values()
                  for name in objects}
    public = set(_public_names())
    assert len(public) > 100
    missing = sorted(public - documented)
    assert not missing, f"public names missing from the API reference: {missing}"


def test_failed_build_keeps_the_last_good_site(site, tmp_path):
    """A build that fails (here: a tutorial that raises) leaves docs/_build/html as it was."""
    before = (site / "index.html").read_bytes()
    broken = DOCS / "tutorials" / "99_broken_for_test.py"
    broken.write_text('"""\nBroken\n======\n"""\nraise RuntimeError("this tutorial is broken on purpose")\n')
    try:
        proc = _make_html()
    finally:
        broken.unlink()
        for leftover in (DOCS / "auto_tutorials").glob("99_broken_for_test*"):
            leftover.unlink()
        for leftover in (DOCS / "auto_tutorials" / "images").glob("*99_broken_for_test*"):
            leftover.unlink()
    assert proc.returncode != 0
    assert "this tutorial is broken on purpose" in proc.stdout + proc.stderr
    assert (site / "index.html").read_bytes() == before
    assert not re.search(r"99_broken_for_test", (site / "auto_tutorials" / "index.html").read_text())
