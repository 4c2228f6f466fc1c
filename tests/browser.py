"""Debian's headless Chromium for the viewer's tests and screenshots, driven by Playwright (never its own browser).

    with chromium() as browser:
        page = browser.new_page(); page.goto(url)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

__all__ = ["CHROMIUM", "chromium"]

CHROMIUM = os.environ.get("FUSIONKIT_CHROMIUM", "/usr/bin/chromium")
# What works here as root, and keeps the browser off the network: it only ever talks to the test's server.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(width: int = 1300, height: int = 900) -> Iterator[BrowserContext]:
    """A browser with a fresh profile (deleted afterwards); the browser and Playwright's driver stop on exit."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does)")
    profile = tempfile.mkdtemp(prefix="fusionkit-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
