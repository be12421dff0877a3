"""Through `packager serve`: concurrent alias moves and their history, the audit chain against edits of the
catalog (SQLite and PostgreSQL), and every route against every token scope."""
from __future__ import annotations

import hashlib
import json
import random
import threading

import pytest
from sqlalchemy import text

from tests.registry.trust_support import make_key, packager
from tests.services import start_registry_server

ADMIN = "admin-secret"


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")
    request.applymarker(pytest.mark.postgres)
    return request.getfixturevalue("postgres_url"), str(tmp_path / "objects")


# ------------------------------------------------------------------ 8 clients x 50 alias moves
def test_eight_clients_moving_one_alias_fifty_times_leave_a_consistent_history(catalog, tmp_path, package_dirs):
    from packager.registry.remote import RemoteRegistry

    url_db, blobs = catalog
    home = tmp_path / "server"
    home.mkdir()
    (home / "tokens").write_text(f"{ADMIN} admin name=admin\n" + "".join(f"mover-{i} alias name=mover-{i}\n" for i in range(8)))
    url, stop = start_registry_server(home, home / "tokens", blobs=blobs, env={"PACKAGER_REGISTRY": url_db})
    try:
        admin = RemoteRegistry(url, token=ADMIN)
        for _ in range(3):
            admin.push(package_dirs["onnx"], "conc")
        failures: list[BaseException] = []

        def client(number: int) -> None:
            mover = RemoteRegistry(url, token=f"mover-{number}")
            rng = random.Random(number)
            try:
                for move in range(50):
                    mover.set_alias(f"conc@{rng.randint(1, 3)}", "production", message=f"client {number} move {move}")
            except BaseException as exc:  # noqa: BLE001  # reported below, with the thread's own error
                failures.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[:3]
        events = admin.alias_history("conc", "production")
        assert len(events) == 400
        assert events[0]["from"] is None
        for earlier, later in zip(events, events[1:], strict=False):
            assert later["from"] == earlier["to"], (earlier, later)  # each move starts where the previous one ended
        final = admin.get("conc@production").version
        assert events[-1]["to"] == final
        assert sorted(e["actor"] for e in events) == sorted(f"mover-{i}" for i in range(8) for _ in range(50))
        assert all(sum(1 for e in events if e["message"] == f"client {i} move {m}") == 1 for i in range(8) for m in (0, 49))

        rolled = admin.rollback_alias("conc", "production")
        assert rolled.version == events[-1]["from"] and admin.get("conc@production").version == events[-1]["from"]
        after = admin.alias_history("conc", "production")
        assert len(after) == 401 and after[-1]["from"] == final and after[-1]["actor"] == "admin"
        chain = admin.verify_audit()
        assert chain["ok"] and chain["records"] == 3 + 400 + 1  # 3 pushes, 400 moves, 1 rollback
    finally:
        stop()


# ------------------------------------------------------------------ the audit chain against edits
COLUMNS = ("time", "actor", "action", "target", "before", "after", "prev_hash", "hash")


