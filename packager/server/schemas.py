"""The REST API's request and response bodies (pydantic), so ``/api/v1/openapi.json`` says exactly what
the server accepts and returns, and a malformed body is a 422 with the field at fault, never a 500.

The patterns repeat the registry's own rules (``packager.registry.refs``) so a client can check a body
before sending it; the registry checks again (it also serves the CLI and the Python API).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ALIAS = r"^[A-Za-z][A-Za-z0-9._-]{0,63}$"
KEY = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}$"
DIGEST = r"^[0-9a-f]{64}$"
_SELECTOR = r"@([0-9]{1,9}|[A-Za-z][A-Za-z0-9._-]{0,63}|sha256:[0-9a-f]{64})"
REF = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}({_SELECTOR})?$"  # a version id (uuid) reads as a name too
REF_WITH_SELECTOR = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}{_SELECTOR}$"
_SEGMENT = r"([^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]*|\.[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]*|\.\.[^/\\\x00-\x1f\x7f]+)"
FILE_PATH = rf"^{_SEGMENT}(/{_SEGMENT})*$"  # relative, '/'-separated, no '.' or '..' segment, no backslash or control character
MAX_BIGINT = 2**53 - 1
MAX_BUNDLE = (
    1 << 16
)  # a key-based bundle holds a manifest of file digests: ~1 KB for a 5-file package  # exact in a JSON number (a double), and 8 PiB

Name = Annotated[str, Field(pattern=NAME, description="1-128 letters, digits, '.', '_' or '-'")]
Alias = Annotated[str, Field(pattern=ALIAS, description="a word such as production or staging")]
Key = Annotated[str, Field(pattern=KEY)]
Digest = Annotated[str, Field(pattern=DIGEST, description="sha256 of the content, lowercase hex")]
Text = Annotated[str, Field(max_length=4096, pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$", description="no control characters but tab")]
Ref = Annotated[str, Field(pattern=REF, max_length=300, description="name, name@3, name@production, name@sha256:<digest> or a version id")]
FilePath = Annotated[str, Field(pattern=FILE_PATH, max_length=512)]
Count = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
CLOSED: JsonDict = {"additionalProperties": False}  # a dict's keys must match its patternProperties, as the server checks


class ErrorBody(BaseModel):
    """Every error: the packager error class, what failed, and what to do."""

    error: str = Field(examples=["NotFound"])
    message: str
    hint: str | None = None


class StoredFile(BaseModel):
    digest: Digest
    size: Count
    role: Literal["package", "lineage"] = "package"


class FileEntry(StoredFile):
    path: str = Field(description="relative path inside the package")


class DataReference(BaseModel):
    uri: str = Field(min_length=1, max_length=1024)
    sha256: Digest | None = None
    size: Count | None = None
    rows: Count | None = None


class Lineage(BaseModel):
    """What a push captured (git, environment, ...); only ``data`` is indexed by the catalog."""

    model_config = ConfigDict(extra="allow")
    data: list[DataReference] = Field(default_factory=list)

    @field_validator("data")
    @classmethod
    def _unique_uris(cls, data: list[DataReference]) -> list[DataReference]:
        if len({d.uri for d in data}) != len(data):
            raise ValueError("each data URI appears once")
        return data


class Quantization(BaseModel):
    model_config = ConfigDict(extra="allow")
    applied: bool = False
    mode: Annotated[str, Field(max_length=32)] | None = None


class Validation(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Annotated[str, Field(max_length=48)] | None = None


class Manifest(BaseModel):
    """The package's ``manifest.json``; the catalog reads format, quantization and validation status from it."""

    model_config = ConfigDict(extra="allow")
    format: Annotated[str, Field(min_length=1, max_length=32)] = "unknown"
    quantization: Quantization | None = None
    validation: Validation | None = None


