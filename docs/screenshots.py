"""Screenshots of the registry UI (list, version, compare) for the README, from a live server over a
small registry filled with real packages.

    python docs/screenshots.py        # writes docs/ui-list.png, docs/ui-version.png, docs/ui-compare.png
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from fixtures.build import build
    from packager.conversion import convert
    from packager.registry.remote import RemoteRegistry
    from tests.server.browser import chromium_page
    from tests.services import start_registry_server

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        fixtures = build(work / "fixtures")
        (work / "tokens").write_text("token\n")
        url, stop = start_registry_server(work / "home", work / "tokens")
        try:
            registry = RemoteRegistry(url, token="token")
            mlp = fixtures["mlp"]
            onnx = convert(mlp.model, to="onnx", sample=mlp.sample, out=work / "onnx").path
            int8 = convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=work / "int8").path
            source = registry.push(onnx, "digits-mlp", params={"hidden": "128,64", "lr": "0.001"}, metrics={"accuracy": 0.972, "f1": 0.971}, tags={"team": "vision"})
            child = registry.push(int8, "digits-mlp", params={"hidden": "128,64", "lr": "0.001"}, metrics={"accuracy": 0.969, "f1": 0.968},
                                  parents=[source.id], aliases=["production"])
            for name in ("churn-forest", "fraud-logreg", "wine-svc"):
                registry.push(convert(fixtures["forest"].model, to="onnx", out=work / name).path, name, metrics={"accuracy": 0.95})
            with chromium_page(1280, 800) as page:
                for target, path in (("ui-list.png", "/"), ("ui-version.png", f"/versions/{child.ref}"),
                                     ("ui-compare.png", f"/compare?ref={source.ref}&ref={child.ref}")):
                    page.goto(url + path)
                    page.screenshot(path=str(ROOT / "docs" / target), full_page=False)
                    print("written", ROOT / "docs" / target)
        finally:
            stop()


if __name__ == "__main__":
    main()