def test_editing_any_audit_row_is_caught_by_verify(catalog, tmp_path, package_dirs):
    from packager.registry.backends import open_registry
    from packager.registry.signing import public_pem

    url_db, blobs = catalog
    registry = open_registry(url_db, blobs)
    (alice, alice_pub) = make_key(tmp_path, "alice")
    registry.push(package_dirs["onnx"], "a", aliases=["staging"])
    registry.push(package_dirs["onnx"], "a", sign_key=alice)
    registry.set_alias("a@2", "staging", message="promote")
    registry.tag("a@1", {"stage": "old"})
    registry.trust_add("alice", public_pem(alice_pub, private=False))
    registry.protect_alias("a", "production", ["signed"])
    registry.set_alias("a@2", "production")
    registry.remove_alias("a", "staging")
    registry.delete("a@1")
    registry.gc()
    registry.trust_remove("alice")
    records = registry.audit_log()
    assert [r["action"] for r in records] == [
        "push", "alias.set", "push", "alias.move", "tag", "trust.add", "alias.protect", "alias.set", "alias.remove", "delete", "gc",
        "trust.remove",
    ]
    assert registry.verify_audit() == {"records": 12, "ok": True, "first_bad": None, "reason": "", "head": f"12:{records[-1]['hash']}"}

    env = {"PACKAGER_HOME": str(tmp_path / "home"), "PACKAGER_REGISTRY": url_db, "PACKAGER_BLOBS": blobs}
    caught = 0
    with registry.engine.begin() as db:
        originals = {row.seq: row for row in db.execute(text("SELECT * FROM audit ORDER BY seq"))}
    for seq, row in originals.items():
        for column in COLUMNS:
            value = getattr(row, column)
            edited = ("x" + value[1:]) if value else '{"edited": true}'
            with registry.engine.begin() as db:
                db.execute(text(f"UPDATE audit SET {column} = :v WHERE seq = :s"), {"v": edited, "s": seq})
            result = registry.verify_audit()
            assert not result["ok"] and result["first_bad"] == seq, (seq, column, result)
            if seq == 5 and column == "actor":  # once through the CLI: exit 12, the record named
                code, _, err = packager("verify", env=env)
                assert code == 12 and "breaks at record 5" in err, err
            with registry.engine.begin() as db:
                db.execute(text(f"UPDATE audit SET {column} = :v WHERE seq = :s"), {"v": value, "s": seq})
            caught += 1
    assert caught == 12 * len(COLUMNS) and registry.verify_audit()["ok"]
    with registry.engine.begin() as db:  # a deleted row
        db.execute(text("DELETE FROM audit WHERE seq = 7"))
    result = registry.verify_audit()
    assert result["first_bad"] == 7 and "missing" in result["reason"]


# ------------------------------------------------------------------ scoped tokens, table-driven
TOKENS = {  # label -> (secret, token-file line)
    "reader": ("r-secret", "r-secret read name=reader"),
    "writer-a": ("w-secret", f"sha256:{hashlib.sha256(b'w-secret').hexdigest()} write names=team-a-* name=writer-a"),
    "writer-b": ("wb-secret", "wb-secret write,alias names=team-b-*,other-* name=writer-b"),
    "aliaser": ("al-secret", "al-secret alias name=aliaser"),
    "admin": ("ad-secret", "ad-secret admin name=admin"),
    "legacy": ("legacy-secret", "legacy-secret"),  # a bare token: full access, as before scopes existed
}
SCOPES = {"reader": {"read"}, "writer-a": {"read", "write"}, "writer-b": {"read", "write", "alias"}, "aliaser": {"read", "alias"},
          "admin": {"read", "write", "alias", "admin"}, "legacy": {"read", "write", "alias", "admin"}}
NAMES = {"writer-a": ("team-a-",), "writer-b": ("team-b-", "other-")}


