"""The web UI pages, rendered by the live server, fetched with an HTTP client and their content checked
(test_browser.py drives the same pages in chromium)."""
from __future__ import annotations

import re
from urllib.parse import quote

import httpx


def test_model_list_and_search(server, pushed):
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "ui-model" in page.text and 'class="badge alias">production' in page.text
    found = httpx.get(f"{server}/", params={"q": "metric.accuracy > 0.92"})
    assert "ui-model" in found.text and "v2" in found.text
    none = httpx.get(f"{server}/", params={"q": "metric.accuracy > 0.99"})
    assert "0 model(s)" in none.text
    bad = httpx.get(f"{server}/", params={"q": "metric.accuracy >>> 1"})
    assert bad.status_code == 200 and 'class="error"' in bad.text


def test_model_page_lists_versions_with_metrics_and_alias_badges(server, pushed):
    page = httpx.get(f"{server}/models/ui-model")
    assert page.status_code == 200
    assert page.text.count('name="ref"') == 2 and "<th>accuracy</th>" in page.text and "production → v2" in page.text
    assert httpx.get(f"{server}/models/no-such-model").status_code == 200  # an empty model page, not an error


def test_version_page_shows_validation_lineage_graph_and_downloads(server, pushed):
    source, child = pushed
    page = httpx.get(f"{server}/versions/{child.ref}")
    assert page.status_code == 200
    text = page.text
    assert 'id="derivation"' in text and f"{source.ref} onnx" in text and f"{child.ref} onnx dynamic" in text
    assert 'id="validation"' in text and "status-passed" in text
    link = re.search(r'href="(/api/v1/versions/[^"]+/files/model.onnx)"', text).group(1)
    download = httpx.get(f"{server}{link}")
    import hashlib

    entry = next(f for f in child.files if f.path == "model.onnx")
    assert hashlib.sha256(download.content).hexdigest() == entry.digest


def test_compare_highlights_differences_and_draws_the_chart(server, pushed):
    source, child = pushed
    page = httpx.get(f"{server}/compare", params=[("ref", source.ref), ("ref", child.ref)])
    assert page.status_code == 200
    assert re.search(r'<tr class="diff"><th>param.depth</th>', page.text)
    assert re.search(r'<tr class=""><th>metric.auc</th>', page.text)
    assert 'id="metrics-chart"' in page.text and page.text.count("<rect") >= 4
    one = httpx.get(f"{server}/compare", params={"ref": source.ref})
    assert one.status_code == 400 and "2 to 5 versions" in one.text


def test_assets_are_served_by_the_package(server):
    css = httpx.get(f"{server}/static/style.css")
    assert css.status_code == 200 and "font-family" in css.text
    assert "http" not in httpx.get(f"{server}/").text.split("<main>")[0].replace("http://127.0.0.1", "")  # no CDN in the head


NASTY = ["", " ", "a" * 1999, "ui-model@99999999999999999999", "ui-model@\u00b2", "ui-model\n", "../../etc/passwd", "%00", "\x00",
         "ui-model@sha256:zz", "version < 99999999999999999999999", 'tag.team = "\\x"', "metric.accuracy > nan", "created > 2026-13-45",
         "param.depth > 1e400", "((((((", "not not not name = x", "name ~ %", "'", '"unterminated', "é@ü", "<script>alert(1)</script>"]


def test_pages_answer_odd_input_without_a_server_error(server, pushed):
    """The pages are outside the OpenAPI schema (so outside the schemathesis run): the same kind of input, by hand."""
    for text in NASTY:
        for path, params in [
            ("/", {"q": text}),
            ("/", {"q": "format = onnx", "page": text or "0"}),
            (f"/models/{quote(text, safe='')}", None),
            (f"/versions/{quote(text, safe='')}", None),
            ("/compare", [("ref", text), ("ref", pushed[0].ref)]),
        ]:
            response = httpx.get(f"{server}{path}", params=params)
            assert response.status_code < 500, (path, params, response.status_code, response.text[:300])
            assert "<script>alert" not in response.text  # escaped wherever it is echoed


def test_version_page_shows_the_report_as_judged_data_source_criteria_cast_effect_failing_rows(server, pushed, fixtures, tmp_path):
    """The report fields of issue 13 (not the removed single tolerance): where the rows came from, each output's criterion,
    the cast effect, and for an accepted mismatch the rows that fail."""
    from packager.conversion import convert
    from packager.validation import Tolerance
    from tests.server.conftest import TOKEN, remote

    source, child = pushed
    text = httpx.get(f"{server}/versions/{child.ref}").text
    assert 'class="data-source">sample<' in text and "batch sizes 1 and " in text and "tolerance atol=" not in text
    assert re.search(r'<td class="criterion">labels agree on &gt;= 95.00% of rows</td>', text), text
    mlp = fixtures["mlp"]
    strict = convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=tmp_path / "strict", accept_mismatch=True,
                     tolerance={"probabilities": Tolerance(1e-9, 0.0, 0.0)})
    pushed_strict = remote(server, TOKEN).push(strict.path, "ui-strict")
    text = httpx.get(f"{server}/versions/{pushed_strict.ref}").text
    assert "mismatch accepted" in text and 'class="status-failed">fail' in text
    rows = re.findall(r"<li>row (\d+): expected \[", text)
    want = [r["row"] for o in strict.manifest.validation["outputs"] for r in o["failing_rows"]]
    assert rows and [int(r) for r in rows] == want
