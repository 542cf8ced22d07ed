"""The web page in a real browser (headless Chromium, installed by ./dev test): the page's
JavaScript asks the server, and what it shows equals what the library computes."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import urllib.parse

from convlens.web.api import explain_request

SEED_SPEC = "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def rendered_page(url: str) -> str:
    """The DOM after the page's scripts ran (the API answers within the virtual-time budget)."""
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    assert browser, "no Chromium found: ./dev test installs the Debian package 'chromium'"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def element_text(page: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no element #{element_id} in the rendered page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2)))


def test_page_shows_the_summary_and_trace_the_library_computes(running_server):
    expected = explain_request({"spec": SEED_SPEC})
    with running_server(SEED_SPEC) as base:
        page = rendered_page(base + "/")
    assert element_text(page, "summary").strip() == expected["summary"].strip()
    trace = expected["trace"]
    shown = element_text(page, "trace-value")
    # seven significant digits, as the library's text prints them
    seven_digits = float(format(trace["value"], ".7g"))
    assert f"= {seven_digits} " in shown
    assert "equals the forward pass" in shown
    assert "18,496" in page and "(None, 24, 24, 64)" in page


def test_spec_from_the_link_and_errors_shown_under_the_box(running_server):
    other = "input 26x26x32 | depthwise 3 multiplier=64"
    expected = explain_request({"spec": other})
    with running_server(SEED_SPEC) as base:
        page = rendered_page(base + "/#spec=" + urllib.parse.quote(other))
        assert element_text(page, "summary").strip() == expected["summary"].strip()
        broken = rendered_page(base + "/#spec=" + urllib.parse.quote("input 4x4 | x"))
    message = element_text(broken, "spec-error")
    assert "column 13" in message and "unknown layer 'x'" in message
    assert not re.search(r'id="spec-error"[^>]*\bhidden\b', broken)