def routes(blob: bytes, files: dict, bundle: str, pem: str) -> list[tuple[str, str, str, dict, str | None]]:
    """(method, path template, scope, request kwargs, model name or None); {m} is the model asked about. Deletions last."""
    digest = hashlib.sha256(blob).hexdigest()
    return [
        ("GET", "/models", "read", {}, None),
        ("GET", "/models/{m}/versions", "read", {}, "{m}"),
        ("GET", f"/models/{{m}}/versions/by-file/{digest}", "read", {}, "{m}"),
        ("GET", "/search", "read", {"params": {"q": "format = onnx"}}, None),
        ("GET", "/versions/{m}@1", "read", {}, "{m}"),
        ("GET", "/versions/{m}@1/lineage", "read", {}, "{m}"),
        ("GET", "/versions/{m}@1/children", "read", {}, "{m}"),
        ("GET", "/versions/{m}@1/files/manifest.json", "read", {}, "{m}"),
        ("GET", "/versions/{m}@1/signature", "read", {}, "{m}"),
        ("GET", "/models/{m}/alias-history", "read", {}, "{m}"),
        ("GET", "/models/{m}/alias-rules", "read", {}, "{m}"),
        ("GET", "/trust", "read", {}, None),
        ("GET", "/audit", "read", {}, None),
        ("GET", "/audit/verify", "read", {}, None),
        ("POST", "/blobs/missing", "write", {"json": {"digests": [digest]}}, None),
        ("PUT", f"/blobs/sha256/{digest}", "write", {"content": blob}, None),
        ("POST", "/versions", "write", {"json": {"name": "{m}", "manifest": {"format": "onnx"}, "files": files}}, "{m}"),
        ("PATCH", "/versions/{m}@1/tags", "write", {"json": {"set": {"stage": "x"}}}, "{m}"),
        ("PUT", "/versions/{m}@1/signature", "write", {"json": {"bundle": bundle}}, "{m}"),
        ("PUT", "/models/{m}/aliases/staging", "alias", {"json": {"ref": "1", "message": "t"}}, "{m}"),
        ("POST", "/models/{m}/aliases/staging/rollback", "alias", {"json": {}}, "{m}"),
        ("DELETE", "/models/{m}/aliases/staging", "alias", {}, "{m}"),
        ("PUT", "/models/{m}/aliases/production/rules", "admin", {"json": {"requires": []}}, "{m}"),
        ("POST", "/trust", "admin", {"json": {"name": "key-{m}", "public_key": pem}}, None),
        ("DELETE", "/trust/key-{m}", "admin", {}, None),
        ("POST", "/gc", "admin", {}, None),
        ("GET", "/verify", "admin", {}, None),
        ("DELETE", "/versions/{m}@2", "write", {}, "{m}"),
    ]


def test_every_route_against_every_scope(tmp_path, package_dirs):
    import httpx

    from packager.registry.backends import open_registry
    from packager.registry.signing import public_pem, sign_folder

    home = tmp_path / "server"
    home.mkdir()
    catalog, blobs = f"sqlite:///{home / 'catalog.db'}", str(home / "objects")
    seeded = open_registry(catalog, blobs)
    models = ("team-a-m", "team-b-m")
    for name in models:
        for _ in range(2):
            seeded.push(package_dirs["onnx"], name)
    stored = seeded.get("team-a-m@1")
    files = {f.path: {"digest": f.digest, "size": f.size, "role": f.role} for f in stored.files if f.role == "package"}
    private, public = make_key(tmp_path, "k")
    bundle = sign_folder(package_dirs["onnx"], private).bundle
    pem = public_pem(public, private=False)
    (home / "tokens").write_text("".join(line + "\n" for _, line in TOKENS.values()))
    url, stop = start_registry_server(home, home / "tokens", read_token=True, blobs=blobs, env={"PACKAGER_REGISTRY": catalog})
    table = routes(b"scoped tokens", files, bundle, pem)
    try:
        schema = httpx.get(f"{url}/api/v1/openapi.json", headers={"Authorization": "Bearer ad-secret"}).json()
        documented = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
        covered = {(method, _template(path)) for method, path, *_ in table}
        assert covered == {(m, p.removeprefix("/api/v1")) for m, p in documented}, documented ^ covered

        outcomes = []
        with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as http:
            for method, path, scope, kwargs, bound in table:
                for model in models:
                    for label, (secret, _) in [*TOKENS.items(), ("nobody", (None, None)), ("wrong", ("not-a-token", None))]:
                        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
                        body = json.loads(json.dumps(kwargs).replace("{m}", model)) if "json" in kwargs else kwargs
                        answer = http.request(method, path.replace("{m}", model), headers=headers, **body)
                        if label in ("nobody", "wrong"):
                            expected = 401
                        elif scope not in SCOPES[label] or (bound and label in NAMES and not model.startswith(NAMES[label])):
                            expected = 403
                        else:
                            expected = None  # allowed: whatever the operation answers, but never 401/403/5xx
                        status = answer.status_code
                        ok = status == expected if expected else status not in (401, 403) and status < 500
                        outcomes.append((method, path, model, label, status, expected, ok))
                        if expected == 403:
                            assert answer.json()["error"] == "Forbidden"
        bad = [o for o in outcomes if not o[-1]]
        assert not bad, bad[:10]
        assert len(outcomes) == len(table) * 2 * 8
        # the audit names the token's label, never its secret
        actors = {r["actor"] for r in seeded.audit_log()}
        assert {"writer-a", "writer-b", "admin", "token-6"} <= actors and not any("secret" in a for a in actors)  # legacy: its line
    finally:
        stop()


