"""Headless Chromium for the page tests: Debian's `chromium` and `chromium-driver`, driven by
selenium (the test extra). Where the packages are missing they are installed with apt-get (as
root, or through sudo without a password); nothing is downloaded at run time otherwise. The
driver logs the console and every network request, so tests can assert a page stays offline.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

OFFLINE = ("file:", "data:", "blob:", "about:")


def _install_chromium() -> None:
    """apt-get the two Debian packages (quietly); a failure is reported by the caller."""
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        subprocess.run(sudo + cmd, env=env, capture_output=True, timeout=900, check=False)


def binaries() -> tuple[str, str]:
    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        # one installer at a time: test workers start together
        with open(Path(tempfile.gettempdir()) / "resnet-compiler-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (shutil.which("chromium") and shutil.which("chromedriver")):
                _install_chromium()
        chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.fail("the page tests need Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver", pytrace=False)
    return chrome, driver


def open_driver(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chrome, driver = binaries()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1600,1000", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    drv.get("about:blank")
    logs(drv)
    return drv


def logs(drv: Any) -> tuple[list[str], list[str]]:
    """(console errors, requested URLs) since the last call."""
    errors = [e.get("message", "") for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Network.webSocketCreated":
            urls.append(msg["params"]["url"])
    return errors, urls


def off_page(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(OFFLINE) or u.startswith("file://") and
            not u.startswith("file:///")]


def load(drv: Any, path: Path, fragment: str = "") -> None:
    logs(drv)
    drv.get(path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    deadline = time.monotonic() + 30
    while drv.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, f"{path} did not load"
        time.sleep(0.02)


def js(drv: Any, body: str, *args: Any) -> Any:
    return drv.execute_script(body, *args)


VISIBLE = "const vis = e => !!e && e.getClientRects().length > 0;"


def group(drv: Any, kind: str, path: str) -> Any:
    return js(drv, "return [...document.querySelectorAll(`[data-kind='${arguments[0]}']`)]"
                   ".find(e => e.getAttribute('data-path') === arguments[1]) || null;", kind, path)


def toggle(drv: Any, kind: str, path: str) -> None:
    """Click the group's own toggle, as a user does."""
    g = group(drv, kind, path)
    assert g is not None, f"no {kind} group {path}"
    t = js(drv, "return [...arguments[0].querySelectorAll('[data-role=toggle]')]"
                ".find(t => t.closest('[data-kind]') === arguments[0]);", g)
    js(drv, "arguments[0].scrollIntoView({block: 'center'});", t)
    t.click()


def shown(drv: Any, kind: str, prefix: str = "") -> list[dict[str, Any]]:
    """The visible groups of a kind whose path starts with `prefix`, in page order."""
    return js(drv, VISIBLE + """
      return [...document.querySelectorAll(`[data-kind='${arguments[0]}']`)]
        .filter(e => vis(e) && (e.getAttribute('data-path') || '').startsWith(arguments[1]))
        .map(e => ({path: e.getAttribute('data-path'), count: +(e.getAttribute('data-count') || 1),
                    folded: e.getAttribute('data-folded'), diff: e.getAttribute('data-diff'),
                    selected: e.getAttribute('data-selected'), cls: e.className,
                    feature: e.getAttribute('data-feature'),
                    box: (r => [r.x, r.y, r.width, r.height])(e.getBoundingClientRect())}));""",
              kind, prefix)


def edges(drv: Any) -> list[dict[str, str]]:
    return js(drv, """return [...document.querySelectorAll('[data-role=edge]')].map(e => {
        const a = {}; for (const x of e.attributes) a[x.name] = x.value; return a; });""")
