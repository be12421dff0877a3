"""Package signatures in the OpenSSF model-signing format (``model_signing``, key-based: an elliptic-curve
PEM key pair; keyless Sigstore needs the network and is not offered).

A signature covers every file of the package folder except the signature file itself (``model.sig``, which
model-signing's own CLI also leaves out of what it hashes), so ``model_signing verify key PKG --signature
PKG/model.sig --public_key PUB.pem`` accepts a pulled package. The registry keeps the bundle beside the
version and writes it into every pulled folder; ``check`` applies a trust policy to a folder before it is
handed over.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from packager.errors import InputFileError, MissingDependency, SignatureRefused, UsageError

SIGNATURE_FILE = "model.sig"
POLICIES = ("required", "if-signed", "off")
DEFAULT_POLICY = "if-signed"


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    public_key: str  # PEM
    added: str = ""
    added_by: str = ""

    def to_dict(self, with_key: bool = False) -> dict[str, str]:
        data = {"name": self.name, "fingerprint": self.fingerprint, "added": self.added, "added_by": self.added_by}
        return {**data, "public_key": self.public_key} if with_key else data


@dataclass(frozen=True)
class Signature:
    bundle: str  # JSON text of the Sigstore bundle
    fingerprint: str

    @classmethod
    def from_bundle(cls, bundle: str) -> "Signature":
        try:
            hint = json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"]
        except (ValueError, KeyError, TypeError):
            raise InputFileError(
                "the signature is not a key-based model-signing bundle (no verificationMaterial.publicKey.hint)",
                "sign with `packager sign REF --key KEY.pem` or `model_signing sign key`",
            ) from None
        if not isinstance(hint, str) or len(hint) != 64:
            raise InputFileError("the signature's key hint is not a sha256 fingerprint", "re-sign the package")
        return cls(bundle, hint)


def policy_of(value: str | None) -> str:
    from packager import settings

    chosen = value or settings.verify_policy() or DEFAULT_POLICY
    if chosen not in POLICIES:
        raise UsageError(f"--verify {chosen!r} is not a policy", f"use one of {', '.join(POLICIES)} (or PACKAGER_VERIFY)")
    return chosen


def untrusted_backend_policy(registry: object, label: str, verify: str | None) -> None:
    """For a registry backend that keeps no signatures: ``required`` cannot be met, so it refuses (nothing is
    written); ``if-signed`` and ``off`` accept, as they accept an unsigned version."""
    if policy_of(verify) == "required":
        raise SignatureRefused(
            f"{label}: --verify required, and this registry backend ({type(registry).__name__}) keeps no signatures",
            "pull with --verify if-signed, or use a packager registry",
        )


def public_pem(key_file: str | Path, *, private: bool) -> str:
    """The public key (SubjectPublicKeyInfo PEM, exactly as model-signing hashes it for its key hint) of a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(key_file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the key ({exc.strerror})", "give a PEM key file") from None
    try:
        public: object = serialization.load_pem_private_key(data, None).public_key() if private else serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        kind = "private" if private else "public"
        raise InputFileError(
            f"{path} is not an unencrypted PEM {kind} key ({exc})",
            "make one with `openssl ecparam -name prime256v1 -genkey -noout -out key.pem` "
            "and `openssl ec -in key.pem -pubout -out pub.pem`",
        ) from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise InputFileError(
            f"{path}: model signing takes elliptic-curve keys (P-256, P-384, P-521)", "make a P-256 key with openssl ecparam"
        )
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_text(text: str) -> str:
    """A public key given as PEM text (the server's trust route), normalized as ``public_pem`` does."""
    with tempfile.TemporaryDirectory(prefix="packager-key-") as work:
        path = Path(work) / "public.pem"
        path.write_text(text)
        try:
            return public_pem(path, private=False)
        except InputFileError as exc:
            raise UsageError(exc.what.replace(str(path), "the public key"), exc.hint) from None


def fingerprint(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()


def _model_signing():
    """The model-signing package (its ``import`` also loads its certificate signer, which needs pyOpenSSL)."""
    try:
        import model_signing
    except ImportError as exc:
        raise MissingDependency(f"signing needs model-signing and pyOpenSSL ({exc})", "pip install 'packager[signing]'") from None
    return model_signing


def _hashing(folder: Path):
    hashing = _model_signing().hashing

    # the signature file is left out exactly as `model_signing sign key --signature PKG/model.sig` leaves it out,
    # and recorded in the signed manifest, so the verifier (ours or theirs) leaves it out too
    return hashing.Config().set_ignored_paths(paths=[folder / SIGNATURE_FILE])


def sign_folder(folder: Path, private_key: str | Path) -> Signature:
    """Sign every file of ``folder`` (except model.sig) with the PEM private key; the folder is not changed."""
    signing = _model_signing().signing
    public_pem(private_key, private=True)  # a readable, supported key: said before model-signing's own error
    with tempfile.TemporaryDirectory(prefix="packager-sign-") as work:
        out = Path(work) / SIGNATURE_FILE
        config = signing.Config().use_elliptic_key_signer(private_key=Path(private_key))
        config.set_hashing_config(_hashing(folder)).sign(folder, out)
        return Signature.from_bundle(out.read_text())


def verify_folder(folder: Path, signature_path: Path, public_key_pem: str) -> str | None:
    """None when the signature at ``signature_path`` verifies ``folder`` with this key, else model-signing's reason."""
    verifying = _model_signing().verifying
    with tempfile.TemporaryDirectory(prefix="packager-verify-") as work:
        key_file = Path(work) / "key.pem"
        key_file.write_text(public_key_pem)
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=key_file).verify(folder, signature_path)
        except Exception as exc:  # model-signing raises ValueError, and protobuf/cryptography errors on a damaged bundle
            return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return None


def _unsigned_files(folder: Path, signature: Signature) -> str | None:
    """model-signing leaves .git, .github, .gitignore and .gitattributes out of what it hashes, so a file by such a
    name could be added to a signed folder unseen; here every file but model.sig must be one the signature names
    (read from the payload only after the library verified it)."""
    import base64

    try:
        payload = json.loads(base64.b64decode(json.loads(signature.bundle)["dsseEnvelope"]["payload"]))
        signed = {r["name"] for r in payload["predicate"]["resources"]}
    except (ValueError, KeyError, TypeError):
        return "the signed payload does not list the files"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()} - {SIGNATURE_FILE}
    extra = sorted(present - signed)
    return f"files the signature does not cover: {', '.join(extra[:5])}" if extra else None