def _template(path: str) -> str:
    import re

    path = re.sub(r"/versions/\{m\}@[12]", "/versions/{ref}", path)
    path = re.sub(r"/by-file/[0-9a-f]{64}", "/by-file/{digest}", path)
    path = re.sub(r"/sha256/[0-9a-f]{64}", "/sha256/{digest}", path)
    path = path.replace("/files/manifest.json", "/files/{path}").replace("/trust/key-{m}", "/trust/{key_name}")
    path = path.replace("/aliases/staging", "/aliases/{alias}").replace("/aliases/production", "/aliases/{alias}")
    return path.replace("{m}", "{name}")


def test_token_file_errors_are_one_line_and_never_echo_the_secret(tmp_path):
    from packager.errors import UsageError
    from packager.server.tokens import parse_tokens

    for line, message in (
        ("topsecret read,deploy", "unknown scope deploy"),
        ("topsecret colour=red", "unknown option colour="),
        ("sha256:abc read", "64 lowercase hex"),
        ("topsecret name=has/slash", "is not a label"),
    ):
        with pytest.raises(UsageError) as caught:
            parse_tokens([line])
        assert message in str(caught.value) and "topsecret" not in str(caught.value)
    with pytest.raises(UsageError, match="same name="):
        parse_tokens(["a read name=x", "b write name=x"])


