"""/docs in a real browser (Debian's Chromium via Playwright): Swagger UI renders every
endpoint, and the page asks nothing of any host but the server (it must work offline)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")


def test_docs_render_offline_in_chromium(server, tmp_path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing")
    host = urlsplit(server.url).netloc
    requested: list[str] = []
    failed: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        try:
            page = browser.new_page()
            page.on("request", lambda req: requested.append(req.url))
            page.on("requestfailed", lambda req: failed.append(req.url))
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=60_000)
            shown = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".info .title").first.inner_text()
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        finally:
            browser.close()
    assert sorted(p.replace("\u200b", "") for p in shown) == sorted([
        "/search", "/similar/{path}", "/labels/search", "/info", "/thumbnail/{path}",
        "/healthz"])
    assert title.startswith("imgrec")
    assert [u for u in requested if urlsplit(u).netloc != host and not u.startswith("data:")] == []
    assert failed == []
