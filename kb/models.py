"""Records of the store.

Two families live here:

* pydantic API models (``Step``, ``ExperienceCreate`` -> ``Experience``, ``SkillCreate`` -> ``Skill``,
  ``SearchHit``, ...) shared by the SDK, the CLI and the MCP server;
* SQLModel tables (``*Row``): the source of truth. A row keeps the full record as a JSON document plus
  the scalar columns that queries filter on, so the schema of nested fields can grow without a
  migration while filters stay indexed.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from kb import limits
from kb.config import settings
from kb.errors import Invalid

# -- limits ---------------------------------------------------------------------------------------
MAX_TEXT = 20_000
"""Characters in one text field (task, strategy, a skill's description...)."""
MAX_STEP_TEXT = settings().max_step_chars
"""Characters of a step's content, result or error, stored whole (``KB_MAX_STEP_CHARS``, 1 MB by
default): what is embedded or shown of it is a bounded excerpt (``kb.documents.excerpt``)."""
MAX_TRAJECTORY_TEXT = 32 * MAX_STEP_TEXT
"""Characters of all the steps of one experience together."""
MAX_STEPS = limits.STEPS
"""Steps in one experience (one definition: ``kb.limits``)."""
MAX_ITEMS = 200
"""Entries in a small list field (tags, plan, lessons)."""
MAX_BATCH = 10_000
"""Records in one ``add_experiences`` call."""
MAX_PROGRAM = 200_000
"""Characters of a skill program."""
MAX_DEPTH = limits.DEPTH
"""Nesting of JSON values (artifacts, arguments)."""

SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_PREFIXES = {"exp": "experience", "skl": "skill"}


def check_namespace(namespace: str) -> str:
    """The namespace, or a ``ValueError`` naming the rule (the one definition of it)."""
    if not NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"namespace {namespace!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return namespace


E = TypeVar("E", bound=StrEnum)


def choice(kind: type[E], value: str | E, field: str) -> E:
    """``value`` as a member of ``kind``, or ``Invalid`` naming the field and the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise Invalid(f"{field} must be one of {allowed}, not {value!r}") from None


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A sortable, collision-resistant id with a kind prefix (``exp_...``, ``skl_...``)."""
    stamp = f"{int(utcnow().timestamp() * 1000):012x}"
    return f"{prefix}_{stamp}{secrets.token_hex(5)}"


def kind_of(item_id: str) -> str | None:
    """The kind an id names (``experience`` or ``skill``), or None for a foreign id."""
    return ID_PREFIXES.get(item_id.split("_", 1)[0])


class Outcome(StrEnum):
    success = "success"
    failure = "failure"
    partial = "partial"
    unknown = "unknown"


class SkillStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    validated = "validated"
    broken = "broken"
    deprecated = "deprecated"


class SkillMode(StrEnum):
    executable = "executable"
    guided = "guided"


class Kind(StrEnum):
    experience = "experience"
    skill = "skill"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply a JSON value nests (stops counting past ``limit``)."""
    if limit < 0:
        return 0
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def _check_depth(value: Any, field: str) -> Any:
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"{field} nests deeper than {MAX_DEPTH} levels")
    return value


def _check_text(value: str | None, field: str, limit: int = MAX_TEXT) -> str | None:
    if value is not None and len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters; the limit is {limit}")
    return value


# -- experiences ----------------------------------------------------------------------------------
class Step(_Strict):
    """One entry of a step log: a message, a tool call, an observation, an error."""

    index: int = Field(ge=0, description="position in the log, 0-based")
    agent: str | None = Field(None, max_length=200, description="who acted (agent name or role)")
    role: str | None = Field(
        None, max_length=50, description="system | user | assistant | tool | ..."
    )
    kind: str = Field(
        "message", max_length=50, description="message | tool_call | observation | error | ..."
    )
    content: str | None = None
    tool: str | None = Field(None, max_length=200)
    args: dict[str, Any] | None = None
    result: str | None = None
    error: str | None = None
    timestamp: datetime | None = None
    duration: float | None = Field(None, ge=0)

    @field_validator("content", "result", "error")
    @classmethod
    def _limit(cls, value: str | None, info: Any) -> str | None:
        return _check_text(value, f"step.{info.field_name}", MAX_STEP_TEXT)

    @field_validator("args")
    @classmethod
    def _nesting(cls, value: Any) -> Any:
        return _check_depth(value, "step.args")


class Attribution(_Strict):
    """Which agent and step caused a failure, why, and how sure we are."""

    agent: str | None = None
    step: int | None = Field(None, ge=0, description="index into the experience's steps")
    reason: str = ""
    confidence: float = Field(0.0, ge=0, le=1)
    step_scores: list[float] = Field(default_factory=list)
    method: str = "label"
    corrected: str | None = Field(None, description="what the step should have been, when known")


class Provenance(_Strict):
    source: str = Field("sdk", description="who wrote it: sdk | cli | mcp | import | mined | ...")
    imported_from: str | None = None
    source_id: str | None = Field(None, description="the id the record had at its source")
    source_key: str | None = Field(
        None,
        description="what makes a write idempotent: the importer's key for the source record, a "
        "content hash, or the caller's idempotency key; unique in a namespace",
    )
    created_at: datetime = Field(default_factory=utcnow)


class ExperienceCreate(_Strict):
    """What a caller supplies to record an experience."""

    task: str = Field(min_length=1, description="what the agent was asked to do")
    agent: str | None = Field(None, max_length=200)
    domain: str | None = Field(None, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    outcome: Outcome = Outcome.unknown
    score: float | None = Field(None, ge=0, le=1)
    strategy: str | None = Field(None, description="the high-level plan or lesson, in prose")
    plan: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)
    final_answer: str | None = None
    ground_truth: str | None = None
    lessons: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    attribution: Attribution | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    gold_actions: list[dict[str, Any]] | None = Field(
        None, description="reference actions of the task when the source has them"
    )

    @field_validator("task", "strategy", "final_answer", "ground_truth")
    @classmethod
    def _limit(cls, value: str | None, info: Any) -> str | None:
        return _check_text(value, info.field_name)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for tag in value:
            tag = tag.strip()
            if not tag or len(tag) > 100:
                raise ValueError(f"tag {tag!r} must be 1 to 100 characters")
            if tag not in out:
                out.append(tag)
        return out

    @field_validator("artifacts", "gold_actions")
    @classmethod
    def _nesting(cls, value: Any, info: Any) -> Any:
        return _check_depth(value, info.field_name)

    @field_validator("plan", "lessons")
    @classmethod
    def _items(cls, value: list[str], info: Any) -> list[str]:
        for item in value:
            _check_text(item, f"{info.field_name} item")
        return value

    @model_validator(mode="before")
    @classmethod
    def _number_steps(cls, data: Any) -> Any:
        """Steps given as mappings without an ``index`` are numbered in order."""
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            steps = [
                {**step, "index": position}
                if isinstance(step, dict) and "index" not in step
                else step
                for position, step in enumerate(data["steps"])
            ]
            data = {**data, "steps": steps}
        return data

    @model_validator(mode="after")
    def _trajectory_size(self) -> ExperienceCreate:
        total = sum(
            len(s.content or "") + len(s.result or "") + len(s.error or "") for s in self.steps
        )
        if total > MAX_TRAJECTORY_TEXT:
            raise ValueError(
                f"the steps hold {total} characters; the limit for one trajectory is "
                f"{MAX_TRAJECTORY_TEXT} (split the run, or store large outputs as files)"
            )
        return self

    @model_validator(mode="after")
    def _steps_in_order(self) -> ExperienceCreate:
        for position, step in enumerate(self.steps):
            if step.index != position:
                raise ValueError(
                    f"steps[{position}].index is {step.index}; steps must be numbered 0, 1, 2, ..."
                )
        return self


def signature_of(steps: list[Step]) -> list[str]:
    """The structural signature (APEX-EM): the sequence of tools the agents called, in order.

    Observations (a tool's reply) repeat the tool of the call they answer and are left out.
    """
    return [step.tool for step in steps if step.tool and step.kind not in {"observation", "error"}]


class ExperienceUpdate(_Strict):
    """Fields of an experience that may be changed; omitted fields stay as they are."""

    agent: str | None = None
    domain: str | None = None
    tags: list[str] | None = None
    outcome: Outcome | None = None
    score: float | None = Field(None, ge=0, le=1)
    strategy: str | None = None
    plan: list[str] | None = None
    final_answer: str | None = None
    ground_truth: str | None = None
    lessons: list[str] | None = None
    artifacts: dict[str, Any] | None = None
    attribution: Attribution | None = None
    tracer_attribution: Attribution | None = None


class Distilled(_Strict):
    """Which of an experience's text fields distillation wrote (provenance ``distilled``), so that
    they are recomputed when the run's trace or repair changes and never taken for, or written over,
    human-written text."""

    source: Literal["distilled"] = "distilled"
    method: str = Field("offline", description="offline | llm:<model>")
    fields: list[str] = Field(
        default_factory=list, description="which of strategy, plan, lessons hold distilled text"
    )
    digest: str = Field("", description="hash of what was distilled (steps, trace, repairs)")
    repairs: list[str] = Field(default_factory=list, description="repaired_by runs it used")
    at: datetime = Field(default_factory=utcnow)


class Experience(ExperienceCreate):
    """A stored experience."""

    id: str
    namespace: str
    signature: list[str] = Field(default_factory=list)
    count: int = Field(
        1, description="how many near-identical experiences were merged into this one"
    )
    merged_ids: list[str] = Field(default_factory=list)
    merged_into: str | None = Field(
        None, description="set when admission control folded this record into another one"
    )
    uses: int = 0
    successes: int = 0
    failures: int = 0
    tracer_attribution: Attribution | None = Field(
        None, description="the tracer's attribution, kept beside a human label in `attribution`"
    )
    distilled: Distilled | None = Field(
        None, description="provenance of distilled strategy/plan/lessons (None: none distilled)"
    )
    version: int = Field(1, ge=1, description="1, then one more per update (see kb history)")
    deleted_at: datetime | None = Field(None, description="set while the record is tombstoned")
    updated_at: datetime = Field(default_factory=utcnow)


# -- skills ---------------------------------------------------------------------------------------
class SkillTest(_Strict):
    """One test case: run with ``params`` and compare with ``expect`` (equality) if given."""

    name: str = "test"
    params: dict[str, Any] = Field(default_factory=dict)
    expect: Any = None
    expect_error: bool = False


class SkillCreate(_Strict):
    """What a caller supplies to add a skill."""

    name: str = Field(description="Agent Skills slug: lowercase letters, digits, single hyphens")
    description: str = Field(min_length=1, max_length=MAX_TEXT)
    version: int = Field(1, ge=1)
    scope: str | None = Field(None, max_length=MAX_TEXT, description="when to use it, when not")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the parameters",
    )
    returns: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the result")
    steps: list[str] = Field(default_factory=list, max_length=MAX_ITEMS, description="guidance")
    program: str | None = Field(
        None, max_length=MAX_PROGRAM, description="Python source with run(**params)"
    )
    mode: SkillMode | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    tests: list[SkillTest] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    domain: str | None = None
    status: SkillStatus = SkillStatus.draft
    provenance: Provenance = Field(default_factory=Provenance)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if len(value) > 64 or not SLUG_RE.match(value):
            raise ValueError(
                f"name {value!r} is not a valid skill name: use 1 to 64 lowercase letters, digits "
                "and single hyphens, not starting or ending with a hyphen"
            )
        return value

    @model_validator(mode="after")
    def _mode(self) -> SkillCreate:
        if self.mode is None:
            self.mode = SkillMode.executable if self.program else SkillMode.guided
        if self.mode == SkillMode.executable and not self.program:
            raise ValueError("mode is executable but no program was given")
        return self


class Skill(SkillCreate):
    """A stored skill (one version of it)."""

    id: str
    namespace: str
    uses: int = 0
    successes: int = 0
    failures: int = 0
    latest: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.uses if self.uses else None


# -- graph, events, search ------------------------------------------------------------------------
EdgeKind = Literal[
    "derived_from",
    "depends_on",
    "supersedes",
    "repaired_by",
    "merged_into",
    "similar_to",
    "uses_tool",
]


class Edge(_Strict):
    src: str
    dst: str
    kind: str
    weight: float = 1.0


class SignalScore(BaseModel):
    """What one retrieval signal said about a hit."""

    rank: int
    score: float
    contribution: float = 0.0
    """What this signal added to the hit's fused score (its weight times its normalised score)."""


class SearchHit(BaseModel):
    """One search result, with the contribution of every signal that found it."""

    id: str
    kind: Kind
    score: float
    title: str
    snippet: str = ""
    outcome: Outcome | None = None
    status: SkillStatus | None = None
    signals: dict[str, SignalScore] = Field(default_factory=dict)
    attribution: Attribution | None = None
    provenance: Provenance | None = None
    record: dict[str, Any] | None = None
    duplicates: list[str] = Field(
        default_factory=list,
        description="ids of near-duplicates of this hit that were collapsed into it",
    )


class ImportReport(BaseModel):
    """What an import of one file did: ids added, merged, left unchanged (already stored) and
    updated (new versions), and each record skipped with the reason."""

    path: str
    format: str
    added: list[str] = Field(default_factory=list)
    merged: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    skipped: list[dict[str, str]] = Field(default_factory=list)
    edges: int = 0


class ExportReport(BaseModel):
    """What an export wrote: the file or folder, its format and the counts."""

    path: str
    format: str
    experiences: int = 0
    skills: int = 0
    edges: int = 0
    events: int = 0
    pairs: int = 0


class Stats(BaseModel):
    path: str
    namespace: str
    experiences: int
    experiences_by_outcome: dict[str, int]
    skills: int
    skills_by_status: dict[str, int]
    edges: int
    events: int
    tombstoned: int = 0
    indexed: int
    pending_index: int
    model: str | None
    dim: int | None
    schema_version: int


# -- SQL tables -----------------------------------------------------------------------------------
class ExperienceRow(SQLModel, table=True):
    """The latest content of an experience; identity is (namespace, id)."""

    __tablename__ = "experiences"
    __table_args__ = (
        Index("ix_exp_ns_outcome", "namespace", "outcome"),
        Index("ix_exp_ns_source_key", "namespace", "source_key", unique=True),
    )

    namespace: str = SQLField(primary_key=True)
    id: str = SQLField(primary_key=True)
    task: str
    domain: str | None = SQLField(default=None, index=True)
    outcome: str
    source_id: str | None = SQLField(default=None, index=True)
    source_key: str | None = None
    version: int = 1
    deleted_at: datetime | None = SQLField(default=None, index=True)
    data: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow, index=True)
    updated_at: datetime = SQLField(default_factory=utcnow)
    indexed: bool = SQLField(default=False, index=True)


class ExperienceVersionRow(SQLModel, table=True):
    """An earlier content of an experience, kept when an update replaced it."""

    __tablename__ = "experience_versions"

    namespace: str = SQLField(primary_key=True)
    id: str = SQLField(primary_key=True)
    version: int = SQLField(primary_key=True)
    data: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow)