class NewVersion(BaseModel):
    """The second half of a push: every blob named in ``files`` is already uploaded."""

    name: Name
    manifest: Manifest
    files: dict[FilePath, StoredFile] = Field(
        min_length=1, max_length=100_000, json_schema_extra=CLOSED, description="path inside the package -> its blob"
    )
    lineage: Lineage = Field(default_factory=Lineage)
    params: dict[Key, Text | int | float | bool] = Field(default_factory=dict, json_schema_extra=CLOSED)
    metrics: dict[Key, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict, json_schema_extra=CLOSED)
    tags: dict[Key, Text] = Field(default_factory=dict, json_schema_extra=CLOSED)
    aliases: list[Alias] = Field(default_factory=list, max_length=100)
    description: Annotated[str, Field(max_length=100_000)] | None = None
    parents: list[Ref] = Field(default_factory=list, max_length=100)
    signature: Annotated[str, Field(max_length=MAX_BUNDLE)] | None = Field(
        default=None, description="a model-signing bundle (JSON text) over the package files; required by --require-signatures"
    )


class SignatureInfo(BaseModel):
    fingerprint: str = Field(description="sha256 of the signing key's public PEM (the bundle's key hint)")
    signer: str | None = Field(description="the trusted key with this fingerprint; null: not trusted")
    signed_at: str
    signed_by: str = Field(description="who stored the signature (token label or local user)")


class VersionSummary(BaseModel):
    ref: str
    id: str
    name: str
    version: int
    created: str
    digest: str
    format: str
    quantization: str | None
    validation: str | None
    size: int
    description: str | None
    aliases: list[str]
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    signature: SignatureInfo | None = None


class VersionDetail(VersionSummary):
    files: list[FileEntry]
    parents: list[str]
    lineage: dict[str, Any]
    manifest: dict[str, Any]


class LineageNode(BaseModel):
    ref: str
    version: int
    format: str
    quantization: str | None
    digest: str
    focus: bool = Field(description="the version that was asked about")
    children: list[LineageNode]


class AliasTarget(BaseModel):
    ref: str = Field(
        pattern=rf"^[0-9]{{1,9}}$|{REF_WITH_SELECTOR}",
        max_length=300,
        description="a version number, or name@version / @alias / @sha256:<digest> of this model",
    )
    message: Text | None = Field(default=None, description="why (kept in the alias history)")


class RollbackRequest(BaseModel):
    message: Text | None = None


class RulesChange(BaseModel):
    requires: list[Literal["validated", "signed"]] = Field(max_length=2, description="empty: remove the rules")


class AliasRules(BaseModel):
    rules: dict[str, list[str]]


class AliasHistoryEntry(BaseModel):
    id: int
    model: str
    alias: str
    time: str
    actor: str
    from_: int | None = Field(alias="from", serialization_alias="from")
    to: int | None
    message: str | None

    model_config = ConfigDict(populate_by_name=True)


class SignatureBody(BaseModel):
    bundle: str = Field(min_length=2, max_length=MAX_BUNDLE, description="the model-signing bundle (model.sig), JSON text")


class TrustedKeyBody(BaseModel):
    name: Name
    public_key: str = Field(min_length=1, max_length=16_384, description="PEM public key (elliptic curve P-256/P-384/P-521)")


class TrustedKeyInfo(BaseModel):
    name: str
    fingerprint: str
    added: str
    added_by: str
    public_key: str


class AuditEntry(BaseModel):
    seq: int
    time: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    prev_hash: str
    hash: str


class AuditCheck(BaseModel):
    records: int
    ok: bool
    first_bad: int | None
    reason: str
    head: str = Field(default="", description="SEQ:HASH of the newest record (keep it elsewhere: see `packager verify --anchor`)")


class TagChange(BaseModel):
    set: dict[Key, Text] = Field(default_factory=dict, json_schema_extra=CLOSED)
    remove: list[Key] = Field(default_factory=list)


class Digests(BaseModel):
    digests: list[Digest] = Field(max_length=100_000)


class Missing(BaseModel):
    missing: list[str]


class Uploaded(BaseModel):
    digest: str
    size: int


class Removed(BaseModel):
    removed: str


class GcReport(BaseModel):
    blobs_removed: int
    bytes_freed: int
    temp_files_removed: int


class Problem(BaseModel):
    ref: str
    path: str
    digest: str
    problem: Literal["missing", "corrupt"]
