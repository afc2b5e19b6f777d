"""A lesson's stepper widget renders in a real browser and answers a click (issue #6).

JupyterLab runs headless on 127.0.0.1 (a free port, a random token, every config, data,
runtime, settings and workspace folder in a temp dir, news and update checks off) serving a
temp COPY of ``notebooks/05-crash-recovery.ipynb``, so the committed notebook is never
touched.  Debian's Chromium (``/usr/bin/chromium``, packages ``chromium chromium-driver``;
``.ci/run`` installs them), driven by Python Playwright through ``executable_path`` (no
browser download), opens it, waits for the kernel's "Idle", clears the saved outputs (the
notebook carries saved widget state, which would render dead widgets), runs all cells,
waits for the stepper's "Step" button, reads the state display, clicks "Step" and waits
for that text to change.  The screenshot is saved as ``tests/artifacts/browser-stepper.png``
(git-ignored).  Waiting is done with Playwright's auto-waiting ``expect`` with timeouts;
polling the server's ``/api/status`` with a deadline is waiting for an external process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOT = ARTIFACTS / "browser-stepper.png"
FAILURE_SCREENSHOT = ARTIFACTS / "browser-stepper-failure.png"
LESSON = "05-crash-recovery.ipynb"
CHROMIUM = os.environ.get("PHASE1_CHROMIUM_BIN", "/usr/bin/chromium")
# Without the background-networking flags Chromium dials out, and this machine's closed
# network refuses it; the profile dir (a new empty one) is passed by Playwright.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# User settings of the throwaway lab: no news prompt or update check (both would reach the
# network), and every cell attached to the DOM (no windowing: the widget is found wherever
# the notebook is scrolled to).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
SERVER_DEADLINE_S = 45.0
UI_TIMEOUT_MS = 45_000  # kernel start, run-all and widget rendering, each
CLICK_TIMEOUT_MS = 15_000

# Never route loopback requests through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path
    log: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: jupyter server shuts its kernels down and exits
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def require_chromium() -> None:
    """Never skip: without Chromium this test FAILS and says how to install it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} not found: install it with `apt-get install chromium chromium-driver` "
            "(.ci/run does this in CI)",
            pytrace=False,
        )


@contextmanager
def running_lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving a temp copy of the lesson; stopped on the way out."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy2(REPO / "notebooks" / LESSON, root / LESSON)
    jupyter = tmp_path / "jupyter"
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # conftest sets Agg; the lesson's kernel must not inherit it
    env.update(
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "lab-workspaces"),
        IPYTHONDIR=str(jupyter / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    for name, values in LAB_SETTINGS.items():
        path = jupyter / "lab-settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = secrets.token_hex(24)
    port = free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.token={token}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # fail loudly rather than move to another port
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI listing
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands by id
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log)
    try:
        status = f"{server.url}/api/status?token={token}"
        deadline = time.monotonic() + SERVER_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited early ({proc.returncode}):\n{server.log_tail()}",
                    pytrace=False,
                )
            try:
                with _OPENER.open(status, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not answer {SERVER_DEADLINE_S:.0f} s:\n{server.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.25)  # polling an external server's readiness
        yield server
    finally:
        _stop(proc)


@contextmanager
def chromium(tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, a new empty profile; closed on the way out."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def _dismiss_dialog(dialog: Locator) -> None:
    """A modal in the way: accept a kernel choice (the default, python3), decline the rest
    (e.g. "Build Recommended")."""
    text = dialog.inner_text()
    if "kernel" in text.lower() and "build" not in text.lower():
        button = dialog.locator(".jp-Dialog-button.jp-mod-accept")
    else:
        button = dialog.locator(".jp-Dialog-button.jp-mod-reject")
    if button.count():
        button.first.click()
    else:
        dialog.page.keyboard.press("Escape")


def _run_command(page: Page, command: str) -> None:
    page.evaluate("(id) => window.jupyterapp.commands.execute(id)", command)


def test_stepper_renders_and_steps_in_chromium(
    tmp_path: Path, record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture[str]
) -> None:
    require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    FAILURE_SCREENSHOT.unlink(missing_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    # Both are stopped however the test ends (context managers with ``finally``).
    with running_lab(tmp_path) as lab, chromium(tmp_path) as browser:
        before, after = drive_stepper(lab, browser)
    # The artifact's path: in the junit XML, on the terminal (also under -q) and in -rP.
    record_property("screenshot", str(SCREENSHOT))
    with capsys.disabled():
        print(f"\nbrowser stepper screenshot: {SCREENSHOT}")
    print(f"state before Step:\n{before}\nstate after Step:\n{after}")


def drive_stepper(lab: Lab, browser: BrowserContext) -> tuple[str, str]:
    """Open the lesson, run it, click Step; return the state display before and after."""
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    # Modals (kernel selection, "build recommended") are handled whenever they show up
    # before an action or an expect() check.
    page.add_locator_handler(page.locator(".jp-Dialog"), _dismiss_dialog)
    try:
        page.goto(f"{lab.url}/lab/tree/{LESSON}?token={lab.token}")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        expect(notebook).to_be_visible(timeout=UI_TIMEOUT_MS)
        # The kernel's status in the status bar: "Python 3 (ipykernel) | Idle" (before the
        # kernel is up it reads "... | Initializing" or "No Kernel").
        expect(page.locator("#jp-main-statusbar")).to_contain_text(
            re.compile(r"\(ipykernel\) \| Idle"), timeout=UI_TIMEOUT_MS
        )

        _run_command(page, "notebook:clear-all-cell-outputs")
        step_button = page.get_by_role("button", name="Step", exact=True)
        step = notebook.locator(step_button)
        expect(step).to_have_count(0)  # no stale (saved) widget left to click
        _run_command(page, "notebook:run-all-cells")

        expect(step).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(step).to_be_enabled()
        view = notebook.locator(".widget-vbox").filter(has=step_button).last
        htmls = view.locator(":scope > .widget-html .widget-html-content")
        expect(htmls).to_have_count(2)  # the "[k/n] label" line and the state screen
        label, screen = htmls.nth(0), htmls.nth(1)
        expect(label).to_contain_text("[0/")
        expect(screen).not_to_have_text("")
        before_label = label.inner_text()
        before_screen = screen.inner_text()

        step.click(timeout=CLICK_TIMEOUT_MS)
        expect(screen).not_to_have_text(before_screen, timeout=CLICK_TIMEOUT_MS)
        expect(label).to_contain_text("[1/", timeout=CLICK_TIMEOUT_MS)
        after_screen = screen.inner_text()
        after_label = label.inner_text()
        assert after_screen != before_screen
        assert after_label != before_label

        view.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT))
    except Exception:
        try:
            page.screenshot(path=str(FAILURE_SCREENSHOT))
        except Exception:  # the original error matters more
            pass
        print(f"failure screenshot: {FAILURE_SCREENSHOT}\nJupyterLab log:\n{lab.log_tail()}")
        raise
    return before_screen, after_screen
