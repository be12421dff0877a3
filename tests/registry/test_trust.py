"""Signed packages (OpenSSF model signing), the trust policy of pull and predict, promotion rules, signed-only
servers, and a catalog made by the previous release: through the CLI, locally and through `packager serve`."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.registry.trust_support import make_key, openssf_verify, packager, point_file_at
from tests.services import start_registry_server

ADMIN = "trust-admin-token"
LEGACY = Path(__file__).with_name("fixtures") / "legacy_8e0a379"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return {name: make_key(folder, name) for name in ("alice", "bob")}


def env_for(home: Path, catalog: str | None = None, blobs: str | None = None, **extra: str) -> dict[str, str]:
    env = {"PACKAGER_HOME": str(home), "PACKAGER_REGISTRY": catalog or "", "PACKAGER_BLOBS": blobs or "",
           "PACKAGER_VERIFY": "", "PACKAGER_TOKEN": ""}
    return {**env, **extra}


def test_signed_push_passes_openssf_verify_and_any_tampering_is_caught(tmp_path, package_dirs, keys):
    (alice, alice_pub), _ = keys["alice"], keys["bob"]
    (tmp_path / "reg").mkdir()  # a registry URL names an existing folder
    catalog, blobs = f"sqlite:///{tmp_path / 'reg' / 'catalog.db'}", str(tmp_path / "reg" / "objects")
    home = env_for(tmp_path / "home-a", catalog, blobs)
    code, out, err = packager("push", str(package_dirs["onnx"]), "--name", "fraud", "--sign-key", str(alice), env=home)
    assert code == 0, err
    assert packager("trust", "add", str(alice_pub), "--name", "alice", env=home)[0] == 0
    shown = json.loads(packager("show", "fraud@1", "--json", env=home)[1])
    fingerprint = hashlib.sha256(alice_pub.read_bytes()).hexdigest()  # model-signing's key hint: sha256 of the public PEM
    assert shown["signature"]["signer"] == "alice" and shown["signature"]["fingerprint"] == fingerprint
    assert "alice" in packager("list", "fraud", env=home)[1]

    other_home = env_for(tmp_path / "home-b", catalog, blobs)  # another user's home, the same registry
    code, _, err = packager("pull", "fraud@1", "-o", str(tmp_path / "pulled"), "--verify", "required", env=other_home)
    assert code == 0, err
    pulled = tmp_path / "pulled"
    assert sorted(p.name for p in pulled.iterdir()) == sorted([*(p.name for p in package_dirs["onnx"].iterdir()), "model.sig"])
    accepted = openssf_verify(pulled, alice_pub)
    assert accepted.returncode == 0 and "Verification succeeded" in accepted.stdout, accepted.stderr[-2000:]

    model = pulled / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte
    model.write_bytes(bytes(data))
    refused = openssf_verify(pulled, alice_pub)
    assert refused.returncode != 0 and "Signature mismatch" in refused.stdout + refused.stderr

    # the same change inside the registry's blob store: the pull refuses, exit 12, nothing written
    entry = next(f for f in shown["files"] if f["path"] == "model.onnx")
    blob = Path(blobs) / "sha256" / entry["digest"][:2] / entry["digest"][2:]
    stored = bytearray(blob.read_bytes())
    stored[len(stored) // 2] ^= 0x01
    blob.chmod(0o644)
    blob.write_bytes(bytes(stored))
    code, _, err = packager("pull", "fraud@1", "-o", str(tmp_path / "again"), "--verify", "required", env=other_home)
    assert code == 12 and "model.onnx" in err, err
    assert not (tmp_path / "again").exists()


# ------------------------------------------------------------------ the policy matrix
EXPECTED = {  # state -> policy -> accepted?
    "trusted": {"required": True, "if-signed": True, "off": True},
    "untrusted": {"required": False, "if-signed": False, "off": True},
    "unsigned": {"required": False, "if-signed": True, "off": True},
    "tampered": {"required": False, "if-signed": False, "off": True},
}
VERSIONS = {"trusted": 1, "untrusted": 2, "unsigned": 3, "tampered": 4}
REASONS = {"untrusted": "not trusted", "unsigned": "is not signed", "tampered": "does not match the files"}


@pytest.fixture(scope="module")
def matrix_registry(tmp_path_factory, package_dirs, keys):
    """m@1 signed by alice (trusted), m@2 by bob (not trusted), m@3 unsigned, m@4 signed by alice and then its
    model.onnx re-pointed in the catalog at another stored blob (m-int8's model: digest and size agree)."""
    from packager.registry.backends import open_registry
    from packager.registry.signing import public_pem

    root = tmp_path_factory.mktemp("matrix")
    catalog, blobs = f"sqlite:///{root / 'catalog.db'}", str(root / "objects")
    registry = open_registry(catalog, blobs)
    (alice, alice_pub), (bob, _) = keys["alice"], keys["bob"]
    registry.push(package_dirs["onnx"], "m", sign_key=alice)
    registry.push(package_dirs["onnx"], "m", sign_key=bob)
    registry.push(package_dirs["onnx"], "m")
    registry.push(package_dirs["onnx"], "m", sign_key=alice)
    other = registry.push(package_dirs["int8"], "m-int8")
    swapped = next(f for f in other.files if f.path == "model.onnx")
    point_file_at(catalog, "m", 4, "model.onnx", swapped.digest, swapped.size)
    registry.trust_add("alice", public_pem(alice_pub, private=False))
    return catalog, blobs, root


@pytest.fixture(scope="module", params=["local", "server"])
def where(request, matrix_registry):
    catalog, blobs, root = matrix_registry
    if request.param == "local":
        return {"PACKAGER_REGISTRY": catalog, "PACKAGER_BLOBS": blobs}
    home = root / "server-home"
    home.mkdir(exist_ok=True)
    (home / "tokens").write_text(f"{ADMIN} admin name=ci\n")
    url, stop = start_registry_server(home, home / "tokens", blobs=blobs, env={"PACKAGER_REGISTRY": catalog})
    request.addfinalizer(stop)
    return {"PACKAGER_REGISTRY": url, "PACKAGER_BLOBS": "", "PACKAGER_TOKEN": ADMIN}


@pytest.mark.parametrize("state", list(EXPECTED))
def test_pull_policy_matrix(where, state, tmp_path):
    for policy, accepted in EXPECTED[state].items():
        out = tmp_path / f"{policy}-out"
        env = {**env_for(tmp_path / "home"), **where}
        code, _, err = packager("pull", f"m@{VERSIONS[state]}", "-o", str(out), "--verify", policy, env=env)
        if accepted:
            assert code == 0, (state, policy, err)
            assert (out / "model.onnx").is_file() and (out / "model.sig").is_file() == (state != "unsigned")
        else:
            assert code == 12, (state, policy, err)
            assert REASONS[state] in err and not out.exists(), (state, policy, err)
    # the policy from the environment, and the default (if-signed)
    env = {**env_for(tmp_path / "home"), **where, "PACKAGER_VERIFY": "required"}
    assert (packager("pull", f"m@{VERSIONS[state]}", "-o", str(tmp_path / "env-out"), env=env)[0] == 0) == EXPECTED[state]["required"]
    env["PACKAGER_VERIFY"] = ""
    assert (packager("pull", f"m@{VERSIONS[state]}", "-o", str(tmp_path / "default-out"), env=env)[0] == 0) == EXPECTED[state]["if-signed"]


@pytest.mark.parametrize("state", list(EXPECTED))
def test_predict_policy_matrix(where, state, tmp_path, fixtures, package_dirs):
    import onnxruntime as ort

    sample = np.load(fixtures["mlp"].sample)
    for policy, accepted in EXPECTED[state].items():
        out = tmp_path / f"{policy}.npy"
        env = {**env_for(tmp_path / f"home-{policy}"), **where}
        code, _, err = packager("predict", f"m@{VERSIONS[state]}", fixtures["mlp"].sample, "-o", str(out), "--output", "probabilities",
                                "--verify", policy, env=env)
        if not accepted:
            assert code == 12 and REASONS[state] in err and not out.exists(), (state, policy, err)
            continue
        assert code == 0, (state, policy, err)
        # what ran is what the registry served: the int8 model for the tampered version (policy off), else the ONNX one
        served = package_dirs["int8" if state == "tampered" else "onnx"] / "model.onnx"
        session = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"])
        expected = session.run(["probabilities"], {session.get_inputs()[0].name: sample.astype(np.float32)})[0]
        got = np.load(out, allow_pickle=False)
        assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-6), (state, policy, np.abs(got - expected).max())
    if state == "tampered":  # the int8 model really differs: the comparison above could tell the two apart
        onnx = ort.InferenceSession(str(package_dirs["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"])
        other = onnx.run(["probabilities"], {onnx.get_inputs()[0].name: sample.astype(np.float32)})[0]
        assert not np.allclose(other, expected, atol=1e-6)


# ------------------------------------------------------------------ promotion rules, signed-only servers
def test_protected_alias_takes_only_validated_versions_signed_by_a_trusted_key(tmp_path, package_dirs, keys):
    (alice, alice_pub), (bob, _) = keys["alice"], keys["bob"]
    env = env_for(tmp_path / "home", f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))
    packager("push", str(package_dirs["onnx"]), "--name", "p", env=env)
    packager("push", str(package_dirs["onnx"]), "--name", "p", "--sign-key", str(bob), env=env)
    packager("trust", "add", str(alice_pub), "--name", "alice", env=env)
    assert packager("alias", "protect", "p", "production", "--require", "validated,signed", env=env)[0] == 0
    code, _, err = packager("alias", "set", "p@1", "production", env=env)
    assert code == 12 and "PromotionRefused" in err and "not signed by a trusted key" in err
    code, _, err = packager("alias", "set", "p@2", "production", env=env)  # signed, by a key nobody trusts
    assert code == 12 and "not signed by a trusted key" in err
    assert packager("sign", "p@1", "--key", str(alice), env=env)[0] == 0
    code, out, err = packager("alias", "set", "p@1", "production", "-m", "release 1", env=env)
    assert code == 0 and out.strip() == "p@production -> p@1", err
    code, _, err = packager("push", str(package_dirs["onnx"]), "--name", "p", "--alias", "production", env=env)
    assert code == 12 and "(new version)" in err
    assert [v["version"] for v in json.loads(packager("list", "p", "--json", env=env)[1])] == [2, 1]  # the refused push stored nothing
    rules = json.loads(packager("alias", "protect", "p", "production", "--require", "validated", "--json", env=env)[1])
    assert rules == {"production": ["validated"]}
    code, _, err = packager("alias", "protect", "p", "production", "--require", "reviewed", env=env)
    assert code == 2 and "unknown rule" in err


