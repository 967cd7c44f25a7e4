"""What a person sees of a run (``kb view``): the run, its attributions, the nearest success
aligned step by step, its repairs and the skills derived from it; and the listing of a namespace.

The gathering lives here; :mod:`kb.view` renders it as self-contained HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kb.errors import ModelMismatch
from kb.importers import describe
from kb.models import Attribution, Experience, Outcome, Skill, kind_of
from kb.services import Service
from kb.services.experiences import Experiences
from kb.services.search import Search
from kb.services.skills import Skills
from kb.store import Store
from kb.view import (
    Alignment,
    ListItem,
    Neighbour,
    RunView,
    align,
    render_list,
    render_run,
)

TRACER_ARTIFACT = "tracer_attribution"
"""Where a tracer's attribution is read from when a human label holds ``attribution``."""
RISK_ARTIFACT = "session_risk"
"""Where the gate's session risk per step is read from: a list of numbers, or
``{"risk": [...], "threshold": x}``."""
SIMILAR = 3
"""Similar successful tasks (search hits) considered when no run of the same task is stored."""


def attributions(
    exp: Experience,
) -> tuple[Attribution | None, Attribution | None, str | None]:
    """The tracer's attribution and the human label of ``exp`` (either may be None), and what
    was wrong with a stored tracer attribution that could not be read (else None).

    ``attribution`` holds the label when a person labelled the run (method ``label``), else the
    tracer's; the tracer's beside a label is read from a ``tracer_attribution`` field when the
    model has one, else from ``artifacts["tracer_attribution"]``.
    """
    stored = exp.attribution
    label = stored if stored is not None and stored.method == "label" else None
    tracer = stored if stored is not None and stored.method != "label" else None
    if tracer is None:
        extra: Any = getattr(exp, TRACER_ARTIFACT, None) or exp.artifacts.get(TRACER_ARTIFACT)
        if extra is not None:
            try:
                tracer = Attribution.model_validate(extra)
            except ValidationError as exc:
                return None, label, f"the stored tracer attribution is unreadable: {describe(exc)}"
    return tracer, label, None


def _risk(
    artifacts: Mapping[str, Any], steps: int
) -> tuple[list[float | None] | None, float | None]:
    raw = artifacts.get(RISK_ARTIFACT)
    threshold = None
    if isinstance(raw, Mapping):
        threshold = raw.get("threshold")
        raw = raw.get("risk")
    if not isinstance(raw, list) or not raw:
        return None, None
    values = [float(v) if isinstance(v, int | float) else None for v in raw[:steps]]
    return values, float(threshold) if isinstance(threshold, int | float) else None


def _scores(attribution: Attribution | None, steps: int) -> list[float | None]:
    if attribution is None or not attribution.step_scores:
        return []
    scores: list[float | None] = [float(s) for s in attribution.step_scores[:steps]]
    return scores + [None] * (steps - len(scores))


