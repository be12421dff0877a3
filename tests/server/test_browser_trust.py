"""The trust parts of the UI in a real browser (Debian's chromium through Playwright) against a live server: who
signed a version, a model's alias history and promotion rules, the audit page, and an edited audit row shown."""
from __future__ import annotations

import sqlite3

import pytest

from tests.registry.trust_support import make_key
from tests.server.browser import chromium_page
from tests.server.conftest import TOKEN, remote

pytestmark = pytest.mark.browser


def test_signer_history_rules_and_audit_pages(server, server_home, pushed, tmp_path):
    from packager.registry.signing import public_pem

    source, child = pushed
    writer = remote(server, TOKEN)
    private, public = make_key(tmp_path, "alice")
    writer.trust_add("alice", public_pem(public, private=False))
    writer.sign_with_key(child.ref, private)
    writer.protect_alias("ui-model", "production", ["signed"])
    writer.set_alias(source.ref, "staging", message="candidate <b>one</b>")
    writer.set_alias(child.ref, "staging", message="candidate two")
    writer.rollback_alias("ui-model", "staging")
    with chromium_page() as page:
        page.goto(f"{server}/versions/{child.ref}")
        assert page.locator("#signed-by").inner_text().startswith("alice, key ")
        page.goto(f"{server}/versions/{source.ref}")
        assert page.locator("#signed-by").inner_text() == "unsigned"
        page.goto(f"{server}/models/ui-model")
        assert page.locator("#versions td.signed", has_text="alice").count() == 1
        assert page.locator("#rules tr", has_text="production").locator("td").nth(1).inner_text() == "signed"
        rows = page.locator("#alias-history tr")
        assert rows.count() == 1 + 4  # header; production (set by the push), staging set, moved, rolled back (newest first)
        newest = rows.nth(1).locator("td")
        assert [newest.nth(i).inner_text() for i in range(2, 6)] == ["staging", "v2", "v1", "rollback to ui-model@1"]
        assert page.locator("#alias-history td", has_text="candidate <b>one</b>").count() == 1  # text, not markup
        page.get_by_role("link", name="audit log of ui-model").click()
        assert page.locator("#chain").inner_text().startswith("hash chain intact over")
        actions = page.locator("#audit td.action").all_inner_texts()
        assert actions[:3] == ["alias.move", "alias.move", "alias.set"] and "sign" in actions and "push" in actions
        assert set(page.locator("#audit td.actor").all_inner_texts()) == {"token-2"}  # the token's line label, not the secret

        with sqlite3.connect(server_home / "catalog.db") as db:  # someone with database access rewrites who did it
            db.execute("UPDATE audit SET actor = 'someone-else' WHERE action = 'sign'")
        page.goto(f"{server}/audit")
        assert "hash chain broken" in page.locator("#chain").inner_text() and "it was edited" in page.locator("#chain").inner_text()
