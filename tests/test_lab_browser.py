"""JupyterLab as a reader uses it, and the set-up that installs it.

The browser test drives a real headless Chromium (selenium) against the JupyterLab that `make venv` installs,
serving a temporary copy of the checkout's notebooks/, notes/ and replications/, rooted as `make lab` roots it,
with the kernel at the smoke profile: notebook 01's ``.py`` pair opens as a notebook (the default viewer the
set-up installs), the notes the notebooks link to are there, saving it rewrites neither file of the pair, and
running every cell shows figures inline and no error. It skips, with its reason, where selenium, Chromium,
chromedriver or JupyterLab is missing. The other tests check that Binder's environment and the Makefile install the same torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_reproducibility"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Hang guards, not timings: notebook 01 at smoke takes about a minute on two busy cores.
SERVER_START_S = 180
PAGE_LOAD_S = 180
RUN_ALL_S = 1200


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("jupyterlab") is None:
        return "JupyterLab is not installed (make venv installs it)"
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not os.access(path, os.X_OK):
            return f"{name} not found at {path} (Debian: apt-get install chromium chromium-driver)"
    return None


needs_browser = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free localhost port serving a copy of the checkout's folders that notebooks link to;
    yields (url, token, root)."""
    root = tmp_path / "repo"
    for folder in ("notebooks", "notes", "replications"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        REPRO_PROFILE="smoke",
        REPRO_STORE=str(tmp_path / "store"),
        REPRO_FIGURES=str(tmp_path / "figures"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
        # The reader's own Jupyter config and runtime files stay out of it (and untouched by it).
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
    )
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-user-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
        # Nothing reaches out to the network.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        # window.jupyterapp: the test drives Lab through the commands its menus run.
        "--LabApp.expose_app_in_browser=True",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # CI containers run as root
    log = open(tmp_path / "jupyter-lab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while _get(f"{url}/api/status?token={token}") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start (log: {(tmp_path / 'jupyter-lab.log').read_text()[-3000:]})")
            time.sleep(0.5)
        yield url, token, root
    finally:
        # The server's own shutdown stops the kernels it started; SIGTERM, then SIGKILL, if it does not stop.
        if server.poll() is None:
            try:
                req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
                urllib.request.urlopen(req, timeout=10).close()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    server.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    server.send_signal(sig)
            server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must use the given driver, never fetch one
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(PAGE_LOAD_S)
    try:
        yield driver
    finally:
        driver.quit()


def _js(driver, body: str, *args):
    """Run async JavaScript ``body`` (``app`` is JupyterLab, ``args`` its arguments); return its result or raise."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "const args = Array.prototype.slice.call(arguments, 0, -1);"
        "(async (app, args) => {" + body + "})(window.jupyterapp, args)"
        ".then(v => done({ok: v}), e => done({error: String(e && e.stack || e)}));"
    )
    result = driver.execute_async_script(script, *args)
    if "error" in result:
        raise AssertionError(f"JupyterLab: {result['error']}")
    return result.get("ok")


def _wait(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@needs_browser
def test_notebook_01_in_jupyterlab(lab, browser, tmp_path):
    url, token, root = lab
    py, ipynb = root / "notebooks" / f"{NOTEBOOK}.py", root / "notebooks" / f"{NOTEBOOK}.ipynb"
    before = {p: p.read_text() for p in (py, ipynb)}
    stamps = {p: p.stat().st_mtime_ns for p in (py, ipynb)}

    browser.get(f"{url}/lab?token={token}")
    _wait(lambda: browser.execute_script("return !!window.jupyterapp"), PAGE_LOAD_S, "JupyterLab to load")
    _js(browser, "await app.started; await app.restored;")

    # A double click opens a file with its default viewer: the .py pair must open as a notebook.
    opened = _js(browser, """
        const widget = await app.commands.execute('docmanager:open', {path: args[0]});
        await widget.context.ready;
        await widget.sessionContext.ready;
        const kernel = widget.sessionContext.session.kernel;
        // Lab writes the kernel's spec and language into the notebook's metadata once they arrive.
        await kernel.info;
        await kernel.spec;
        for (let i = 0; i < 100 && !widget.content.model.getMetadata('language_info'); i++) {
            await new Promise(r => setTimeout(r, 100));
        }
        return {notebook: widget.node.classList.contains('jp-NotebookPanel'),
                factory: app.docRegistry.defaultWidgetFactory(args[0]).name, kernel: kernel.name,
                language: !!widget.content.model.getMetadata('language_info')};
    """, f"notebooks/{NOTEBOOK}.py")
    assert opened["notebook"], f"{NOTEBOOK}.py opened with {opened['factory']!r}, not as a notebook"
    assert opened["kernel"] == "python3" and opened["language"], f"the kernel did not connect: {opened}"

    # The notes and protocols the notebooks link to (../notes/..., ../replications/...) are within Lab's root.
    links = sorted({link for nb in (root / "notebooks").glob("*.py")
                    for link in re.findall(r"\]\(\.\./((?:notes|replications)/[^)#\s]+)", nb.read_text())})
    assert links, "the notebooks link to no notes, so nothing was checked"
    found = _js(browser, """
        const found = [];
        for (const path of args[0]) {
            try { await app.serviceManager.contents.get(path, {content: false}); found.push(path); } catch (e) {}
        }
        return found;
    """, links)
    assert found == links, f"links Lab cannot open: {sorted(set(links) - set(found))}"

    # Saving what was opened (kernel connected, nothing run) must leave both files of the pair as they were. The one
    # exception is the .ipynb's language_info, which Lab fills in from the running kernel: it names the reader's
    # own Python (3.11.x), so it is put back as it was before the comparison.
    time.sleep(1.1)  # a rewrite within the same mtime tick would otherwise go unseen
    _js(browser, "await app.commands.execute('docmanager:save');")
    for p in (py, ipynb):
        assert p.stat().st_mtime_ns != stamps[p], f"saving did not write {p.name}, so nothing was checked"
    assert py.read_text() == before[py], "JupyterLab's save rewrote the .py pair:\n" + _first_difference(
        before[py], py.read_text())
    saved = _with_language_info_of(json.loads(before[ipynb]), json.loads(ipynb.read_text()))
    assert saved == before[ipynb], "JupyterLab's save rewrote the .ipynb:\n" + _first_difference(before[ipynb], saved)

    # Run every cell, as Run > Run All Cells does, and wait for the run to finish (it stops at an error).
    _js(browser, """
        window.__runAll = null;
        app.commands.execute('notebook:run-all-cells').then(
            ok => { window.__runAll = {ok: ok}; }, e => { window.__runAll = {error: String(e)}; });
    """)
    finished = _wait(lambda: browser.execute_script("return window.__runAll"), RUN_ALL_S, "Run All to finish",
                     poll=2.0)
    report = _js(browser, """
        const panel = app.shell.currentWidget;
        const cells = panel.content.model.toJSON().cells.filter(c => c.cell_type === 'code');
        const errors = [];
        cells.forEach((c, i) => c.outputs.filter(o => o.output_type === 'error').forEach(
            o => errors.push(`code cell ${i + 1}: ${o.ename}: ${o.evalue}`)));
        const images = Array.from(panel.node.querySelectorAll('.jp-OutputArea-output img'))
            .filter(img => img.src.startsWith('data:image/'));
        await Promise.all(images.map(img => img.decode().catch(() => null)));
        return {errors: errors, unrun: cells.filter(c => c.execution_count === null).length,
                cells: cells.length, images: images.length,
                drawn: images.filter(img => img.naturalWidth > 0 && img.naturalHeight > 0).length};
    """)
    browser.save_screenshot(str(tmp_path / "jupyterlab.png"))
    assert not report["errors"], f"cells show errors: {report['errors']}"
    assert finished.get("ok") is True, f"Run All did not complete: {finished}"
    assert report["unrun"] == 0, f"{report['unrun']} of {report['cells']} code cells did not run"
    assert report["images"] > 0, "no figure rendered inline"
    assert report["drawn"] == report["images"], f"only {report['drawn']} of {report['images']} images decode"


def _with_language_info_of(original: dict, saved: dict) -> str:
    """``saved`` with the language_info of ``original`` (or none), written as nbformat writes a notebook."""
    saved["metadata"].pop("language_info", None)
    if "language_info" in original["metadata"]:
        saved["metadata"]["language_info"] = original["metadata"]["language_info"]
    return json.dumps(saved, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _first_difference(a: str, b: str) -> str:
    for n, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
        if x != y:
            return f"line {n}: {x!r} -> {y!r}"
    return f"lengths {len(a)} -> {len(b)}"


def _makefile_torch_spec() -> list[str]:
    line = next(l for l in (REPO / "Makefile").read_text().splitlines() if l.startswith("TORCH_SPEC"))
    return line.split("=", 1)[1].split()


def test_binder_pins_the_makefile_torch_and_has_jupyterlab():
    spec = _makefile_torch_spec()
    assert spec and all("==" in s for s in spec), f"TORCH_SPEC should pin exact versions: {spec}"
    pip = [l.strip()[2:].strip() for l in (REPO / "environment.yml").read_text().splitlines()
           if l.strip().startswith("- ")]
    for pin in spec:  # the CPU build of the same version ("+cpu") is the same pin
        assert pin in pip or f"{pin}+cpu" in pip, f"environment.yml does not pin {pin} (Makefile TORCH_SPEC)"
    assert any(p.startswith("jupyterlab") for p in pip), "environment.yml lacks jupyterlab"
    jupytext = re.search(r'"(jupytext[^"]*)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert jupytext in pip, f"environment.yml should ask for {jupytext}, as pyproject.toml does"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("index", ["", "https://download.pytorch.org/whl/cpu"])
def test_make_venv_installs_the_pinned_torch_first(tmp_path, index):
    """`make -n` prints the install without running it: torch from TORCH_INDEX when given, then the rest under
    torch's pins as constraints, so that pip cannot replace it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test
    out = subprocess.run(["make", "-n", "-C", str(REPO), "venv", f"VENV={tmp_path / 'venv'}",
                          f"TORCH_INDEX={index}"], capture_output=True, text=True, check=True, env=env).stdout
    pips = [l for l in out.splitlines() if " -m pip install " in l]
    spec = _makefile_torch_spec()
    assert len(pips) == 2 and pips[0].split()[-len(spec):] == spec, out
    assert (f"--index-url {index} " in pips[0]) == bool(index), pips[0]
    assert "-c " in pips[1] and "torch-constraints.txt" in pips[1] and ".[test,lab]" in pips[1], pips[1]


def test_make_lab_roots_lab_at_the_checkout_and_opens_the_notebooks():
    """The browser test serves the layout `make lab` serves: the checkout as root, so the notebooks' links to
    ../notes/ and ../replications/ open."""
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "lab"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    command = dry.stdout[dry.stdout.index("jupyter lab"):]
    assert f"--ServerApp.root_dir={REPO}" in command.split()
    assert "--LabApp.default_url=/lab/tree/notebooks" in command.split()
