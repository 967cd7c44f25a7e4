"""The skill library of one namespace: versions, validation, runs, SKILL.md packages, mining from
experiences, merging and pruning. The mechanics live in the pure ``skills`` library; this module
stores what they produce."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ValidationError

import skills
from kb.errors import Conflict, Invalid, NotFound, SandboxError
from kb.importers import describe
from kb.limits import check_record
from kb.models import (
    Edge,
    ExportReport,
    Outcome,
    Provenance,
    SearchHit,
    Skill,
    SkillCreate,
    SkillMode,
    SkillStatus,
    Step,
    kind_of,
    new_id,
    utcnow,
)
from kb.retrieval import Mode, skill_statuses
from kb.services import Service, coerce
from kb.services.experiences import Experiences
from kb.services.search import Search
from kb.store import Progress, Store
from kb.stores.records import Session

if TYPE_CHECKING:  # the facade hands the gate in; typing only, no import at run time
    from kb.services.gate import Gate

IMPORT_BATCH = 64
"""Packages written per batch by ``import_packages`` (one embedding call and one commit each)."""


@dataclass
class _ImportBatch:
    """Imported packages waiting for one write."""

    versions: list[Skill] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)
    """Skill name -> the package path it came from (each name once a batch)."""


# the statuses a curator has vouched for: the only ones an agent may run
RUNNABLE = frozenset({SkillStatus.validated, SkillStatus.approved})


class GateVerdict(BaseModel):
    """What the pre-execution gate said about a run (for agents' runs)."""

    run_id: str
    decision: str
    risk: float
    session_risk: float
    reasons: list[str] = []


class SkillRun(BaseModel):
    """One run of a skill: which version ran and how it ended (see ``skills.RunResult``)."""

    skill: str
    version: int
    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    killed_by: str | None = None
    isolated: bool = False
    network_isolated: bool = False
    gate: GateVerdict | None = None


class SkillFile(BaseModel):
    """A file of a skill's package, as listed."""

    path: str
    size: int
    mode: int
    sha256: str
    mime: str


class SkillFileContent(BaseModel):
    """A file of a skill's package with its bytes."""

    path: str
    data: bytes
    mode: int
    mime: str


class SkillVersion(BaseModel):
    """One version of a skill in its history, with its validation runs."""

    id: str
    version: int
    status: SkillStatus
    latest: bool
    created_at: str
    uses: int
    successes: int
    failures: int
    validations: list[dict[str, Any]]


class ValidationReport(BaseModel):
    """The outcome of ``validate_skill``: each test, and the status before and after."""

    name: str
    version: int
    previous_status: str
    status: str
    passed: int
    failed: int
    outcomes: list[dict[str, Any]]


class SkillImportReport(BaseModel):
    """What ``import_skills`` did: ids added and new versions, names approved or validated,
    and each package skipped or left a draft, with the reason."""

    path: str
    added: list[str] = []
    versions: list[str] = []
    approved: list[str] = []
    validated: list[str] = []
    unchanged: list[str] = []
    not_validated: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []


class CurationAction(BaseModel):
    """One thing mine, merge or prune did (or would do, with ``dry_run``)."""

    action: str
    name: str
    id: str | None = None
    detail: str = ""
    support: int | None = None
    sources: list[str] = []


def _calls_with_results(steps: list[Step]) -> list[dict[str, Any]]:
    """Tool-call steps, each with the result of the observation that answered it (mining binds
    arguments to values that earlier results produced)."""
    calls: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    for step in steps:
        if not step.tool:
            continue
        if step.kind in {"observation", "error"}:
            call = pending.pop(step.tool, None)
            if call is not None:
                call["result"] = step.result or step.error
            continue
        call = step.model_dump(mode="json")
        calls.append(call)
        pending[step.tool] = call
    return calls


SKILL_MD = "SKILL.md"


def _mime(path: str) -> str:
    if path.endswith(".md"):
        return "text/markdown"
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def _plain(skill: Skill) -> dict[str, Any]:
    return skill.model_dump(mode="json")


class Skills(Service):
    """The skill library of one namespace: versions, lifecycle, runs, packages, curation."""

    def __init__(
        self,
        store: Store,
        namespace: str,
        search: Search,
        experiences: Experiences,
        *,
        gate: Gate | None = None,
    ):
        super().__init__(store, namespace)
        self.search_service = search
        self.experiences = experiences
        self.gate = gate

    # -- records --------------------------------------------------------------------------------
    def add(
        self, skill: SkillCreate | Mapping[str, Any], *, files: list[dict[str, Any]] | None = None
    ) -> Skill:
        """Add a new skill (version 1 unless given), with its package ``files`` (``path``,
        ``data``, ``mode``: SKILL.md verbatim and every other file) when it came as a package.
        A name that exists is a conflict."""
        return self.add_many([skill], files=[files])[0]

    def add_many(
        self,
        batch: Sequence[SkillCreate | Mapping[str, Any]],
        *,
        files: Sequence[list[dict[str, Any]] | None] | None = None,
    ) -> list[Skill]:
        """Add new skills in one write: one embedding batch, one transaction, one index commit.
        All or nothing: any invalid skill or existing name fails the whole batch."""
        stored = [self._new(self._checked(skill)) for skill in batch]
        names = [s.name for s in stored]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise Conflict(f"skills {repeated} appear more than once in one batch")
        taken = [n for n in names if self.records.skill_versions(n)]
        if taken:
            raise Conflict(
                f"skill {taken[0]!r} already exists in namespace {self.namespace!r}; "
                "update it to make a new version"
            )
        packaged = {
            s.id: f for s, f in zip(stored, files or [None] * len(stored), strict=True) if f
        }
        self._commit(stored, files=packaged or None)
        return stored

    def _checked(self, skill: SkillCreate | Mapping[str, Any]) -> SkillCreate:
        check_record(
            skill.model_dump(mode="json") if isinstance(skill, BaseModel) else skill,
            what="the skill",
        )
        return coerce(SkillCreate, skill, "skill")

    def _new(self, data: SkillCreate) -> Skill:
        return Skill(**data.model_dump(), id=new_id("skl"), namespace=self.namespace)

    def get(self, name: str, version: int | None = None) -> Skill:
        """A skill by name (latest version unless ``version``) or by id."""
        if kind_of(name) == "skill":
            found = self.records.get_skills([name])
            if name in found:
                return found[name]
            raise NotFound(f"no skill {name!r} in namespace {self.namespace!r}")
        versions = self.records.skill_versions(name)
        if not versions:
            raise NotFound(f"no skill named {name!r} in namespace {self.namespace!r}")
        if version is None:
            return next((v for v in versions if v.latest), versions[-1])
        for candidate in versions:
            if candidate.version == version:
                return candidate
        raise NotFound(
            f"skill {name!r} has no version {version}; versions: {[v.version for v in versions]}"
        )

    def all(
        self,
        *,
        status: SkillStatus | str | None = None,
        all_versions: bool = False,
        limit: int = 1000,
    ) -> list[Skill]:
        """Skills (latest versions unless ``all_versions``), by name."""
        if status is not None:
            skill_statuses(status=[str(status)])  # a clear error for an unknown status
        return self.records.list_skills(
            status=str(status) if status else None, all_versions=all_versions, limit=limit
        )

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        include_drafts: bool = False,
        status: list[str] | None = None,
        **filters: Any,
    ) -> list[SearchHit]:
        """Skills for a task: validated and approved by default (validated first)."""
        return self.search_service.search(
            query,
            k,
            kind="skill",
            mode=mode,
            include_drafts=include_drafts,
            status=status,
            **filters,
        )

    # -- versions -------------------------------------------------------------------------------
    def propose(self, skill: SkillCreate | Mapping[str, Any]) -> Skill:
        """Add a skill proposed by an agent: it always lands as a draft for curation."""
        data = dict(skill.model_dump() if isinstance(skill, BaseModel) else skill)
        data["status"] = SkillStatus.draft.value
        data.setdefault("provenance", {"source": "proposed"})
        return self.add(data)

    def update(
        self,
        name: str,
        changes: Mapping[str, Any],
        *,
        files: list[dict[str, Any]] | None = None,
    ) -> Skill:
        """Make a new version of a skill with ``changes``; the old version stays retrievable.

        The new version is a draft again and ``supersedes`` the previous one.
        """
        old, new, edge, carried = self._next_version(name, changes, files)
        self._commit([old, new], edges=[edge], files={new.id: carried})
        return new

    def _next_version(
        self, name: str, changes: Mapping[str, Any], files: list[dict[str, Any]] | None
    ) -> tuple[Skill, Skill, Edge, list[dict[str, Any]]]:
        """What :meth:`update` writes: the old version (no longer latest), the new one, the
        ``supersedes`` edge and the new version's package files."""
        if "name" in changes and changes["name"] != name:
            raise Invalid("name cannot change; add a new skill instead")
        current = self.get(name)
        if current.status == SkillStatus.deprecated:
            raise Conflict(f"skill {name!r} is deprecated; add a new skill instead")
        base = SkillCreate.model_validate(
            {k: v for k, v in _plain(current).items() if k in SkillCreate.model_fields}
        ).model_dump(mode="json")
        bumped = skills.bump_version({**base, **dict(changes)})
        if "mode" not in changes:
            bumped["mode"] = None  # re-derived from the (possibly changed) program
        try:
            data = SkillCreate.model_validate(bumped)
        except ValidationError as exc:
            raise Invalid(f"skill: {describe(exc)}") from exc
        new = Skill(**data.model_dump(), id=new_id("skl"), namespace=self.namespace)
        old = current.model_copy(update={"latest": False, "updated_at": utcnow()})
        edge = Edge(src=new.id, dst=old.id, kind="supersedes")
        # the package's files travel to the new version (SKILL.md's body stays the author's;
        # export updates only the front matter fields that changed)
        carried = files if files is not None else self.records.files(current.id)
        return old, new, edge, carried

    def history(self, name: str) -> list[SkillVersion]:
        """Every version of a skill, oldest first, with its validation runs."""
        versions = self.records.skill_versions(name)
        if not versions:
            self.get(name)  # raises NotFound
        history = []
        for skill in versions:
            runs = self.records.validation_runs(skill.id)
            history.append(
                SkillVersion.model_validate(
                    {
                        "id": skill.id,
                        "version": skill.version,
                        "status": skill.status.value,
                        "latest": skill.latest,
                        "created_at": skill.created_at.isoformat(),
                        "uses": skill.uses,
                        "successes": skill.successes,
                        "failures": skill.failures,
                        "validations": [
                            {
                                "test": r.test_name,
                                "passed": r.passed,
                                "duration": r.duration,
                                "at": r.created_at.isoformat(),
                            }
                            for r in runs
                        ],
                    }
                )
            )
        return history

    def _set_status(
        self,
        skill: Skill,
        status: SkillStatus,
        *,
        events: Sequence[tuple[str, str, dict[str, Any]]] = (),
        runs: Sequence[tuple[str, list[dict[str, Any]]]] = (),
    ) -> Skill:
        changed = skill.model_copy(update={"status": status, "updated_at": utcnow()})
        self._commit([changed], events=events, runs=runs)
        return changed

    def _commit(
        self,
        versions: Sequence[Skill],
        *,
        edges: Sequence[Edge] = (),
        events: Sequence[tuple[str, str, dict[str, Any]]] = (),
        runs: Sequence[tuple[str, list[dict[str, Any]]]] = (),
        files: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """One transaction: skill versions (new or changed), edges, events ``(item, kind,
        detail)``, validation runs ``(skill id, outcomes)`` and package files ``{skill id:
        files}``; then the index."""

        def rest(session: Session) -> None:
            for skill_id, stored in (files or {}).items():
                self.records.put_files(session, skill_id, stored)
            if edges:
                self.records.put_edges(session, list(edges))
                self.store.bump_graph(session, self.namespace)
            for item_id, kind, detail in events:
                self.records.add_event(session, item_id, kind, detail)
            for skill_id, outcomes in runs:
                self.records.add_validation_runs(session, skill_id, outcomes)

        self.store.ready()
        self.store.write(list(versions), replace=True, before_commit=rest)

    # -- lifecycle ------------------------------------------------------------------------------
    def validate(
        self, name: str, *, version: int | None = None, limits: Any = None
    ) -> ValidationReport:
        """Run a skill's tests in the sandbox, store each run, and move its status:
        validated when all pass, broken when a validated skill fails."""
        skill = self.get(name, version)
        if skill.mode == SkillMode.guided:
            raise Invalid(f"skill {name!r} is guided (no program to test); approve it instead")
        if not skill.tests:
            raise Invalid(f"skill {name!r} has no tests; add tests to validate it")
        try:
            outcomes = skills.run_tests(_plain(skill), limits=limits, hidden=[self.store.path])
        except skills.SkillError as exc:
            raise SandboxError(str(exc)) from exc
        status = skills.next_status(
            skill.status.value, outcomes, mode=skill.mode.value if skill.mode else "executable"
        )
        runs = [(skill.id, [o.to_dict() for o in outcomes])]
        if status != skill.status.value:
            self._set_status(skill, SkillStatus(status), runs=runs)
        else:
            self._commit([], runs=runs)
        passed = sum(o.passed for o in outcomes)
        return ValidationReport(
            name=skill.name,
            version=skill.version,
            previous_status=skill.status.value,
            status=status,
            passed=passed,
            failed=len(outcomes) - passed,
            outcomes=[o.to_dict() for o in outcomes],
        )

    def approve(self, name: str) -> Skill:
        """A person approves a guided skill: draft -> approved."""
        skill = self.get(name)
        try:
            status = skills.approve(
                skill.status.value, skill.mode.value if skill.mode else "guided"
            )
        except skills.SkillError as exc:
            raise Invalid(str(exc)) from exc
        return self._set_status(skill, SkillStatus(status))

    def deprecate(self, name: str, *, reason: str = "deprecated by hand") -> Skill:
        """Retire a skill (never deleted): it drops out of default retrieval."""
        skill = self.get(name)
        event = (skill.id, "deprecated", {"reason": reason})
        return self._set_status(skill, SkillStatus.deprecated, events=[event])

    def run(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        limits: Any = None,
        untrusted: bool = False,
        run_id: str | None = None,
        role: str | None = None,
        task: str | None = None,
    ) -> SkillRun:
        """Run an executable skill in the sandbox (bubblewrap: no view of the store or the host,
        no network, time, memory, process, disk and output caps) and record the use.

        Args:
            untrusted: the caller is an agent (the MCP server sets it): only a validated or
                approved skill runs, with the default limits and never without isolation, and
                the pre-execution gate is asked first (a deny means the sandbox is not called).
            run_id, role, task: the agent run the call belongs to, for the gate's session (a
                run of its own when not given).

        Returns the run result (ok, value, error, traceback, duration, killed_by, gate, ...);
        the gate's decision is logged as a ``gate`` event on the skill.
        """
        skill = self.get(name, version)
        if untrusted and version is None and skill.status not in RUNNABLE:
            # an agent gets the newest version a curator vouched for, as search serves it
            curated = [v for v in self.records.skill_versions(skill.name) if v.status in RUNNABLE]
            skill = max(curated, key=lambda v: v.version) if curated else skill
        if skill.mode != SkillMode.executable or not skill.program:
            raise Invalid(f"skill {name!r} is guided: follow its steps, there is no program to run")
        if untrusted:
            if skill.status not in RUNNABLE:
                raise Invalid(
                    f"skill {skill.name!r} v{skill.version} is {skill.status.value}: only validated "
                    "or approved skills run here; a curator validates it first "
                    "(kb skill validate)"
                )
            limits = None
        verdict: GateVerdict | None = None
        if untrusted and self.gate is not None:
            checked = self.gate.check(
                run_id or new_id("run"),
                {"tool": skill.name, "args": dict(params or {})},
                role=role,
                task=task,
                schema=skill.parameters,
            )
            verdict = GateVerdict(
                run_id=checked.run_id,
                decision=checked.decision,
                risk=checked.risk,
                session_risk=checked.session_risk,
                reasons=[f"{r.signal}: {r.detail}" for r in checked.reasons],
            )
            if checked.decision == "deny":
                with self.store.transaction() as session:
                    self.records.add_event(session, skill.id, "gate", verdict.model_dump())
                top = verdict.reasons[0] if verdict.reasons else "session risk"
                return SkillRun(
                    skill=skill.name,
                    version=skill.version,
                    ok=False,
                    error=f"denied by the pre-execution gate ({top}); the program did not run",
                    error_type="GateDenied",
                    killed_by="gate",
                    gate=verdict,
                )
        try:
            result = skills.run_program(
                skill.program,
                dict(params or {}),
                parameters=skill.parameters,
                returns=skill.returns or None,
                limits=limits,
                hidden=[self.store.path],
            )
        except skills.ParamError as exc:
            raise Invalid(str(exc)) from exc
        except skills.SkillError as exc:
            raise SandboxError(str(exc)) from exc
        with self.store.transaction() as session:
            self.records.record_use(
                session,
                skill.id,
                success=result.ok,
                note=None if result.ok else (result.error or "")[:500],
            )
            if verdict is not None:
                self.records.add_event(session, skill.id, "gate", verdict.model_dump())
        return SkillRun(skill=skill.name, version=skill.version, gate=verdict, **result.to_dict())

    # -- packages -------------------------------------------------------------------------------
    def package(self, skill: Skill) -> dict[str, Any]:
        """The package keys of a stored version (``skill_md``, ``skill_md_mode``, ``resources``),
        or nothing for a skill that never came as a package."""
        stored = self.records.files(skill.id)
        md = next((f for f in stored if f["path"] == SKILL_MD), None)
        if md is None:
            return {}
        return {
            "skill_md": md["data"].decode("utf-8"),
            "skill_md_mode": md["mode"],
            "resources": [f for f in stored if f["path"] != SKILL_MD],
        }

    def _full(self, skill: Skill) -> dict[str, Any]:
        return {**_plain(skill), **self.package(skill)}

    def skill_md(self, name: str, version: int | None = None) -> str:
        """The skill as an Agent Skills ``SKILL.md`` document (the author's, verbatim, when the
        skill came as a package and is unchanged)."""
        return skills.to_skill_md(self._full(self.get(name, version)))

    def files(self, name: str, version: int | None = None) -> list[SkillFile]:
        """The files of a skill's package, SKILL.md first, with size, mode and MIME type."""
        return [
            SkillFile(
                path=f["path"],
                size=len(f["data"]),
                mode=f["mode"],
                sha256=f["sha256"],
                mime=_mime(f["path"]),
            )
            for f in skills.package_files(self._full(self.get(name, version)))
        ]

    def file(self, name: str, path: str, version: int | None = None) -> SkillFileContent:
        """One file of a skill's package, its bytes and MIME type."""
        for f in skills.package_files(self._full(self.get(name, version))):
            if f["path"] == path:
                return SkillFileContent(path=path, data=f["data"], mode=f["mode"], mime=_mime(path))
        raise NotFound(f"skill {name!r} has no file {path!r}; `kb skill show {name} --files`")

    def export(self, dest: str | Path) -> ExportReport:
        """Write the latest version of every skill as an Agent Skills package folder: a skill
        that came as a package is written back byte for byte (its changed fields only in the
        front matter and ``skill.json``)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        written = [str(skills.write_package(self._full(s), dest)) for s in self.all()]
        return ExportReport(path=str(dest), format="skills", skills=len(written))

    def import_packages(
        self,
        path: str | Path,
        *,
        approve: bool = False,
        validate: bool = False,
        limits: Any = None,
        progress: Progress | None = None,
    ) -> SkillImportReport:
        """Import every SKILL.md package under a folder (or in a .zip). A package whose name
        exists becomes a new version when its content differs; packages without a program
        become guided skills. Each rejected file is reported with the reason.

        Every package lands as a draft, whatever status it declares: ``approve`` (a curator's
        act) approves the guided ones, ``validate`` runs the executable ones' tests in the
        sandbox and validates those that pass."""
        path = Path(path)
        if not path.exists():
            raise Invalid(f"{path}: no such file or folder")
        found, rejected = skills.read_tree(path, files=True)
        report = SkillImportReport(
            path=str(path), skipped=[{"path": r.path, "error": r.reason} for r in rejected]
        )
        batch = _ImportBatch()
        for data in found:
            origin = (data.get("provenance") or {}).get("imported_from", str(path))
            package = {k: data.pop(k) for k in skills.PACKAGE_KEYS if k in data}
            report.warnings += [
                {"path": origin, "rule": w["rule"], "detail": w["detail"]}
                for w in package.get("warnings", [])
            ]
            data["status"] = SkillStatus.draft.value
            data["provenance"] = {**(data.get("provenance") or {}), "source": "import"}
            files = [
                {
                    "path": SKILL_MD,
                    "data": package["skill_md"].encode("utf-8"),
                    "mode": package["skill_md_mode"],
                },
                *(
                    {"path": r["path"], "data": r["data"], "mode": r["mode"]}
                    for r in package["resources"]
                ),
            ]
            if data.get("name") in batch.origins or len(batch.origins) >= IMPORT_BATCH:
                self._flush(batch, report, validate=validate, limits=limits)
                batch = _ImportBatch()
            if progress:
                progress(1)
            try:
                if self.records.skill_versions(data["name"]):
                    current = self.get(data["name"])
                    if skills.package_digest(self._full(current)) == package["digest"]:
                        report.unchanged.append(current.id)
                        continue
                    changes = {
                        k: v for k, v in data.items() if k not in {"name", "version", "status"}
                    }
                    old, stored, edge, carried = self._next_version(data["name"], changes, files)
                    before, edges, ids = [old], [edge], batch.updated
                else:
                    stored = self._new(self._checked(data))
                    before, edges, ids, carried = [], [], batch.added, files
            except (Invalid, Conflict) as exc:
                report.skipped.append({"path": origin, "error": str(exc)})
                continue
            if approve and stored.mode == SkillMode.guided:
                stored = stored.model_copy(update={"status": SkillStatus.approved})
            batch.versions += [*before, stored]
            batch.edges += edges
            ids.append(stored.id)
            batch.files[stored.id] = carried
            batch.origins[stored.name] = origin
        self._flush(batch, report, validate=validate, limits=limits)
        return report

    def _flush(
        self,
        batch: _ImportBatch,
        report: SkillImportReport,
        *,
        validate: bool,
        limits: Any,
    ) -> None:
        """Write one batch of imported packages (one embedding batch, one transaction, one index
        commit), then validate the executable ones when asked (each in the sandbox)."""
        if not batch.versions:
            return
        self._commit(batch.versions, edges=batch.edges, files=batch.files)
        report.added += batch.added
        report.versions += batch.updated
        for stored in batch.versions:
            if stored.id not in batch.files:
                continue  # an old version, no longer the latest
            if stored.status == SkillStatus.approved:  # imports land as drafts unless approved
                report.approved.append(stored.name)
            elif validate and stored.mode == SkillMode.executable and stored.tests:
                origin = batch.origins[stored.name]
                try:
                    outcome = self.validate(stored.name, limits=limits)
                except (Invalid, Conflict, SandboxError) as exc:
                    report.skipped.append({"path": origin, "error": str(exc)})
                    continue
                if outcome.status == SkillStatus.validated.value:
                    report.validated.append(stored.name)
                else:
                    failed = [o["name"] for o in outcome.outcomes if not o["passed"]]
                    report.not_validated.append(
                        {"path": origin, "error": f"tests failed: {', '.join(failed)}"}
                    )

    # -- mining and curation --------------------------------------------------------------------
    def mine(
        self,
        *,
        min_support: int = 3,
        min_length: int = 2,
        max_length: int = 6,
        max_candidates: int = 50,
        domain: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> list[CurationAction]:
        """Mine recurring tool-call sequences of successful experiences as draft skills, with
        ``derived_from`` edges to the experiences they came from.

        Support counts distinct source tasks: several runs of one task (same
        ``provenance.source_id``) are one piece of evidence, so their constants are not mistaken
        for a general procedure."""
        traces, tasks, source = [], {}, {}
        for exp in self.records.iter_experiences(outcome=Outcome.success.value):
            if domain and exp.domain != domain:
                continue
            calls = _calls_with_results(exp.steps)
            if calls:
                traces.append((exp.id, calls))
                tasks[exp.id] = exp.task
                source[exp.id] = exp.provenance.source_id or exp.id
        candidates = skills.mine(
            traces,
            tasks=tasks,
            min_support=min_support,
            min_length=min_length,
            max_length=max_length,
            max_candidates=max_candidates,
            progress=progress,
        )
        new_skills: list[Skill] = []
        edges: list[Edge] = []
        actions = []
        for candidate in candidates:
            if len({source[i] for i in candidate.source_ids}) < min_support:
                continue  # repeated trials of one task are one piece of evidence, not several
            data = dict(candidate.skill)
            existing = self.records.skill_versions(data["name"]) + [
                s for s in new_skills if s.name == data["name"]
            ]
            if existing:
                actions.append(
                    CurationAction(
                        action="exists",
                        name=data["name"],
                        id=existing[-1].id,
                        support=candidate.support,
                        sources=candidate.source_ids,
                    )
                )
                continue
            data["provenance"] = Provenance(source="mined").model_dump()
            data["status"] = SkillStatus.draft.value
            skill_id = None
            if not dry_run:
                fields = {k: v for k, v in data.items() if k in SkillCreate.model_fields}
                mined = self._new(coerce(SkillCreate, fields, "skill"))
                skill_id = mined.id
                new_skills.append(mined)
                edges += [
                    Edge(src=mined.id, dst=s, kind="derived_from") for s in candidate.source_ids
                ]
            actions.append(
                CurationAction(
                    action="mined",
                    name=data["name"],
                    id=skill_id,
                    support=candidate.support,
                    sources=candidate.source_ids,
                    detail=" -> ".join(candidate.pattern),
                )
            )
        if new_skills:
            self._commit(new_skills, edges=edges)
        return actions

    def merge(self, *, threshold: float = 0.9, dry_run: bool = False) -> list[CurationAction]:
        """Merge near-duplicate skills: embedding similarity >= ``threshold`` and the same
        parameter signature. The one kept is the most proven (validated, then most successes);
        the others are deprecated with a ``merged_into`` edge, so the trail stays."""
        current = [s for s in self.all() if s.status != SkillStatus.deprecated]
        if len(current) < 2:
            return []
        self.store.ready()
        vectors = self.store.items.vectors([s.id for s in current])
        rank = {
            SkillStatus.validated: 0,
            SkillStatus.approved: 1,
            SkillStatus.draft: 2,
            SkillStatus.broken: 3,
        }
        ordered = sorted(current, key=lambda s: (rank.get(s.status, 4), -s.successes, s.created_at))
        kept: list[Skill] = []
        actions = []
        retired: list[Skill] = []
        edges: list[Edge] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        for skill in ordered:
            vec = vectors.get(skill.id)
            target = next(
                (
                    k
                    for k in kept
                    if vec is not None
                    and k.id in vectors
                    and float(np.dot(vec, vectors[k.id])) >= threshold
                    and skills.parameter_signature(k.parameters)
                    == skills.parameter_signature(skill.parameters)
                ),
                None,
            )
            if target is None:
                kept.append(skill)
                continue
            similarity = float(np.dot(vec, vectors[target.id])) if vec is not None else 0.0
            actions.append(
                CurationAction(
                    action="merged",
                    name=skill.name,
                    id=skill.id,
                    detail=f"into {target.name} (similarity {similarity:.3f})",
                )
            )
            reason = f"merged into {target.name}"
            retired.append(skill.model_copy(update={"status": SkillStatus.deprecated}))
            edges.append(Edge(src=skill.id, dst=target.id, kind="merged_into"))
            events.append((skill.id, "deprecated", {"reason": reason}))
        if not dry_run and retired:
            self._commit(retired, edges=edges, events=events)
        return actions

    def prune(
        self,
        *,
        min_uses: int = 5,
        max_failure_rate: float = 0.5,
        max_idle_days: float = 90.0,
        dry_run: bool = False,
    ) -> list[CurationAction]:
        """Deprecate (never delete) skills that fail too often or go unused too long."""
        last_use: dict[str, datetime] = {}
        for event in self.records.events():
            stamp = (
                event.created_at
                if event.created_at.tzinfo
                else event.created_at.replace(tzinfo=UTC)
            )
            last_use[event.item_id] = max(stamp, last_use.get(event.item_id, stamp))
        retired: list[Skill] = []
        events: list[tuple[str, str, dict[str, Any]]] = []
        now = utcnow()
        actions = []
        for skill in self.all():
            if skill.status == SkillStatus.deprecated:
                continue
            seen = last_use.get(
                skill.id,
                skill.created_at
                if skill.created_at.tzinfo
                else skill.created_at.replace(tzinfo=UTC),
            )
            reason = skills.should_prune(
                skill.uses,
                skill.successes,
                skill.failures,
                (now - seen).total_seconds() / 86400,
                min_uses=min_uses,
                max_failure_rate=max_failure_rate,
                max_idle_days=max_idle_days,
            )
            if reason:
                actions.append(
                    CurationAction(action="deprecated", name=skill.name, id=skill.id, detail=reason)
                )
                retired.append(skill.model_copy(update={"status": SkillStatus.deprecated}))
                events.append((skill.id, "deprecated", {"reason": reason}))
        if not dry_run and retired:
            self._commit(retired, events=events)
        return actions