class SkillRow(SQLModel, table=True):
    """One version of a skill; identity is (namespace, id)."""

    __tablename__ = "skills"
    __table_args__ = (
        Index("ix_skill_ns_name_version", "namespace", "name", "version", unique=True),
    )

    namespace: str = SQLField(primary_key=True)
    id: str = SQLField(primary_key=True)
    name: str
    version: int
    status: str
    latest: bool = SQLField(default=True, index=True)
    data: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow)
    updated_at: datetime = SQLField(default_factory=utcnow)
    indexed: bool = SQLField(default=False, index=True)


class SkillFileRow(SQLModel, table=True):
    """A file of a skill version's package (SKILL.md verbatim, scripts, references, assets...)."""

    __tablename__ = "skill_files"

    namespace: str = SQLField(primary_key=True)
    skill_id: str = SQLField(primary_key=True)
    path: str = SQLField(primary_key=True)
    data: bytes = SQLField(sa_column=Column(LargeBinary, nullable=False))
    mode: int = 0o644
    sha256: str


class EdgeRow(SQLModel, table=True):
    __tablename__ = "edges"
    __table_args__ = (Index("ix_edge_unique", "namespace", "src", "dst", "kind", unique=True),)

    id: int | None = SQLField(default=None, primary_key=True)
    namespace: str = SQLField(index=True)
    src: str = SQLField(index=True)
    dst: str = SQLField(index=True)
    kind: str
    weight: float = 1.0
    created_at: datetime = SQLField(default_factory=utcnow)