def test_a_names_limited_token_reads_only_its_models_through_every_route_and_page(tmp_path, package_dirs):
    """redteam24: names= limited only writes; a team-a token listed, searched, downloaded and audited every other model,
    by name, by version id (no name in the URL), URL-encoded, through lineage and children. "shared-m" is the marker:
    it must never reach the team-a token, and the admin token (the control) must see it."""
    import httpx

    from packager.registry.backends import open_registry

    home = tmp_path / "server"
    home.mkdir()
    catalog, blobs = f"sqlite:///{home / 'catalog.db'}", str(home / "objects")
    seeded = open_registry(catalog, blobs)
    seeded.push(package_dirs["onnx"], "team-a-m", trust=True)
    other = seeded.push(package_dirs["onnx"], "shared-m", parents=["team-a-m@1"], trust=True)  # sorts before team-a-m
    seeded.push(package_dirs["int8"], "team-a-m", parents=["shared-m@1"], trust=True)  # lineage a@1 -> shared@1 -> a@2
    seeded.set_alias("shared-m@1", "production")
    (home / "tokens").write_text(
        "a-secret write,alias names=team-a-* name=team-a\nad-secret admin name=admin\nta-secret admin names=team-a-* name=team-a-admin\n"
    )
    url, stop = start_registry_server(home, home / "tokens", read_token=True, blobs=blobs, env={"PACKAGER_REGISTRY": catalog})
    team_a, admin = ({"Authorization": f"Bearer {s}"} for s in ("a-secret", "ad-secret"))
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            listed = {  # route -> what the team-a token gets; each must hold team-a-m and never shared-m
                "/api/v1/models": http.get("/api/v1/models", headers=team_a, params={"limit": 1}),
                "/api/v1/search": http.get("/api/v1/search", headers=team_a, params={"q": "format = onnx", "limit": 1}),
                "/api/v1/audit": http.get("/api/v1/audit", headers=team_a),
                "/api/v1/versions/team-a-m@2/lineage": http.get("/api/v1/versions/team-a-m@2/lineage", headers=team_a),
                "/": http.get("/", headers=team_a),
                "/audit": http.get("/audit", headers=team_a),
                "/versions/team-a-m@2": http.get("/versions/team-a-m@2", headers=team_a),
            }
            for route, answer in listed.items():
                assert answer.status_code == 200 and "team-a-m" in answer.text and "shared-m" not in answer.text, (route, answer.text[:300])
                control = http.get(route, headers=admin, params=answer.request.url.params)
                assert control.status_code == 200 and "shared-m" in control.text, route  # the marker is there to be hidden
            assert [v["ref"] for v in listed["/api/v1/models"].json()] == ["team-a-m@2"]  # filtered first, then cut to limit
            assert [v["name"] for v in listed["/api/v1/search"].json()] == ["team-a-m"]
            assert listed["/api/v1/versions/team-a-m@2/lineage"].json()["ref"] == "team-a-m@1"
            assert http.get("/api/v1/versions/team-a-m@1/children", headers=team_a).json() == []

            refused = [  # (method, path, json body): each a 403 Forbidden for the team-a token
                *(("GET", f"/api/v1/versions/{ref}{tail}", None)
                  for ref in (other.id, "shared-m@1", "shared-m%401", "shared-m@production", "shared-m", "no-such-model@1")
                  for tail in ("", "/lineage", "/children", "/signature", "/files/manifest.json")),
                *(("GET", f"/api/v1/models/shared-m/{tail}", None) for tail in ("versions", "alias-history", "alias-rules",
                                                                               f"versions/by-file/{other.files[0].digest}")),
                ("GET", "/api/v1/audit?name=shared-m", None),
                ("GET", "/models/shared-m", None),
                ("GET", f"/versions/{other.id}", None),
                ("GET", "/versions/no-such-model@1", None),  # 403, not a 404 telling which models exist
                ("GET", "/audit?name=shared-m", None),
                ("GET", f"/compare?ref=team-a-m@1&ref={other.id}", None),
                ("POST", "/api/v1/versions", {"name": "team-a-m", "manifest": {"format": "onnx"}, "parents": ["shared-m@1"],
                                              "files": {f.path: {"digest": f.digest, "size": f.size, "role": f.role}
                                                        for f in other.files if f.role == "package"}}),
            ]
            for method, path, body in refused:
                answer = http.request(method, path, headers=team_a, json=body)
                assert answer.status_code == 403 and "may not touch model" in answer.text, (path, answer.text[:200])
                assert not path.startswith("/api") or answer.json()["error"] == "Forbidden"
            assert len(seeded.list("team-a-m")) == 2  # the refused push recorded nothing
            # an admin limited to team-a-* may not change what every team trusts, nor gc every team's blobs
            team_admin = {"Authorization": "Bearer ta-secret"}
            pem = open_registry(catalog, blobs).trust_list(with_keys=True)
            for method, path, body in (("POST", "/api/v1/trust", {"name": "mine", "public_key": _public_pem(tmp_path)}),
                                       ("DELETE", "/api/v1/trust/mine", None), ("POST", "/api/v1/gc", None)):
                answer = http.request(method, path, headers=team_admin, json=body)
                assert answer.status_code == 403 and "applies to every model" in answer.json()["message"], (path, answer.text)
            assert open_registry(catalog, blobs).trust_list(with_keys=True) == pem
            assert http.post("/api/v1/trust", headers=admin, json={"name": "mine", "public_key": _public_pem(tmp_path)}).status_code == 200
            assert http.delete("/api/v1/trust/mine", headers=team_admin).status_code == 403
            assert http.delete("/api/v1/trust/mine", headers=admin).status_code == 200
    finally:
        stop()


@pytest.mark.parametrize("line", ["team-secret write names=", "team-secret write names=, name=team"])
def test_a_token_whose_names_list_is_empty_is_refused_not_given_every_model(tmp_path, line):
    """redteam24: `names=` with no glob (a template's `names=$TEAM` with $TEAM unset) parsed as "no limit": the token
    could write every model. `packager serve` now refuses the file (exit 2, one line, the secret never echoed)."""
    home = tmp_path / "server"
    home.mkdir()
    (home / "tokens").write_text(f"{line}\n")
    try:
        url, stop = start_registry_server(home, home / "tokens")
    except RuntimeError as exc:
        assert "names= lists no glob" in str(exc) and "team-secret" not in str(exc), exc
    else:
        stop()
        pytest.fail(f"packager serve started with {line!r}: the token reached every model")


def _public_pem(folder) -> str:
    return make_key(folder, "team")[1].read_text()
