"""The course in a real browser: JupyterLab renders figures and the interactive explorer works.

Starts JupyterLab (this environment's, no browser, a token, a free port, a private config) on a
temporary copy of notebooks/ plus a small purpose-made notebook, opens that notebook in headless
Chromium driven by Playwright, runs all cells, and proves:

- a matplotlib figure is rendered as an ``<img>`` in the notebook (a real, decoded PNG), the
  pyplot way every lesson draws;
- the widget works: moving the image slider of ``vit_lesson.explorer.explore`` (or, where the
  explorer does not exist, an ipywidgets slider driving a matplotlib plot) changes the picture,
  which needs the whole loop: front-end widget -> kernel comm -> Python redraw -> new PNG back.

A screenshot is saved to ``artifacts/browser/explorer.png`` (artifacts/ is git-ignored).
Uses the system Chromium (``/usr/bin/chromium``, installed by ``.ci/install_browser.sh``);
skipped, with that reason, where it is missing. Never runs ``playwright install``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "explorer_in_the_browser.ipynb"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is missing: run .ci/install_browser.sh (apt-get install chromium)")

SETUP = """\
import matplotlib.pyplot as plt
import torch
from vit_lesson.model import ViT
from vit_lesson.registry import get_config

plt.rcParams["figure.dpi"] = 72  # as every course notebook starts
torch.manual_seed(0)
model = ViT(get_config("micro", image_size=16, patch_size=4, num_classes=3, num_hidden_layers=2))
images = torch.rand(4, 3, 16, 16)
dataset = [(images[i], i % 3) for i in range(len(images))]
figure, axes = plt.subplots(1, len(images), figsize=(4, 1))
for ax, image in zip(axes, images):
    ax.imshow(image.permute(1, 2, 0))
    ax.set_axis_off()
plt.show()"""

EXPLORER = """\
from vit_lesson.explorer import explore

explore(model, dataset, count=4)"""

FALLBACK = """\
import ipywidgets as widgets
import matplotlib.pyplot as plt
from vit_lesson.images import to_display


@widgets.interact(image=widgets.IntSlider(0, 0, len(images) - 1, description="image", continuous_update=False))
def show(image):
    plt.figure(figsize=(2, 2), dpi=72)
    plt.imshow(to_display(images[image]))
    plt.axis("off")
    plt.show()"""


def has_explorer() -> bool:
    try:
        from vit_lesson.explorer import explore  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A running JupyterLab on a copy of notebooks/ (+ the test notebook): yields (url, token)."""
    root = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(EXPLORER if has_explorer() else FALLBACK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, root / NOTEBOOK)
    private = tmp_path / "jupyter"
    news = private / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" pop-up in the screenshot
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(private / "config"), "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
           "IPYTHONDIR": str(private / "ipython"), "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("PYTHONPATH", None)
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--expose-app-in-browser",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
               f"--LabApp.workspaces_dir={private / 'workspaces'}",
               f"--LabApp.user_settings_dir={private / 'settings'}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its kernels
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def output_image(page, cell: int = -1):
    """The ``src`` of the picture in a code cell's output, once it is a decoded image."""
    image = page.locator(".jp-Cell").nth(cell).locator(".jp-OutputArea-output img").last
    image.wait_for(state="visible", timeout=90_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30_000)
    return image.get_attribute("src")


def test_figure_renders_and_slider_changes_it(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    url, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "explorer.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=60_000)
            page.wait_for_function(
                "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel); }",
                timeout=60_000)
            page.evaluate("""async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                await panel.context.ready;
                await panel.sessionContext.ready;
                await window.jupyterapp.commands.execute('notebook:run-all-cells');
            }""")
            if any(p.suffix == ".ipynb" and p.name != NOTEBOOK for p in (REPO / "notebooks").iterdir()):
                course = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))[0]
                page.locator(".jp-DirListing-item", has_text=course).first.wait_for(timeout=30_000)

            assert output_image(page, 0).startswith("data:image/png;base64,"), "no figure under the first cell"
            before = output_image(page)
            assert before.startswith("data:image/png;base64,"), before[:80]

            handle = page.locator(".widget-slider .noUi-handle").first
            handle.wait_for(state="visible", timeout=30_000)
            box = page.locator(".widget-slider .noUi-target").first.bounding_box()
            handle.hover()
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            readout = page.locator(".widget-slider .widget-readout").first
            page.wait_for_function("el => el.textContent.trim() !== '0'", arg=readout.element_handle(), timeout=15_000)
            page.wait_for_function(
                "([cell, old]) => { const img = cell.querySelector('.jp-OutputArea-output img');"
                " return img && img.complete && img.naturalWidth > 0 && img.src !== old; }",
                arg=[page.locator(".jp-Cell").last.element_handle(), before], timeout=60_000)
            after = output_image(page)
            assert after != before, "moving the slider did not change the picture"
            assert readout.text_content().strip() == "3", f"slider moved to {readout.text_content()!r}, not the end"
        finally:
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
            browser.close()
