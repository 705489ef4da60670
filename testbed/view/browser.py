"""Debian's chromium, headless and offline, driven by Playwright: what the browser tests and
the scrubbing benchmark open the viewer in."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium(viewport=(1500, 1000)):
    """A browser context in a fresh profile; open pages with `watched_page`."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="testbed-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True,
                                                        viewport={"width": viewport[0], "height": viewport[1]})
        try:
            yield context
        finally:
            context.close()


def watched_page(context):
    """A new page whose console errors and uncaught exceptions collect in `page.console_errors`."""
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return page