class EventRow(SQLModel, table=True):
    """A usage or feedback event on an item."""

    __tablename__ = "events"

    id: int | None = SQLField(default=None, primary_key=True)
    namespace: str = SQLField(index=True)
    item_id: str = SQLField(index=True)
    kind: str
    success: bool | None = None
    detail: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow)


class ValidationRunRow(SQLModel, table=True):
    __tablename__ = "validation_runs"

    id: int | None = SQLField(default=None, primary_key=True)
    namespace: str = SQLField(index=True)
    skill_id: str = SQLField(index=True)
    test_name: str
    passed: bool
    duration: float
    data: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow)


class EmbeddingRow(SQLModel, table=True):
    """Content-hash cache of embeddings, so that nothing is embedded twice."""

    __tablename__ = "embedding_cache"

    key: str = SQLField(primary_key=True, description="sha256 of model name and text")
    vector: bytes = SQLField(sa_column=Column(LargeBinary, nullable=False))


class TokenRow(SQLModel, table=True):
    """An API token for the HTTP server, stored hashed and bound to one namespace."""

    __tablename__ = "tokens"

    id: str = SQLField(primary_key=True)
    namespace: str
    name: str
    hash: str = SQLField(index=True, unique=True)
    created_at: datetime = SQLField(default_factory=utcnow)
    revoked: bool = False


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"

    key: str = SQLField(primary_key=True)
    value: str