def test_server_with_require_signatures_refuses_unsigned_and_untrusted_pushes(tmp_path, package_dirs, keys):
    import subprocess
    import sys
    import time
    import urllib.request

    from packager.registry.remote import RemoteRegistry
    from packager.registry.signing import public_pem
    from tests.services import free_port

    (alice, alice_pub), (bob, _) = keys["alice"], keys["bob"]
    home = tmp_path / "server"
    home.mkdir()
    (home / "tokens").write_text(f"{ADMIN}\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "packager.cli", "serve", "--port", str(port), "--token-file", str(home / "tokens"), "--require-signatures"],
        env={**__import__("os").environ, "PACKAGER_HOME": str(home), "PACKAGER_REGISTRY": "", "PACKAGER_BLOBS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        remote = RemoteRegistry(url, token=ADMIN)
        remote.trust_add("alice", public_pem(alice_pub, private=False))
        env = env_for(tmp_path / "client", url, PACKAGER_TOKEN=ADMIN)
        code, _, err = packager("push", str(package_dirs["onnx"]), "--name", "s", env=env)
        assert code == 12 and "requires signed pushes" in err
        code, _, err = packager("push", str(package_dirs["onnx"]), "--name", "s", "--sign-key", str(bob), env=env)
        assert code == 12 and "not trusted" in err
        assert remote.list() == []
        code, out, err = packager("push", str(package_dirs["onnx"]), "--name", "s", "--sign-key", str(alice), env=env)
        assert code == 0, err
        assert remote.get("s@1").signature["signer"] == "alice"
        assert [r["actor"] for r in remote.audit_log("s")] == ["token-1"]
    finally:
        server.terminate()
        server.wait(timeout=10)


# ------------------------------------------------------------------ a catalog made by the previous release
def test_registry_made_by_main_8e0a379_migrates_keeps_everything_and_verifies(tmp_path, package_dirs):
    from packager.registry.backends import open_registry
    from packager.registry.catalog import schema_revision

    copy = tmp_path / "legacy"
    shutil.copytree(LEGACY, copy)
    catalog, blobs = f"sqlite:///{copy / 'catalog.db'}", str(copy / "objects")
    import sqlite3

    with sqlite3.connect(copy / "catalog.db") as db:  # what 8e0a379 left: revision 0001, two versions, two aliases
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
        before = db.execute("SELECT v.version, v.digest FROM versions v ORDER BY v.version").fetchall()
    registry = open_registry(catalog, blobs)
    assert schema_revision(registry.engine) == "0002"
    versions = registry.list("legacy-iris")
    assert [(v.version, v.digest) for v in reversed(versions)] == before
    assert {v.version: v.aliases for v in versions} == {2: ("production",), 1: ("staging",)}
    assert registry.get("legacy-iris@1").params == {"C": "1.0"} and registry.get("legacy-iris@2").parents == (versions[1].id,)
    history = registry.alias_history("legacy-iris")
    migrated = [("production", None, 2, "migration"), ("staging", None, 1, "migration")]
    assert [(e["alias"], e["from"], e["to"], e["actor"]) for e in history] == migrated
    env = env_for(tmp_path / "home", catalog, blobs)
    code, out, err = packager("verify", env=env)
    assert code == 0 and "all blobs verified" in out and "audit log: 0 records, chain intact" in out, err
    assert packager("pull", "legacy-iris@production", "-o", str(tmp_path / "pulled"), "--verify", "if-signed", env=env)[0] == 0
    assert packager("alias", "set", "legacy-iris@1", "production", env=env)[0] == 0
    assert packager("alias", "rollback", "legacy-iris", "production", env=env)[1].strip() == "legacy-iris@production -> legacy-iris@2"
    code, out, _ = packager("verify", "--json", env=env)
    assert code == 0 and {**json.loads(out)["audit"], "head": ""} == {"records": 2, "ok": True, "first_bad": None, "reason": "", "head": ""}


def test_a_file_model_signing_leaves_unhashed_is_still_refused(tmp_path, package_dirs, keys):
    """model-signing ignores .gitignore/.github/... by default: a .github/ file slipped into a signed version in the
    catalog passes its verifier, and our check refuses it (and OpenSSF's CLI is shown to accept it)."""
    from packager.registry.backends import open_registry
    from packager.registry.signing import public_pem

    (alice, alice_pub) = keys["alice"]
    catalog, blobs = f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")
    registry = open_registry(catalog, blobs)
    version = registry.push(package_dirs["onnx"], "g", sign_key=alice)
    registry.trust_add("alice", public_pem(alice_pub, private=False))
    manifest = next(f for f in version.files if f.path == "manifest.json")
    import sqlite3

    with sqlite3.connect(tmp_path / "catalog.db") as db:  # the attacker adds a file, pointing at a stored blob
        db.execute("INSERT INTO files VALUES (?, '.github/workflow.json', ?, ?, 'package')", (version.id, manifest.digest, manifest.size))
    off = registry.pull("g@1", tmp_path / "off", verify="off")
    assert (off / ".github" / "workflow.json").is_file()
    assert openssf_verify(off, alice_pub).returncode == 0  # the OpenSSF verifier does not see it
    code, _, err = packager("pull", "g@1", "-o", str(tmp_path / "out"), "--verify", "if-signed",
                            env=env_for(tmp_path / "home", catalog, blobs))
    assert code == 12 and ".github/workflow.json" in err and not (tmp_path / "out").exists()


def test_a_remote_push_records_the_packages_own_manifest_not_the_request_s_claim(tmp_path, package_dirs, keys):
    """redteam24: the server recorded the manifest the client sent beside the files, so a token claimed
    `validation: passed` for a package whose signed manifest.json says failed, and `alias protect --require
    validated,signed` let it into production. What is recorded now is the stored manifest.json."""
    import httpx

    from packager.registry.backends import open_registry
    from packager.registry.signing import sign_folder

    alice, alice_pub = keys["alice"]
    package = tmp_path / "failed"
    shutil.copytree(package_dirs["onnx"], package)
    honest = json.loads((package / "manifest.json").read_text())
    honest["validation"] = {**(honest.get("validation") or {}), "status": "failed"}
    (package / "manifest.json").write_text(json.dumps(honest))
    home = tmp_path / "server"
    home.mkdir()
    catalog, blobs = f"sqlite:///{home / 'catalog.db'}", str(home / "objects")
    env = env_for(tmp_path / "cli", catalog, blobs)
    assert packager("trust", "add", str(alice_pub), "--name", "alice", env=env)[0] == 0
    assert packager("push", str(package), "--name", "fraud", "--sign-key", str(alice), "--trust", env=env)[0] == 0
    assert packager("alias", "protect", "fraud", "production", "--require", "validated,signed", env=env)[0] == 0
    stored = open_registry(catalog, blobs).get("fraud@1")
    assert stored.validation == "failed"
    files = {f.path: {"digest": f.digest, "size": f.size, "role": f.role} for f in stored.files if f.role == "package"}
    claim = {**honest, "validation": {**honest["validation"], "status": "passed"}}
    body = {"name": "fraud", "manifest": claim, "files": files, "signature": sign_folder(package, alice).bundle}
    (home / "tokens").write_text("dev-secret write,alias names=fraud name=dev\n")
    url, stop = start_registry_server(home, home / "tokens", blobs=blobs, env={"PACKAGER_REGISTRY": catalog})
    try:
        with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": "Bearer dev-secret"}, timeout=120) as http:
            answer = http.post("/versions", json={**body, "aliases": ["production"]})
            assert answer.status_code == 409 and answer.json()["error"] == "PromotionRefused", answer.text
            assert "validation is failed" in answer.json()["message"]
            answer = http.post("/versions", json=body)  # recorded, but as what its files say
            assert answer.status_code == 200, answer.text
            assert answer.json()["validation"] == "failed" and answer.json()["manifest"] == honest
            answer = http.put("/models/fraud/aliases/production", json={"ref": "2"})
            assert answer.status_code == 409 and answer.json()["error"] == "PromotionRefused", answer.text
        assert "production" not in {a for v in open_registry(catalog, blobs).list("fraud") for a in v.aliases}
    finally:
        stop()


def test_a_trusted_key_s_signature_over_other_files_is_refused_not_shown_as_signed(tmp_path, package_dirs, keys):
    """redteam24: alice's signature of p@1, replayed onto p@2 (other files) through PUT /versions/{ref}/signature or a
    REST push, was stored unchecked, and show/list/REST/UI named alice as p@2's signer (pull refused it; a reader
    did not). Now a trusted key's signature must match the files it is stored with: 409, nothing stored."""
    import httpx

    from packager.registry.backends import open_registry

    (alice, alice_pub), (bob, _) = keys["alice"], keys["bob"]
    home = tmp_path / "server"
    home.mkdir()
    catalog, blobs = f"sqlite:///{home / 'catalog.db'}", str(home / "objects")
    env = env_for(tmp_path / "cli", catalog, blobs)
    assert packager("trust", "add", str(alice_pub), "--name", "alice", env=env)[0] == 0
    assert packager("push", str(package_dirs["onnx"]), "--name", "p", "--sign-key", str(alice), env=env)[0] == 0
    assert packager("push", str(package_dirs["int8"]), "--name", "p", env=env)[0] == 0
    registry = open_registry(catalog, blobs)
    replayed = registry.signature_bundle("p@1")
    files = {f.path: {"digest": f.digest, "size": f.size, "role": f.role} for f in registry.get("p@2").files if f.role == "package"}
    (home / "tokens").write_text("w-secret write name=dev\n")
    url, stop = start_registry_server(home, home / "tokens", blobs=blobs, env={"PACKAGER_REGISTRY": catalog})
    try:
        with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": "Bearer w-secret"}, timeout=120) as http:
            answer = http.put("/versions/p@2/signature", json={"bundle": replayed})
            assert answer.status_code == 409 and answer.json()["error"] == "SignatureRefused", answer.text
            assert "does not match the files" in answer.json()["message"]
            answer = http.post("/versions", json={"name": "p", "manifest": {"format": "onnx"}, "files": files, "signature": replayed})
            assert answer.status_code == 409 and answer.json()["error"] == "SignatureRefused", answer.text
            assert http.get("/versions/p@2").json()["signature"] is None
            assert [v["version"] for v in http.get("/models/p/versions").json()] == [2, 1]  # the refused push stored nothing
        code, out, _ = packager("show", "p@2", "--json", env=env)
        assert code == 0 and json.loads(out)["signature"] is None
        # an untrusted key's signature is still stored (unjudged: trust may come later), and shown without a signer
        assert packager("sign", "p@2", "--key", str(bob), env=env)[0] == 0
        assert json.loads(packager("show", "p@2", "--json", env=env)[1])["signature"]["signer"] is None
    finally:
        stop()


def test_deleting_the_version_an_alias_points_at_is_in_the_alias_history_and_rollback_skips_it(tmp_path, package_dirs):
    """redteam24: `delete` dropped the alias with its version but wrote no history event, so `alias history` still
    said production -> p@2 after p@2 and the alias were gone. Now the removal is an event (and an audit record), and
    rollback returns to the target before the deleted version."""
    env = env_for(tmp_path / "home", f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))
    for _ in range(2):
        assert packager("push", str(package_dirs["onnx"]), "--name", "p", env=env)[0] == 0
    for version in (1, 2):
        assert packager("alias", "set", f"p@{version}", "production", env=env)[0] == 0
    assert packager("delete", "p@2", env=env)[0] == 0
    events = json.loads(packager("alias", "history", "p", "production", "--json", env=env)[1])
    assert [(e["from"], e["to"]) for e in events] == [(None, 1), (1, 2), (2, None)] and events[-1]["message"] == "p@2 deleted"
    code, out, err = packager("alias", "rollback", "p", "production", env=env)
    assert code == 0 and out.strip() == "p@production -> p@1", err
    actions = [(r["action"], r["target"]) for r in json.loads(packager("audit", "--name", "p", "--json", env=env)[1])]
    assert actions[-3:] == [("delete", "p@2"), ("alias.remove", "p@production"), ("alias.set", "p@production")]
    assert packager("verify", env=env)[0] == 0  # the chain still holds


def test_a_rewritten_or_truncated_audit_chain_passes_alone_but_not_against_a_kept_head(tmp_path, package_dirs):
    """redteam24: with write access to the catalog, editing a record and recomputing every later hash, or deleting the
    newest records, leaves a chain that checks (inherent: nothing inside the database can tell). `packager verify`
    prints the head; `--anchor HEAD` kept elsewhere catches both (exit 12, naming the record)."""
    from sqlalchemy import text

    from packager.registry import audit
    from packager.registry.backends import open_registry

    catalog, blobs = f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")
    env = env_for(tmp_path / "home", catalog, blobs)
    for _ in range(2):
        assert packager("push", str(package_dirs["onnx"]), "--name", "p", env=env)[0] == 0
    assert packager("alias", "set", "p@2", "production", env=env)[0] == 0
    code, out, _ = packager("verify", env=env)
    head = out.split("head ")[1].split()[0]
    assert code == 0 and head.startswith("3:") and packager("verify", "--anchor", head, env=env)[0] == 0
    assert packager("alias", "set", "p@1", "production", env=env)[0] == 0  # a later record: the old head is still in the chain
    assert packager("verify", "--anchor", head, env=env)[0] == 0

    registry = open_registry(catalog, blobs)
    with registry.engine.begin() as db:  # who pushed p@1: rewritten, and every hash after it recomputed
        db.execute(text("UPDATE audit SET actor = 'someone-else' WHERE seq = 1"))
        prev = audit.GENESIS
        for r in db.execute(text("SELECT seq, time, actor, action, target, before, after FROM audit ORDER BY seq")).all():
            digest = audit.record_hash(r.seq, r.time, r.actor, r.action, r.target, r.before, r.after, prev)
            db.execute(text("UPDATE audit SET prev_hash = :p, hash = :h WHERE seq = :s"), {"p": prev, "h": digest, "s": r.seq})
            prev = digest
    assert packager("verify", env=env)[0] == 0  # inherent: alone, the rewritten chain checks
    code, _, err = packager("verify", "--anchor", head, env=env)
    assert code == 12 and "record 3 is not the anchored one" in err, err

    fresh = packager("verify", env=env)[1].split("head ")[1].split()[0]
    with registry.engine.begin() as db:  # the newest record (the move back to p@1) deleted
        db.execute(text("DELETE FROM audit WHERE seq = 4"))
    assert packager("verify", env=env)[0] == 0  # inherent: a shorter chain checks
    code, _, err = packager("verify", "--anchor", fresh, env=env)
    assert code == 12 and "record 4 (anchored) is missing" in err, err
    code, _, err = packager("verify", "--anchor", "4:nothex", env=env)
    assert code == 2 and "is not SEQ:HASH" in err