class Viewer(Service):
    """The pages people read: one run, and the listing of the namespace."""

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

    # -- gathering ------------------------------------------------------------------------------
    def gather_run(self, experience_id: str) -> RunView:
        """Everything the run page shows for ``experience_id``.

        Raises:
            NotFound: no such experience in this namespace.
        """
        exp = self.experiences.get(experience_id)
        tracer, label, problem = attributions(exp)
        risk, threshold = _risk(exp.artifacts, len(exp.steps))
        repairs, derived = self.neighbours(exp)
        return RunView(
            experience=exp,
            tracer=tracer,
            label=label,
            scores=_scores(tracer or label, len(exp.steps)),
            risk=risk,
            risk_threshold=threshold,
            nearest=self.nearest_success(exp),
            repairs=repairs,
            skills=derived,
            notes=[problem] if problem else [],
        )

    def _same_task(self, exp: Experience) -> dict[str, Experience]:
        """Successes of the same task: linked by ``repaired_by``, or with the same source id."""
        linked = [
            e.dst
            for e in self.experiences.edges(exp.id, kinds={"repaired_by"})
            if e.src == exp.id and e.dst != exp.id
        ]
        found = {
            i: e
            for i, e in self.records.get_experiences(linked).items()
            if e.outcome == Outcome.success
        }
        source = exp.provenance.source_id
        if source:
            for other in self.records.by_source_id(source):
                if other.outcome == Outcome.success and other.id != exp.id:
                    found.setdefault(other.id, other)
        return found

    def _similar(self, exp: Experience) -> list[Experience]:
        """The most similar successful tasks (hybrid search, lexical when the model differs)."""
        options: dict[str, Any] = {
            "kind": "experience",
            "outcome": "success",
            "graph": False,
            "exclude_ids": [exp.id],
        }
        query = exp.task[:2000]
        try:
            hits = self.search.search(query, SIMILAR, **options)
        except ModelMismatch:
            hits = self.search.search(query, SIMILAR, mode="lexical", **options)
        found = self.records.get_experiences([h.id for h in hits])
        return [found[h.id] for h in hits if h.id in found]

    def nearest_success(self, exp: Experience) -> Alignment | None:
        """The successful run closest to ``exp``, aligned step by step: a run of the same task
        when one is stored (the one whose steps match best), else the best-matching of the
        most similar successful tasks."""
        same = self._same_task(exp)
        if same:
            candidates = [(e, True) for e in same.values()]
        else:
            candidates = [
                (e, e.task == exp.task) for e in self._similar(exp) if e.merged_into is None
            ]
        if not candidates:
            return None
        alignments = [align(exp, e, same_task=same_task) for e, same_task in candidates]
        return max(alignments, key=lambda a: (a.same_task, a.similarity))

    def neighbours(self, exp: Experience) -> tuple[list[Neighbour], list[Neighbour]]:
        """Repairs (``repaired_by`` either way) and skills derived from ``exp``."""
        edges = self.experiences.edges(exp.id, kinds={"repaired_by", "derived_from"})
        wanted: list[tuple[str, str]] = []
        for edge in edges:
            if edge.kind == "repaired_by":
                other = edge.dst if edge.src == exp.id else edge.src
                wanted.append((other, "repaired by" if edge.src == exp.id else "repairs"))
            elif edge.dst == exp.id and kind_of(edge.src) == "skill":
                wanted.append((edge.src, "derived skill"))
        items = self.records.get_any(list(dict.fromkeys(i for i, _ in wanted)))
        repairs: list[Neighbour] = []
        derived: list[Neighbour] = []
        for item_id, relation in wanted:
            item = items.get(item_id)
            if isinstance(item, Experience):
                repairs.append(
                    Neighbour(
                        id=item.id,
                        relation=relation,
                        title=item.task,
                        outcome=item.outcome.value,
                    )
                )
            elif isinstance(item, Skill):
                derived.append(
                    Neighbour(
                        id=item.id,
                        relation=f"{item.name} v{item.version}",
                        title=item.description,
                        status=item.status.value,
                    )
                )
        return repairs, derived

    def listing(
        self, *, outcome: str | None = "failure", domain: str | None = None, limit: int = 50
    ) -> list[ListItem]:
        """Experiences of the namespace, newest first (failures by default; ``all`` or None
        for every outcome), with their blamed agent and step."""
        chosen = None if outcome in {None, "", "all"} else outcome
        items = []
        for exp in self.experiences.all(outcome=chosen, domain=domain or None, limit=limit):
            tracer, label, _ = attributions(exp)
            blamed = tracer or label
            items.append(
                ListItem(
                    id=exp.id,
                    task=exp.task,
                    outcome=exp.outcome.value,
                    domain=exp.domain,
                    agent=exp.agent,
                    steps=len(exp.steps),
                    blamed_agent=blamed.agent if blamed else None,
                    blamed_step=blamed.step if blamed else None,
                    method=blamed.method if blamed else None,
                    labelled=label is not None,
                    label_step=label.step if label is not None else None,
                    created_at=exp.provenance.created_at,
                )
            )
        return items

    # -- pages ----------------------------------------------------------------------------------
    def html(self, experience_id: str, *, link: str | None = None) -> str:
        """The run page of ``experience_id`` as one self-contained HTML document.

        Args:
            link: a pattern for links to other runs (``"/view/{id}"``); None shows ids only.
        """
        return render_run(self.gather_run(experience_id), link=link)

    def list_html(
        self,
        *,
        outcome: str | None = "failure",
        domain: str | None = None,
        limit: int = 50,
        link: str | None = None,
        live: bool = False,
    ) -> str:
        """The listing page (see :meth:`listing`) as one self-contained HTML document.

        Args:
            link: a pattern for links to the runs (``"/view/{id}"``, ``"{id}.html"``).
            live: the filter form asks the server again instead of filtering the page.
        """
        items = self.listing(outcome=outcome, domain=domain, limit=limit)
        return render_list(
            items,
            outcome=outcome or "all",
            domain=domain,
            link=link,
            live=live,
            title=f"Runs of {self.namespace}",
        )


__all__ = ["RISK_ARTIFACT", "TRACER_ARTIFACT", "Viewer", "attributions"]
