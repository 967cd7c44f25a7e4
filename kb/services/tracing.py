"""Failure tracing of one namespace: trace, labels, the learned tracer, repair pairs.

The attribution of a stored failure is kept on the experience (shown on its search hits, turned
into pitfalls by ``retrieve``); a success of the same task is linked by a ``repaired_by`` edge, and
(wrong step, corrected step) pairs can be exported for preference training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from kb.errors import Invalid, KBError, NotFound
from kb.importers import trajectory_from_any
from kb.models import (
    Attribution,
    Edge,
    Experience,
    ExperienceCreate,
    ExportReport,
    Outcome,
    Step,
    kind_of,
)
from kb.services import Service
from kb.services.experiences import Experiences
from kb.services.search import Search
from kb.services.skills import RUNNABLE, Skills
from kb.store import Store

if TYPE_CHECKING:
    from kb.trace.counterfactual import Replay
    from kb.trace.learned import LearnedModel

TRACER_FILE = "tracer_model.json"


class TraceLine(BaseModel):
    """One trajectory of a traced file: where it is, and its attribution
    (``mistake_agent``, ``mistake_step``, reason, confidence, method) or an ``error``."""

    model_config = ConfigDict(extra="allow")

    file: str
    record: int | None = None
    error: str | None = None


class TrainReport(BaseModel):
    """Where the trained tracer was saved, from how many labelled failures (human labels and
    faults injected into the store's successes), and how well it fits them."""

    path: str
    examples: int
    labels: int
    synthetic: int
    base: str | None = None
    train_step_accuracy: float
    train_agent_accuracy: float


class SynthesisReport(BaseModel):
    """What fault injection made: labelled failures written (and imported), by fault type, and
    how many were confirmed to flip the outcome (by replay, gold actions or the answer)."""

    path: str
    successes: int
    failures: int
    by_fault: dict[str, int] = {}
    confirmed: dict[str, int] = {}
    unconfirmed: int = 0
    dropped_no_flip: int = 0
    imported: int = 0


class LabelImportReport(BaseModel):
    """What a label import did: experiences labelled, trajectory ids with no experience."""

    path: str
    labelled: list[str] = []
    missing: list[str] = []


class Tracing(Service):
    """Failure tracing of one namespace."""

    def __init__(
        self,
        store: Store,
        namespace: str,
        search: Search,
        experiences: Experiences,
        skills: Skills,
    ):
        super().__init__(store, namespace)
        self.search = search
        self.experiences = experiences
        self.skills = skills

    def _tracer_model(self, method: str) -> LearnedModel | None:
        """The store's own trained tracer; else the shipped one for ``learned``, and for ``auto``
        only when its training recorded that it beats the heuristic
        (:func:`kb.trace.preferred_model`)."""
        from kb.trace import preferred_model
        from kb.trace.learned import LearnedModel, default_model

        trained = self.store.path / TRACER_FILE
        if trained.exists():
            return LearnedModel.load(trained)
        if method == "learned":
            return default_model()
        return preferred_model() if method == "auto" else None

    def _as_experience(self, target: Any) -> tuple[ExperienceCreate, str | None]:
        if isinstance(target, str):
            if kind_of(target) != "experience":
                raise Invalid(f"{target!r} is not an experience id (exp_...)")
            return self.experiences.get(target), target
        return trajectory_from_any(target, source="trace"), None

    def _successes_like(self, exp: ExperienceCreate, k: int = 3) -> list[Experience]:
        """Successes of the same source task first, then the most similar successful tasks."""
        found: dict[str, Experience] = {}
        source = exp.provenance.source_id
        if source:
            for other in self.records.by_source_id(source):
                if other.outcome == Outcome.success:
                    found[other.id] = other
        try:
            hits = self.search.search(
                exp.task[:2000], k=k, kind="experience", outcome="success", graph=False
            )
        except KBError:
            hits = []
        for hit in hits:
            if hit.id not in found and len(found) < k + 1:
                found[hit.id] = self.experiences.get(hit.id)
        return list(found.values())

    def _replay(self, exp: ExperienceCreate) -> Replay | None:
        from kb.trace.counterfactual import Replay, is_replayable

        if not is_replayable(exp):
            return None
        # replay reruns only code a curator has vouched for: a trace request may come from an
        # agent, which must not be able to run its own drafts this way
        names = {str(s.tool) for s in exp.steps if s.kind == "skill_run" and s.tool}
        try:
            if any(self.skills.get(name).status not in RUNNABLE for name in names):
                return None
        except KBError:
            return None

        def run_step(step: Step) -> Step:
            result = self.skills.run(str(step.tool), step.args or {}, untrusted=True)
            return step.model_copy(
                update={
                    "result": json.dumps(result.value, default=str) if result.ok else None,
                    "error": None if result.ok else (result.error or "failed"),
                }
            )

        def judge(steps: list[Step]) -> bool:
            if any(s.error for s in steps):
                return False
            if exp.ground_truth is None:
                return True
            last = next((s.result for s in reversed(steps) if s.result is not None), None)
            return last is not None and str(exp.ground_truth).strip() in last

        return Replay(run_step=run_step, judge=judge)

    def trace(
        self,
        target: str | ExperienceCreate | Mapping[str, Any] | list[Any],
        *,
        method: str = "auto",
        store: bool = True,
    ) -> Attribution:
        """Attribute a failure to an agent and a step, with a reason and a confidence.

        Args:
            target: a stored experience id, or a trajectory (an experience, an OpenAI chat
                transcript or a multi-agent log).
            method: ``auto`` | ``heuristic`` | ``learned`` | ``llm`` (``llm:all_at_once``,
                ``llm:step_by_step``, ``llm:binary_search``) | ``counterfactual``.
            store: keep the attribution on a stored experience (a human label is never
                overwritten) and link it to a success of the same task with ``repaired_by``.
        """
        from kb.trace import METHODS, attribute
        from kb.trace.llm import LLMConfig

        if method not in METHODS:
            raise Invalid(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        exp, exp_id = self._as_experience(target)
        if not exp.steps:
            raise Invalid("the trajectory has no steps to attribute")
        references = self._successes_like(exp) if self.records.count_experiences() else []
        references = [r for r in references if r.id != exp_id]
        attribution = attribute(
            exp,
            method=method,
            references=references,
            model=self._tracer_model(method),
            llm=LLMConfig.from_settings(self.store.settings),
            replay=self._replay(exp),
            embed=self.store.embedder.encode
            if method in {"auto", "heuristic"} and self.store.model_matches()
            else None,
        )
        if store and exp_id is not None:
            current = self.experiences.get(exp_id)
            labelled = current.attribution is not None and current.attribution.method == "label"
            # a human label is never overwritten: the tracer's answer is kept beside it
            field = "tracer_attribution" if labelled else "attribution"
            self.experiences.update(exp_id, {field: attribution})
            self._link_repairs(current, references)
        return attribution

    def _link_repairs(self, failure: Experience, references: list[Experience]) -> None:
        same_task = [
            r
            for r in references
            if r.outcome == Outcome.success
            and (
                (
                    failure.provenance.source_id
                    and r.provenance.source_id == failure.provenance.source_id
                )
                or r.task == failure.task
            )
        ]
        if same_task:  # linking re-distills the failure's lessons with its repair
            self.experiences.link(
                [Edge(src=failure.id, dst=r.id, kind="repaired_by") for r in same_task]
            )

    def trace_file(self, path: str | Path, *, method: str = "auto") -> Iterator[TraceLine]:
        """Trace every trajectory in a file, or in every .json/.jsonl file of a folder.

        Yields one dict per trajectory: file, record number, ``mistake_agent`` and
        ``mistake_step`` (step = position in the log, 0-based), reason, confidence, method.
        A record that cannot be read yields an ``error`` instead.
        """
        from kb.importers import read_records
        from kb.trace import to_mistake_json

        for file in _json_files(path):
            try:
                records = read_records(file)
            except KBError as exc:
                yield TraceLine(file=str(file), error=str(exc))
                continue
            for number, record in enumerate(records, start=1):
                try:
                    exp, _ = self._as_experience(record)
                    attribution = self.trace(exp, method=method, store=False)
                except KBError as exc:
                    yield TraceLine(file=str(file), record=number, error=str(exc))
                    continue
                yield TraceLine(file=str(file), record=number, **to_mistake_json(exp, attribution))

    def label(
        self,
        experience_id: str,
        *,
        step: int,
        agent: str | None = None,
        reason: str | None = None,
    ) -> Attribution:
        """Store a human label: the step (and agent) that caused a failure."""
        exp = self.experiences.get(experience_id)
        if not 0 <= step < len(exp.steps):
            raise Invalid(f"step must be between 0 and {len(exp.steps) - 1} for {experience_id}")
        attribution = Attribution(
            agent=agent or exp.steps[step].agent,
            step=step,
            reason=reason or "",
            confidence=1.0,
            method="label",
        )
        self.experiences.update(experience_id, _labelled(exp, attribution))
        return attribution

    def import_labels(self, path: str | Path) -> LabelImportReport:
        """Import failure labels (the tau-retail ``failure_labels.json`` format): each label
        lands on the stored experience whose source id is the label's trajectory id."""
        from kb.trace.labels import read_labels

        path = Path(path)
        if not path.is_file():
            raise NotFound(f"{path}: no such file")
        try:
            labels = read_labels(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"{path}: not a failure label file ({exc})") from exc
        report = LabelImportReport(path=str(path))
        for item in labels:
            targets = [
                e
                for e in self.records.by_source_id(item.trajectory_id)
                if e.outcome != Outcome.success
            ]
            if not targets:
                report.missing.append(item.trajectory_id)
                continue
            for exp in targets:
                self.experiences.update(exp.id, _labelled(exp, item.attribution()))
                report.labelled.append(exp.id)
        return report

    def synthesize(
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
        """Make labelled failures by injecting faults into successful runs (the AgenTracer
        recipe, :func:`kb.trace.synthesize`) and write them as native JSONL.

        Args:
            out: the JSONL file to write.
            sources: trajectory files or folders (any importable format); their successes are used.
            from_store: also use this namespace's successful experiences.
            team_runs: also generate this many templated multi-agent runs (named agents,
                replayable, so every fault is confirmed by replay).
            split: ``train`` or ``heldout``: which domains, agent names and wording the
                templated runs use.
            per_success: faults tried per success.
            faults: fault types (default: all of :data:`kb.trace.FAULTS`).
            seed: makes the output deterministic.
            add: also add the failures to the store (with their labels), for ``train``.
        """
        from kb.importers import iter_experiences
        from kb.trace import FAULTS, SynthReport, generate_team_logs, synthesize, write_jsonl
        from kb.trace.teamworld import SPLITS

        if split not in SPLITS:
            raise Invalid(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        unknown = set(faults or ()) - set(FAULTS)
        if unknown:
            raise Invalid(f"unknown fault types {sorted(unknown)}; choose from {', '.join(FAULTS)}")
        if per_success < 1 or team_runs < 0:
            raise Invalid("per_success must be at least 1 and team_runs not negative")
        successes: list[ExperienceCreate] = []
        for source in sources:
            for file in _json_files(source):
                for _, item in iter_experiences(file):
                    if isinstance(item, ExperienceCreate) and item.outcome == Outcome.success:
                        successes.append(item)
        if from_store:
            successes += list(self.records.iter_experiences(outcome=Outcome.success.value))
        if team_runs:
            successes += generate_team_logs(team_runs, seed=seed, split=split)
        if not successes:
            raise Invalid(
                "no successful runs to inject faults into: give trajectory files, "
                "--from-store or --team-runs"
            )
        report = SynthReport()
        made = synthesize(
            successes,
            seed=seed,
            per_success=per_success,
            faults=tuple(faults or FAULTS),
            report=report,
        )
        path = write_jsonl(made, Path(out))
        imported = (
            sum(r.action == "added" for r in self.experiences.admit(made)) if add and made else 0
        )
        return SynthesisReport(
            path=str(path),
            successes=len(successes),
            failures=report.made,
            by_fault=report.by_fault,
            confirmed=report.confirmed,
            unconfirmed=report.unconfirmed,
            dropped_no_flip=report.no_flip,
            imported=imported,
        )

    def train(
        self, *, with_successes: bool = False, per_success: int = 3, seed: int = 0
    ) -> TrainReport:
        """Train the tracer on this namespace's labelled failures (human labels, and synthetic
        failures added by ``synthesize(add=True)``) and keep it in the store (used by
        ``trace(method="learned")`` and ``auto`` from then on).

        The shipped model is fine-tuned on them when it exists; a store with 40 labelled
        failures or more and no shipped model trains from scratch. With ``with_successes``
        faults are also injected into the namespace's successful runs.
        """
        from kb.trace import train
        from kb.trace.fit import examples_from
        from kb.trace.learned import DEFAULT_EMBEDDER, default_model

        labelled = [
            e
            for e in self.records.iter_experiences(outcome=Outcome.failure.value)
            if e.attribution is not None and e.attribution.method == "label"
        ]
        successes = (
            list(self.records.iter_experiences(outcome=Outcome.success.value))
            if with_successes
            else []
        )
        if len(examples_from(labelled)) < 3 and not successes:
            raise Invalid(
                f"{len(labelled)} labelled failures; label at least 3 "
                "(`kb label ID --step N`, `kb import LABELS.json` or `kb tracer synth --add`)"
            )
        base = default_model()
        own = self.store.embedder
        embed = (
            own.encode
            if self.store.model_matches() and getattr(own, "name", None) == DEFAULT_EMBEDDER
            else None
        )
        model = train(
            labelled,
            successes=successes,
            base=base if base is not None and base.is_text else None,
            embed=embed,
            seed=seed,
            per_success=per_success,
        )
        path = self.store.path / TRACER_FILE
        tmp = path.with_suffix(".tmp")
        model.save(tmp)
        os.replace(tmp, path)
        examples = examples_from(labelled)
        hits_step = hits_agent = 0
        for example in examples:
            got = model.explain(example.experience, embed=embed)
            guess = got.attribution
            step = guess.step if guess.step is not None else int(np.argmax(got.step_probs))
            agent = guess.agent or max(got.agent_shares, key=lambda a: got.agent_shares[a])
            hits_step += step == example.step
            hits_agent += agent.lower() == example.agent.lower()
        n = max(1, len(examples))
        return TrainReport(
            path=str(path),
            examples=int(model.meta.get("examples", len(examples))),
            labels=len(examples),
            synthetic=int(model.meta.get("examples", len(examples))) - len(examples),
            base=None if base is None else str(base.meta.get("trained_at") or "shipped"),
            train_step_accuracy=round(hits_step / n, 3),
            train_agent_accuracy=round(hits_agent / n, 3),
        )

    def export_pairs(self, path: str | Path) -> ExportReport:
        """Write (task, context, wrong step, corrected step) pairs of attributed failures as JSONL."""
        from kb.trace import preference_pair

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        count = 0
        graph = self.store.graph(self.namespace)
        with tmp.open("w", encoding="utf-8") as out:
            for failure in self.records.iter_experiences(outcome=Outcome.failure.value):
                if failure.attribution is None or failure.attribution.step is None:
                    continue
                repairs = [
                    e.dst
                    for e in graph.edges(failure.id, kinds={"repaired_by"})
                    if e.src == failure.id
                ]
                success = self.experiences.get(repairs[0]) if repairs else None
                pair = preference_pair(failure, failure.attribution, success)
                if pair is not None:
                    out.write(json.dumps({"failure_id": failure.id, **pair}, default=str) + "\n")
                    count += 1
        os.replace(tmp, path)
        return ExportReport(path=str(path), format="pairs", pairs=count)


def _labelled(exp: Experience, label: Attribution) -> dict[str, Any]:
    """The change that stores a human label, keeping a tracer's earlier answer beside it."""
    change: dict[str, Any] = {"attribution": label}
    if exp.attribution is not None and exp.attribution.method != "label":
        change["tracer_attribution"] = exp.attribution
    return change


def _json_files(source: str | Path) -> list[Path]:
    """A file, or every .json/.jsonl file under a folder (sorted); NotFound when neither."""
    path = Path(source)
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder")
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".json", ".jsonl"})
    return [path]
