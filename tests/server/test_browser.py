"""The UI in a real browser (Debian's chromium through Playwright) against the live server: open
the list, search, open a version, compare two versions, download a file and check its digest."""
from __future__ import annotations

import hashlib

import pytest

from tests.server.browser import chromium_page

pytestmark = pytest.mark.browser


def test_list_search_version_compare_download(server, pushed, tmp_path):
    source, child = pushed
    with chromium_page() as page:
        page.goto(f"{server}/")
        assert page.locator("#models").get_by_role("link", name="ui-model").count() == 1
        page.fill("input[name=q]", "metric.accuracy > 0.92")
        page.click("form.search button")
        assert "metric.accuracy" in page.url.replace("%20", " ").replace("+", " ")
        page.get_by_role("link", name="ui-model").click()
        assert page.locator("#versions tr").count() == 3  # header + 2 versions
        page.check(f"input[value='{source.ref}']")
        page.check(f"input[value='{child.ref}']")
        page.get_by_role("button", name="Compare selected (2 to 5)").click()
        assert page.locator("#compare tr.diff th", has_text="param.depth").count() == 1
        assert page.locator("#metrics-chart rect").count() >= 4
        page.get_by_role("link", name=child.ref).first.click()
        assert page.locator("#derivation").is_visible()
        assert page.locator("#validation td.status-passed").count() >= 1
        with page.expect_download() as download:
            page.locator("#files tr", has_text="model.onnx").get_by_role("link", name="download").click()
        saved = tmp_path / "model.onnx"
        download.value.save_as(saved)
    entry = next(f for f in child.files if f.path == "model.onnx")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == entry.digest
