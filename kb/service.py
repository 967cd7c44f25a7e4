"""The ``KnowledgeBase`` facade: every SDK, CLI and MCP operation is one call here.

It builds the services of :mod:`kb.services` over a :class:`kb.store.Store` for one namespace and
delegates each method to one of them, in one line. The services hold the logic; the store holds
the shared state and the only write path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kb.config import Settings
from kb.config import settings as load_settings
from kb.embeddings import CachedEmbedder, Embedder
from kb.errors import ImportFailed, Invalid
from kb.models import (
    MAX_BATCH,
    Attribution,
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceUpdate,
    ExportReport,
    ImportReport,
    Kind,
    Outcome,
    SearchHit,
    Skill,
    SkillCreate,
    SkillStatus,
    Stats,
    Step,
    check_namespace,
)
from kb.store import Progress, Store

if TYPE_CHECKING:  # the services are imported when first used: light commands never load most
    from kb.retrieval import Mode, RefineBundle, RetrieveBundle, Weights
    from kb.services.experiences import AddResult, DistillReport, Experiences, Policy, Usage
    from kb.services.gate import Gate, GateAction, GateDecision, GatePolicy, GateSession
    from kb.services.loop import Loop
    from kb.services.search import Search
    from kb.services.skills import (
        CurationAction,
        SkillFile,
        SkillFileContent,
        SkillImportReport,
        SkillRun,
        Skills,
        SkillVersion,
        ValidationReport,
    )
    from kb.services.tokens import NewToken, TokenInfo, Tokens
    from kb.services.tracing import (
        LabelImportReport,
        SynthesisReport,
        TraceLine,
        Tracing,
        TrainReport,
    )
    from kb.services.transfer import DoctorReport, Transfer
    from kb.services.view import Viewer
    from kb.services.windows import StepWindows


class KnowledgeBase:
    """An experience memory and skill library, bound to one namespace of one store.

    Open it with :meth:`open` (or :meth:`on` to share an open :class:`Store` across namespaces);
    use it as a context manager or call :meth:`close`.
    """

    def __init__(self, store: Store, namespace: str, *, owns_store: bool = True):
        try:
            self.namespace = check_namespace(namespace)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        self.store = store
        self._owns_store = owns_store

    # -- the services, each built on first use -------------------------------------------------
    @functools.cached_property
    def windows(self) -> StepWindows:
        from kb.services.windows import StepWindows

        return StepWindows(self.store, self.namespace)

    @functools.cached_property
    def experiences(self) -> Experiences:
        from kb.services.experiences import Experiences

        return Experiences(self.store, self.namespace, self.windows)

    @functools.cached_property
    def searcher(self) -> Search:
        from kb.services.search import Search

        return Search(self.store, self.namespace)

    @functools.cached_property
    def loop(self) -> Loop:
        from kb.services.loop import Loop

        return Loop(self.store, self.namespace, self.searcher, self.windows)

    @functools.cached_property
    def gate(self) -> Gate:
        from kb.services.gate import Gate

        return Gate(self.store, self.namespace, self.experiences)

    @functools.cached_property
    def skills(self) -> Skills:
        from kb.services.skills import Skills

        return Skills(self.store, self.namespace, self.searcher, self.experiences, gate=self.gate)

    @functools.cached_property
    def tracing(self) -> Tracing:
        from kb.services.tracing import Tracing

        return Tracing(self.store, self.namespace, self.searcher, self.experiences, self.skills)

    @functools.cached_property
    def transfer(self) -> Transfer:
        from kb.services.transfer import Transfer

        return Transfer(self.store, self.namespace, self.experiences, self.skills, self.tracing)

    @functools.cached_property
    def tokens(self) -> Tokens:
        from kb.services.tokens import Tokens

        return Tokens(self.store, self.namespace)

    @functools.cached_property
    def viewer(self) -> Viewer:
        from kb.services.view import Viewer

        return Viewer(self.store, self.namespace, self.searcher, self.experiences, self.skills)

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        namespace: str | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ) -> KnowledgeBase:
        """Create or open the store at ``path`` (default: ``KB_STORE``, else the user data dir).

        Args:
            path: the store directory.
            namespace: the tenant this handle reads and writes (default ``default``).
            settings: configuration; by default read from ``KB_*`` environment variables.
            embedder: an embedding model to use instead of the configured sentence-transformers one.
        """
        settings = settings or load_settings()
        location = Path(path).expanduser() if path is not None else settings.store_path()
        if location.exists() and not location.is_dir():
            raise Invalid(f"store path {location} exists and is not a directory")
        namespace = namespace or settings.namespace
        try:
            check_namespace(namespace)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        return cls(Store(location, settings=settings, embedder=embedder), namespace)

    @classmethod
    def on(cls, store: Store, namespace: str) -> KnowledgeBase:
        """A handle on an already open store (closing it leaves the store open)."""
        return cls(store, namespace, owns_store=False)

    def close(self) -> None:
        """Release the store (files stay as they are) if this handle opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the store -----------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @property
    def model_name(self) -> str:
        return self.store.model_name

    @property
    def embedder(self) -> CachedEmbedder:
        """The embedding model (loaded on first use), behind the content-hash cache."""
        return self.store.embedder

    @property
    def weights(self) -> Weights:
        return self.searcher.weights

    def stored_model(self) -> tuple[str | None, int | None]:
        return self.store.stored_model()

    def repair(self) -> int:
        """Index what SQL holds but the index lacks (after a crash); return how many rows."""
        return self.store.repair()

    # -- experiences ---------------------------------------------------------------------------
    def add_experience(
        self,
        experience: ExperienceCreate | Mapping[str, Any],
        *,
        policy: Policy = "admit",
        idempotency_key: str | None = None,
    ) -> AddResult:
        """Record one experience (see :meth:`Experiences.admit` for the policies); a retry with
        the same ``idempotency_key`` stores nothing and returns the first id as ``unchanged``."""
        return self.experiences.add(experience, policy=policy, idempotency_key=idempotency_key)

    def add_experiences(
        self,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: Policy = "admit",
        progress: Progress | None = None,
    ) -> list[AddResult]:
        """Record many experiences in one transaction (at most ``MAX_BATCH``); all are validated
        before anything is written."""
        items = list(experiences)
        if len(items) > MAX_BATCH:
            raise Invalid(f"at most {MAX_BATCH} experiences per call; split the batch")
        return self.experiences.admit(items, policy=policy, progress=progress)

    def admit_experiences(
        self,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: Policy = "admit",
        progress: Progress | None = None,
    ) -> list[AddResult]:
        """Record experiences under an admission policy (see :meth:`Experiences.admit`)."""
        return self.experiences.admit(experiences, policy=policy, progress=progress)

    def get_experience(self, experience_id: str) -> Experience:
        """The experience with this id (in this namespace)."""
        return self.experiences.get(experience_id)

    def distill(
        self,
        ids: Sequence[str] | None = None,
        *,
        method: Literal["offline", "llm"] = "offline",
        force: bool = False,
        progress: Progress | None = None,
    ) -> DistillReport:
        """Distill strategy, plan and lessons of stored experiences (see
        :meth:`Experiences.distill`); human-written text is never overwritten."""
        return self.experiences.distill(ids, method=method, force=force, progress=progress)

    def update_experience(
        self, experience_id: str, changes: ExperienceUpdate | Mapping[str, Any]
    ) -> Experience:
        """Change fields of an experience; returns the stored result."""
        return self.experiences.update(experience_id, changes)

    def delete_experience(self, experience_id: str) -> Experience:
        """Tombstone an experience: hidden from search and lists until :meth:`restore_experience`;
        :meth:`purge` removes it for good."""
        return self.experiences.delete(experience_id)

    def restore_experience(self, experience_id: str) -> Experience:
        """Undo :meth:`delete_experience`."""
        return self.experiences.restore(experience_id)

    def experience_history(self, experience_id: str) -> list[Experience]:
        """Every version of an experience, oldest first, the current one last."""
        return self.experiences.history(experience_id)

    def purge(self, ids: Sequence[str] | None = None) -> list[str]:
        """Remove tombstoned experiences (all, or these) for good, with their versions, edges,
        events and index rows; returns the ids purged."""
        return self.experiences.purge(ids)

    def list_experiences(
        self,
        *,
        outcome: Outcome | str | None = None,
        domain: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Experience]:
        """Experiences, newest first, optionally filtered."""
        return self.experiences.all(
            outcome=outcome, domain=domain, tag=tag, limit=limit, offset=offset
        )

    def add_edge(self, src: str, dst: str, kind: str, *, weight: float = 1.0) -> Edge:
        """Link two items of this namespace (e.g. ``derived_from``, ``repaired_by``)."""
        return self.experiences.add_edge(src, dst, kind, weight=weight)

    def edges(self, item_id: str, *, kinds: set[str] | None = None) -> list[Edge]:
        """Edges touching an item, both directions."""
        return self.experiences.edges(item_id, kinds=kinds)

    def feedback(self, item_id: str, *, success: bool, note: str | None = None) -> Usage:
        """Record that an experience or skill was used and whether it helped."""
        return self.experiences.feedback(item_id, success=success, note=note)

    # -- search and the loop -------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        kind: Kind | str | None = None,
        mode: Mode = "hybrid",
        outcome: Outcome | str | list[str] | None = None,
        domain: str | None = None,
        tags: list[str] | None = None,
        status: list[str] | None = None,
        include_drafts: bool = False,
        signature: list[str] | None = None,
        graph: bool = True,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
        weights: Weights | None = None,
        prf: int = 0,
        outcome_aware: bool | None = False,
        diverse: bool = True,
    ) -> list[SearchHit]:
        """Hybrid search over experiences and skills (see :meth:`Search.search`)."""
        return self.searcher.search(
            query,
            k,
            kind=kind,
            mode=mode,
            outcome=outcome,
            domain=domain,
            tags=tags,
            status=status,
            include_drafts=include_drafts,
            signature=signature,
            graph=graph,
            exclude_ids=exclude_ids,
            exclude_source_ids=exclude_source_ids,
            weights=weights,
            prf=prf,
            outcome_aware=outcome_aware,
            diverse=diverse,
        )

    def retrieve(
        self,
        task: str,
        *,
        plan: Sequence[str] | None = None,
        signature: Sequence[str] | None = None,
        k: int = 5,
        budget_tokens: int = 1200,
        mode: Mode = "hybrid",
        structure: bool = True,
        prf: int = 3,
        graph: bool = True,
        domain: str | None = None,
        tags: list[str] | None = None,
        include_drafts: bool = False,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
        outcome_aware: bool | None = None,
        diverse: bool = True,
    ) -> RetrieveBundle:
        """Memory for planning a task: strategies, skills, pitfalls and a context block
        (see :meth:`Loop.retrieve`)."""
        return self.loop.retrieve(
            task,
            plan=plan,
            signature=signature,
            k=k,
            budget_tokens=budget_tokens,
            mode=mode,
            structure=structure,
            prf=prf,
            graph=graph,
            domain=domain,
            tags=tags,
            include_drafts=include_drafts,
            exclude_ids=exclude_ids,
            exclude_source_ids=exclude_source_ids,
            outcome_aware=outcome_aware,
            diverse=diverse,
        )

    def refine(
        self,
        task: str,
        trajectory: Sequence[Step | Mapping[str, Any]],
        *,
        error: str | None = None,
        k: int = 5,
        budget_tokens: int = 800,
        domain: str | None = None,
        include_drafts: bool = False,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
    ) -> RefineBundle:
        """Memory for the next step of a running task, matched at step level
        (see :meth:`Loop.refine`)."""
        return self.loop.refine(
            task,
            trajectory,
            error=error,
            k=k,
            budget_tokens=budget_tokens,
            domain=domain,
            include_drafts=include_drafts,
            exclude_ids=exclude_ids,
            exclude_source_ids=exclude_source_ids,
        )

    def rebuild_windows(self) -> int:
        """Rebuild this namespace's step windows from SQL; returns how many were written."""
        return self.windows.rebuild()

    # -- skills --------------------------------------------------------------------------------
    def add_skill(self, skill: SkillCreate | Mapping[str, Any]) -> Skill:
        """Add a new skill (version 1 unless given). A name that exists is a conflict."""
        return self.skills.add(skill)

    def add_skills(self, skills: Sequence[SkillCreate | Mapping[str, Any]]) -> list[Skill]:
        """Add new skills in one write (one embedding batch, one commit); all or nothing."""
        return self.skills.add_many(skills)

    def get_skill(self, name: str, version: int | None = None) -> Skill:
        """A skill by name (latest version unless ``version``) or by id."""
        return self.skills.get(name, version)

    def list_skills(
        self,
        *,
        status: SkillStatus | str | None = None,
        all_versions: bool = False,
        limit: int = 1000,
    ) -> list[Skill]:
        """Skills (latest versions unless ``all_versions``), by name."""
        return self.skills.all(status=status, all_versions=all_versions, limit=limit)

    def search_skills(self, query: str, k: int = 10, **options: Any) -> list[SearchHit]:
        """Skills for a task: validated and approved by default (validated first)."""
        return self.skills.search(query, k, **options)

    def propose_skill(self, skill: SkillCreate | Mapping[str, Any]) -> Skill:
        """Add a skill proposed by an agent: it always lands as a draft for curation."""
        return self.skills.propose(skill)

    def update_skill(self, name: str, changes: Mapping[str, Any]) -> Skill:
        """Make a new version of a skill; the old version stays retrievable."""
        return self.skills.update(name, changes)

    def skill_history(self, name: str) -> list[SkillVersion]:
        """Every version of a skill, oldest first, with its validation runs."""
        return self.skills.history(name)

    def validate_skill(
        self, name: str, *, version: int | None = None, limits: Any = None
    ) -> ValidationReport:
        """Run a skill's tests in the sandbox and move its status (validated / broken)."""
        return self.skills.validate(name, version=version, limits=limits)

    def approve_skill(self, name: str) -> Skill:
        """A person approves a guided skill: draft -> approved."""
        return self.skills.approve(name)

    def deprecate_skill(self, name: str, *, reason: str = "deprecated by hand") -> Skill:
        """Retire a skill (never deleted): it drops out of default retrieval."""
        return self.skills.deprecate(name, reason=reason)

    def run_skill(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        limits: Any = None,
        untrusted: bool = False,
        run_id: str | None = None,
    ) -> SkillRun:
        """Run an executable skill in the sandbox; an untrusted (agent) run asks the gate first
        (see :meth:`Skills.run`)."""
        return self.skills.run(
            name, params, version=version, limits=limits, untrusted=untrusted, run_id=run_id
        )

    def skill_md(self, name: str, version: int | None = None) -> str:
        """The skill as an Agent Skills ``SKILL.md`` document."""
        return self.skills.skill_md(name, version)

    def skill_files(self, name: str, version: int | None = None) -> list[SkillFile]:
        """The files of a skill's package (SKILL.md first) with sizes, modes and MIME types."""
        return self.skills.files(name, version)

    def skill_file(self, name: str, path: str, version: int | None = None) -> SkillFileContent:
        """One file of a skill's package, its bytes and MIME type."""
        return self.skills.file(name, path, version)

    def export_skills(self, dest: str | Path) -> ExportReport:
        """Write the latest version of every skill as an Agent Skills package folder."""
        return self.skills.export(dest)

    def import_skills(self, path: str | Path, **options: Any) -> SkillImportReport:
        """Import SKILL.md packages; each lands as a draft (see :meth:`Skills.import_packages`)."""
        return self.skills.import_packages(path, **options)

    def mine_skills(self, **options: Any) -> list[CurationAction]:
        """Mine draft skills from recurring tool sequences (see :meth:`Skills.mine`)."""
        return self.skills.mine(**options)

    def merge_skills(
        self, *, threshold: float = 0.9, dry_run: bool = False
    ) -> list[CurationAction]:
        """Merge near-duplicate skills, keeping the trail."""
        return self.skills.merge(threshold=threshold, dry_run=dry_run)

    def prune_skills(self, **options: Any) -> list[CurationAction]:
        """Deprecate skills that fail too often or go unused (see :meth:`Skills.prune`)."""
        return self.skills.prune(**options)

    # -- the pre-execution gate ------------------------------------------------------------
    def check_action(
        self,
        run_id: str,
        action: GateAction | Mapping[str, Any],
        *,
        role: str | None = None,
        task: str | None = None,
    ) -> GateDecision:
        """Allow, warn or deny a tool call before it runs, with reasons and evidence; the run's
        session remembers it (see :meth:`Gate.check`)."""
        return self.gate.check(run_id, action, role=role, task=task)

    def session(self, run_id: str) -> GateSession:
        """A gated run's session: its risk memory and every decision, for review."""
        return self.gate.session(run_id)

    def sessions(self, *, limit: int = 20) -> list[GateSession]:
        """Live gate sessions, most recently checked first."""
        return self.gate.recent(limit)

    def gate_policy(self) -> GatePolicy:
        """The namespace's gate policy (thresholds, deny lists, role rules)."""
        return self.gate.policy()

    def set_gate_policy(
        self, changes: GatePolicy | Mapping[str, Any], *, replace: bool = False
    ) -> GatePolicy:
        """Change the namespace's gate policy (the given fields; all of them with ``replace``)."""
        return self.gate.set_policy(changes, replace=replace)

    # -- tracing -------------------------------------------------------------------------------
    def trace(
        self,
        target: str | ExperienceCreate | Mapping[str, Any] | list[Any],
        *,
        method: str = "auto",
        store: bool = True,
    ) -> Attribution:
        """Attribute a failure to an agent and a step (see :meth:`Tracing.trace`)."""
        return self.tracing.trace(target, method=method, store=store)

    def trace_file(self, path: str | Path, *, method: str = "auto") -> Iterator[TraceLine]:
        """Trace every trajectory in a file or folder, one line each."""
        return self.tracing.trace_file(path, method=method)

    def label(
        self, experience_id: str, *, step: int, agent: str | None = None, reason: str | None = None
    ) -> Attribution:
        """Store a human label: the step (and agent) that caused a failure."""
        return self.tracing.label(experience_id, step=step, agent=agent, reason=reason)

    def import_labels(self, path: str | Path) -> LabelImportReport:
        """Import failure labels (the tau-retail ``failure_labels.json`` format)."""
        return self.tracing.import_labels(path)

    def train_tracer(
        self, *, with_successes: bool = False, per_success: int = 3, seed: int = 0
    ) -> TrainReport:
        """Train the tracer on this namespace's labelled failures (see :meth:`Tracing.train`)."""
        return self.tracing.train(with_successes=with_successes, per_success=per_success, seed=seed)

    def synthesize_failures(
        self,
        out: str | Path,
        *,
        sources: Sequence[str | Path] = (),
        from_store: bool = False,
        team_runs: int = 0,
        split: str = "train",
        per_success: int = 3,
        faults: Sequence[str] | None = None,
        seed: int = 0,
        add: bool = False,
    ) -> SynthesisReport:
        """Labelled failures made by injecting faults into successes (see
        :meth:`Tracing.synthesize`)."""
        return self.tracing.synthesize(
            out,
            sources=sources,
            from_store=from_store,
            team_runs=team_runs,
            split=split,
            per_success=per_success,
            faults=faults,
            seed=seed,
            add=add,
        )

    def export_pairs(self, path: str | Path) -> ExportReport:
        """Write (task, context, wrong step, corrected step) pairs as JSONL."""
        return self.tracing.export_pairs(path)

    # -- viewing -------------------------------------------------------------------------------
    def view_html(self, experience_id: str, *, link: str | None = None) -> str:
        """A run as one self-contained HTML page to step through (see :meth:`Viewer.html`)."""
        return self.viewer.html(experience_id, link=link)

    def view_list_html(
        self,
        *,
        outcome: str | None = "failure",
        domain: str | None = None,
        limit: int = 50,
        link: str | None = None,
        live: bool = False,
    ) -> str:
        """The namespace's runs as one HTML page, newest first (see :meth:`Viewer.list_html`)."""
        return self.viewer.list_html(
            outcome=outcome, domain=domain, limit=limit, link=link, live=live
        )

    # -- tokens --------------------------------------------------------------------------------
    def create_token(self, name: str, namespace: str | None = None) -> NewToken:
        """Create a bearer token for the HTTP MCP server (the secret is shown once)."""
        return self.tokens.create(name, namespace)

    def list_tokens(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every token of the store (all namespaces), without secrets."""
        return self.tokens.all(include_revoked=include_revoked)

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token by id."""
        return self.tokens.revoke(token_id)

    def resolve_token(self, secret: str) -> str | None:
        """The namespace a live token is bound to, or None."""
        return self.tokens.resolve(secret)

    # -- import, export, maintenance -----------------------------------------------------------
    def import_file(
        self,
        path: str | Path,
        format: str = "auto",
        *,
        skip_invalid: bool = False,
        update: bool = False,
        domain: str | None = None,
        progress: Progress | None = None,
    ) -> ImportReport | LabelImportReport:
        """Import a file, all of it or none of it; records already stored are ``unchanged``
        (see :meth:`Transfer.import_file`)."""
        return self.transfer.import_file(
            Path(path),
            format,
            skip_invalid=skip_invalid,
            update=update,
            domain=domain,
            progress=progress,
        )

    def export(self, path: str | Path, *, format: str = "jsonl") -> ExportReport:
        """Write this namespace to ``path`` (``jsonl`` is lossless; also ``pairs``, ``skills``)."""
        return self.transfer.export(Path(path), format)

    def stats(self) -> Stats:
        """Counts of this namespace and the state of its index."""
        return self.store.stats(self.namespace)

    def doctor(self) -> DoctorReport:
        """Check the model, the index against SQL, and versions."""
        return self.transfer.doctor()

    def index_lag(self) -> dict[str, Any]:
        """How far this store's index is behind SQL's change log: entries not applied yet,
        the age in seconds of the oldest, build progress and the last error."""
        return self.store.follower.lag()

    def catch_up(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Bring this store's index up to date with SQL's change log now (building it from SQL
        first when it has never been built; ``progress(done, total)`` records); returns how many
        entries or records were applied."""
        return self.store.follower.catch_up(progress=progress)

    def follow(self, *, interval: float | None = None) -> None:
        """Keep this store's index following SQL's change log in the background (a server
        sharing its database with others); every ``interval`` seconds (``KB_FOLLOW_INTERVAL``)."""
        self.store.follower.start(interval or self.store.settings.follow_interval)

    def reindex(self, *, progress: Progress | None = None) -> int:
        """Rebuild the whole index from SQL with the configured model; returns rows indexed."""
        return self.store.reindex(progress=progress)

    def optimize(self) -> None:
        """Compact the index and fold new rows into its indexes."""
        return self.store.optimize()


def __getattr__(name: str) -> Any:
    if name == "AddResult":  # part of the SDK (``from kb import AddResult``), imported on use
        from kb.services.experiences import AddResult

        return AddResult
    raise AttributeError(f"module 'kb.service' has no attribute {name!r}")


__all__ = ["AddResult", "ImportFailed", "KnowledgeBase"]