def check(folder: Path, label: str, policy: str, trusted: Iterable[TrustedKey]) -> str:
    """Apply ``policy`` to a package folder (its signature, if any, at ``folder/model.sig``).

    Returns what was established ("signed by alice", "unsigned", "not checked"); raises SignatureRefused
    when the policy refuses: ``required`` refuses an unsigned folder, both ``required`` and ``if-signed``
    refuse a signature made by a key that is not trusted or one that does not match the files."""
    if policy == "off":
        return "not checked"
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        if policy == "required":
            raise SignatureRefused(
                f"{label} is not signed and --verify required accepts only versions signed by a trusted key",
                "sign it with `packager sign REF --key KEY.pem`, or pull with --verify if-signed",
            )
        return "unsigned"
    signature = Signature.from_bundle(path.read_text())
    key = next((k for k in trusted if k.fingerprint == signature.fingerprint), None)
    if key is None:
        raise SignatureRefused(
            f"{label} is signed by key {signature.fingerprint[:16]}…, which is not trusted by this registry",
            "trust the signer's public key with `packager trust add PUB.pem --name NAME`, or pull with --verify off",
        )
    problem = verify_folder(folder, path, key.public_key) or _unsigned_files(folder, signature)
    if problem:
        raise SignatureRefused(
            f"{label}: the signature by {key.name} does not match the files ({problem})",
            "the package was changed after it was signed; do not deploy it, re-push it from a trusted copy",
        )
    return f"signed by {key.name}"