class GateSessionRow(SQLModel, table=True):
    """A gated agent run (session risk memory): its state after the latest check; identity is
    (namespace, run_id). Expires at ``expires_at``."""

    __tablename__ = "gate_sessions"

    namespace: str = SQLField(primary_key=True)
    run_id: str = SQLField(primary_key=True)
    role: str | None = None
    task: str | None = None
    seq: int = 0
    state: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    corpus: str = ""
    created_at: datetime = SQLField(default_factory=utcnow)
    updated_at: datetime = SQLField(default_factory=utcnow)
    expires_at: datetime = SQLField(default_factory=utcnow, index=True)


class GateDecisionRow(SQLModel, table=True):
    """One check of a gated session: the action, the decision, its reasons and evidence."""

    __tablename__ = "gate_decisions"
    __table_args__ = (Index("ix_gate_decision_run", "namespace", "run_id", "seq"),)

    id: int | None = SQLField(default=None, primary_key=True)
    namespace: str
    run_id: str
    seq: int
    tool: str
    decision: str
    risk: float
    session_risk: float
    data: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(default_factory=utcnow)


class GatePolicyRow(SQLModel, table=True):
    """The gate policy of a namespace (thresholds, deny lists, role profiles)."""

    __tablename__ = "gate_policies"

    namespace: str = SQLField(primary_key=True)
    data: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = SQLField(default_factory=utcnow)
