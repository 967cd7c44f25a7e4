"""The ``KnowledgeBase`` facade: every SDK, CLI and MCP operation is one call here."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from kb import documents as docs
from kb.auth import TokenOps
from kb.config import Settings
from kb.config import settings as load_settings
from kb.embeddings import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from kb.errors import Conflict, ImportFailed, Invalid, ModelMismatch, NotFound
from kb.importers import describe
from kb.loop import LoopOps
from kb.models import (
    MAX_BATCH,
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceUpdate,
    Kind,
    SearchHit,
    Skill,
    SkillCreate,
    SkillStatus,
    kind_of,
    new_id,
    signature_of,
    utcnow,
)
from kb.retrieval import MODES, Filters, Weights, fuse, graph_ranking, skill_statuses
from kb.skill_ops import SkillOps
from kb.stores.graph import Graph
from kb.stores.records import Records
from kb.stores.sql import SQLStore
from kb.stores.vectors import VectorIndex, quote
from kb.trace_ops import TraceOps

Progress = Callable[[int], None]
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WRITE_BATCH = 256
_QUERY_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="kb-query")


class AddResult(BaseModel):
    """What an add did: the id of the record and whether it was ``added`` or ``merged``."""

    id: str
    action: str = "added"


def _coerce(model: type[BaseModel], value: Any, what: str) -> Any:
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise Invalid(f"{what}: {describe(exc)}") from exc


class KnowledgeBase(SkillOps, TraceOps, LoopOps, TokenOps):
    """An experience memory and skill library, bound to one namespace of one store.

    Open it with :meth:`open`; use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        *,
        namespace: str,
        settings: Settings,
        embedder: Embedder | None = None,
    ):
        if not NAMESPACE_RE.match(namespace):
            raise Invalid(
                f"namespace {namespace!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )
        self.path = path
        self.namespace = namespace
        self.settings = settings
        path.mkdir(parents=True, exist_ok=True)
        self.sql = SQLStore(settings.sql_url) if settings.sql_url else SQLStore.at(path)
        self.records = Records(self.sql, namespace)
        self.index = VectorIndex(settings.index_uri or path / "index")
        self._file_lock = FileLock(str(path / ".write.lock"), timeout=300)
        self._thread_lock = threading.RLock()
        self._embedder_arg = embedder
        self._embedder: CachedEmbedder | None = None
        self.model_name = embedder.name if embedder is not None else settings.model
        self.weights = Weights(
            vector=settings.w_vector,
            lexical=settings.w_lexical,
            structure=settings.w_structure,
            graph=settings.w_graph,
            rrf_k=settings.rrf_k,
        )
        self._graph_version: str | None = None
        self._graph = Graph()
        self._repaired = False
        self._closed = False

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
        store = Path(path).expanduser() if path is not None else settings.store_path()
        if store.exists() and not store.is_dir():
            raise Invalid(f"store path {store} exists and is not a directory")
        return cls(
            store, namespace=namespace or settings.namespace, settings=settings, embedder=embedder
        )

    def close(self) -> None:
        """Release the store (files stay as they are)."""
        if not self._closed:
            self.sql.dispose()
            self._closed = True

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def embedder(self) -> CachedEmbedder:
        """The embedding model (loaded on first use), behind the content-hash cache."""
        if self._embedder is None:
            inner = self._embedder_arg or SentenceTransformerEmbedder(
                self.settings.model,
                device=self.settings.device,
                batch_size=self.settings.batch_size,
            )
            self._embedder = CachedEmbedder(inner, get=self.sql.cache_get)
        return self._embedder

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time per store: a thread lock and a file lock across processes."""
        with self._thread_lock:
            try:
                with self._file_lock:
                    yield
            except Timeout as exc:
                raise Conflict(
                    f"the store {self.path} is locked by another writer; try again"
                ) from exc

    def stored_model(self) -> tuple[str | None, int | None]:
        dim = self.sql.get_meta("dim")
        return self.sql.get_meta("model"), int(dim) if dim else None

    def _check_model(self) -> None:
        stored, _ = self.stored_model()
        if stored is not None and stored != self.model_name:
            raise ModelMismatch(
                f"this store's vectors were made with {stored!r} but the configured model is "
                f"{self.model_name!r}; run `kb reindex` to re-embed with {self.model_name!r} "
                "(or configure the store's model)"
            )

    def _embed(self, texts: list[str]) -> np.ndarray:
        self._check_model()
        return self.embedder.encode(texts)

    @property
    def graph(self) -> Graph:
        """The graph of stored edges of this namespace, reloaded when another process changed it."""
        version = self.sql.get_meta(f"graph_version:{self.namespace}") or "0"
        if version != self._graph_version:
            self._graph = Graph(self.records.edges())
            self._graph_version = version
        return self._graph

    def _index_rows(
        self, items: Sequence[Experience | Skill], vectors: np.ndarray
    ) -> list[dict[str, Any]]:
        rows = []
        dim = int(vectors.shape[1])
        for item, vector in zip(items, vectors, strict=True):
            row: dict[str, Any]
            if isinstance(item, Experience):
                row = {
                    "kind": Kind.experience.value,
                    "outcome": item.outcome.value,
                    "status": None,
                    "latest": item.merged_into is None,
                    "text": docs.experience_fts_text(item),
                    "sig": docs.signature_tokens(item.signature),
                    "source_id": item.provenance.source_id,
                }
            else:
                row = {
                    "kind": Kind.skill.value,
                    "outcome": None,
                    "status": item.status.value,
                    "latest": item.latest,
                    "text": docs.skill_fts_text(item),
                    "sig": "",
                    "source_id": item.provenance.source_id,
                }
            row.update(
                id=item.id,
                namespace=item.namespace,
                domain=item.domain,
                tags=list(item.tags),
                model=self.model_name,
                dim=dim,
                vector=vector.astype(np.float32),
            )
            rows.append(row)
        return rows

    @staticmethod
    def embed_text(item: Experience | Skill) -> str:
        if isinstance(item, Experience):
            return docs.experience_embed_text(item)
        return docs.skill_embed_text(item)

    def _store(
        self,
        items: Sequence[Experience | Skill],
        *,
        vectors: np.ndarray | None = None,
        replace: bool = False,
        before_commit: Callable[[Any], None] | None = None,
    ) -> None:
        """The write path: SQL commit (marked unindexed), then the index, then mark indexed.

        A crash between the steps leaves rows that :meth:`repair` re-indexes on next use.
        """
        if not items:
            return
        if vectors is None:
            vectors = self._embed([self.embed_text(i) for i in items])
        with self._writing():
            with self.sql.session() as session:
                self.records.put(session, items)
                self.sql.cache_put(self.embedder.drain() if self._embedder else {}, session)
                if self.sql.get_meta("model") is None:
                    self.sql.set_meta(
                        {"model": self.model_name, "dim": str(vectors.shape[1])}, session
                    )
                if before_commit is not None:
                    before_commit(session)
            self.index.upsert(self._index_rows(items, vectors), new=not replace)
            self.records.mark_indexed([i.id for i in items])

    def repair(self) -> int:
        """Index what SQL holds but the index lacks (after a crash); return how many rows."""
        pending = self.records.unindexed()
        if not pending:
            return 0
        self._check_model()
        for start in range(0, len(pending), WRITE_BATCH):
            chunk = pending[start : start + WRITE_BATCH]
            vectors = self.embedder.encode([self.embed_text(i) for i in chunk])
            with self._writing():
                self.sql.cache_put(self.embedder.drain())
                self.index.upsert(self._index_rows(chunk, vectors), new=False)
                self.records.mark_indexed([i.id for i in chunk])
        return len(pending)

    def _ready(self) -> None:
        if not self._repaired:
            self.repair()
            self._repaired = True

    # -- experiences ---------------------------------------------------------------------------
    def _new_experience(self, data: ExperienceCreate) -> Experience:
        now = utcnow()
        return Experience(
            **data.model_dump(),
            id=new_id("exp"),
            namespace=self.namespace,
            signature=signature_of(data.steps),
            updated_at=now,
        )

    def add_experience(
        self, experience: ExperienceCreate | Mapping[str, Any], *, policy: str = "admit"
    ) -> AddResult:
        """Record one experience; returns its id and what was done (``added`` or ``merged``).

        Args:
            policy: ``admit`` (default: every add is a new record), ``dedupe`` (merge exact-meaning
                duplicates) or ``novelty`` (merge anything close enough); see
                :meth:`admit_experiences`.
        """
        data = _coerce(ExperienceCreate, experience, "experience")
        exp = self._new_experience(data)
        self._ready()
        return self._admit([exp], policy)[0]

    def add_experiences(
        self,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: str = "admit",
        progress: Progress | None = None,
    ) -> list[str]:
        """Record many experiences in batches; all are validated before anything is written.

        Returns, in input order, the id of the record each input ended up in (its new id, or
        under ``dedupe``/``novelty`` the id it was merged into; :meth:`admit_experiences` also says
        which). At most ``MAX_BATCH`` records per call.
        """
        return [r.id for r in self.admit_experiences(experiences, policy=policy, progress=progress)]

    def _validated(
        self, experiences: Iterable[ExperienceCreate | Mapping[str, Any]]
    ) -> list[Experience]:
        items = []
        for number, value in enumerate(experiences):
            if number >= MAX_BATCH:
                raise Invalid(f"at most {MAX_BATCH} experiences per call; split the batch")
            items.append(
                self._new_experience(_coerce(ExperienceCreate, value, f"experience {number}"))
            )
        return items

    def get_experience(self, experience_id: str) -> Experience:
        """The experience with this id (in this namespace)."""
        found = self.records.get_experiences([experience_id])
        if experience_id not in found:
            raise NotFound(f"no experience {experience_id!r} in namespace {self.namespace!r}")
        return found[experience_id]

    def update_experience(
        self, experience_id: str, changes: ExperienceUpdate | Mapping[str, Any]
    ) -> Experience:
        """Change fields of an experience; returns the stored result."""
        patch = _coerce(ExperienceUpdate, changes, "update")
        current = self.get_experience(experience_id)
        merged = current.model_dump() | patch.model_dump(exclude_unset=True)
        merged["updated_at"] = utcnow()
        updated = _coerce(Experience, merged, "experience")
        self._ready()
        self._store([updated], replace=True)
        return updated

    def delete_experience(self, experience_id: str) -> None:
        """Delete an experience, its edges and its events."""
        self.get_experience(experience_id)
        self._delete([experience_id])

    def _delete(self, ids: list[str]) -> None:
        with self._writing():
            with self.sql.session() as session:
                self.records.delete(session, ids)
                self._bump_graph(session)
            self.index.delete(ids)

    def list_experiences(
        self,
        *,
        outcome: str | None = None,
        domain: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Experience]:
        """Experiences, newest first, optionally filtered."""
        if not 1 <= limit <= 10_000:
            raise Invalid("limit must be between 1 and 10000")
        return self.records.list_experiences(
            outcome=outcome, domain=domain, tag=tag, limit=limit, offset=max(0, offset)
        )

    # -- skills (records; the lifecycle lives in SkillOps) -------------------------------------
    def add_skill(self, skill: SkillCreate | Mapping[str, Any]) -> Skill:
        """Add a new skill (version 1 unless given). A name that exists is a conflict."""
        data = _coerce(SkillCreate, skill, "skill")
        if self.records.skill_versions(data.name):
            raise Conflict(
                f"skill {data.name!r} already exists in namespace {self.namespace!r}; "
                "update it to make a new version"
            )
        stored = Skill(**data.model_dump(), id=new_id("skl"), namespace=self.namespace)
        self._ready()
        self._store([stored])
        return stored

    def get_skill(self, name: str, version: int | None = None) -> Skill:
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

    def list_skills(
        self, *, status: str | None = None, all_versions: bool = False, limit: int = 1000
    ) -> list[Skill]:
        """Skills (latest versions unless ``all_versions``), by name."""
        return self.records.list_skills(status=status, all_versions=all_versions, limit=limit)

    def search_skills(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        include_drafts: bool = False,
        status: list[str] | None = None,
        **filters: Any,
    ) -> list[SearchHit]:
        """Skills for a task: validated and approved by default (validated first)."""
        return self.search(
            query,
            k,
            kind="skill",
            mode=mode,
            include_drafts=include_drafts,
            status=status,
            **filters,
        )

    # -- graph and feedback --------------------------------------------------------------------
    def _bump_graph(self, session: Any) -> None:
        self.sql.set_meta({f"graph_version:{self.namespace}": new_id("g")}, session)

    def add_edge(self, src: str, dst: str, kind: str, *, weight: float = 1.0) -> Edge:
        """Link two items of this namespace (e.g. ``derived_from``, ``repaired_by``)."""
        edge = _coerce(Edge, {"src": src, "dst": dst, "kind": kind, "weight": weight}, "edge")
        missing = [i for i in (src, dst) if not self.records.exists(i)]
        if missing:
            raise NotFound(f"no item {missing[0]!r} in namespace {self.namespace!r}")
        with self._writing(), self.sql.session() as session:
            self.records.put_edges(session, [edge])
            self._bump_graph(session)
        return edge

    def edges(self, item_id: str, *, kinds: set[str] | None = None) -> list[Edge]:
        """Edges touching an item, both directions."""
        return self.graph.edges(item_id, kinds=kinds)

    def feedback(self, item_id: str, *, success: bool, note: str | None = None) -> dict[str, Any]:
        """Record that an experience or skill was used and whether it helped.

        Returns the item's updated usage counts.
        """
        kind = kind_of(item_id)
        if kind is None:
            raise Invalid(f"{item_id!r} is not an experience (exp_...) or skill (skl_...) id")
        with self._writing(), self.sql.session() as session:
            counts = self.records.record_use(session, item_id, success=success, note=note)
        if counts is None:
            raise NotFound(f"no {kind} {item_id!r} in namespace {self.namespace!r}")
        return counts

    # -- search --------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        kind: str | None = None,
        mode: str = "hybrid",
        outcome: str | list[str] | None = None,
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
    ) -> list[SearchHit]:
        """Hybrid search over experiences and skills of this namespace.

        Args:
            query: free text.
            k: how many hits (1 to 200).
            kind: ``experience`` or ``skill``; both when None.
            mode: ``hybrid`` (vector + lexical + structure + graph), ``vector`` or ``lexical``.
            outcome, domain, tags: filters on experiences (tags: any of).
            status: skill statuses to allow (default: validated and approved).
            include_drafts: also allow draft skills.
            signature: a tool sequence to match structurally (experiences).
            graph: expand the best hits along stored edges.
            prf: with no ``signature``, derive one from this many first-pass hits (pseudo-relevance
                feedback) and match it structurally; 0 turns it off.
            outcome_aware: blend relevance with success rate and recency
                (:func:`kb.retrieval.outcome_factor`); None: on once enough feedback exists.
        Returns:
            hits, best first, each with the rank and score of every signal that found it.
        """
        if not query or not query.strip():
            raise Invalid("query must not be empty")
        if mode not in MODES:
            raise Invalid(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not 1 <= k <= 200:
            raise Invalid("k must be between 1 and 200")
        if kind is not None and kind not in {"experience", "skill"}:
            raise Invalid(f"kind must be experience or skill, not {kind!r}")
        statuses = skill_statuses(include_drafts=include_drafts, status=status)
        filters = Filters(
            kind=kind,
            outcome=outcome,
            domain=domain,
            tags=list(tags) if tags else None,
            status=statuses,
            exclude_ids=list(exclude_ids),
            exclude_source_ids=list(exclude_source_ids),
        )
        hits = self._search(
            query,
            k,
            mode=mode,
            filters=filters,
            signature=signature,
            graph=graph,
            weights=weights or self.weights,
            prf=prf,
        )
        return self._rerank_outcomes(hits, outcome_aware)

    def _rankings(
        self, query: str, n: int, *, mode: str, where: str, signature: list[str] | None
    ) -> dict[str, list[tuple[str, float]]]:
        queries: dict[str, Callable[[], list[tuple[str, float]]]] = {}
        if mode in {"hybrid", "vector"}:
            vector = self._embed([query])[0]
            queries["vector"] = lambda: self.index.vector_search(vector, k=n, where=where)
        if mode in {"hybrid", "lexical"}:
            text = docs.fts_query(query)
            queries["lexical"] = lambda: self.index.text_search(text, k=n, where=where)
        if signature and mode == "hybrid":
            tokens = docs.signature_tokens(signature)
            queries["structure"] = lambda: self.index.text_search(
                tokens, k=n, where=where, column="sig"
            )
        if len(queries) == 1:
            return {name: run() for name, run in queries.items()}
        # LanceDB runs each query in Rust without the GIL: side by side they use both cores.
        futures = {name: _QUERY_POOL.submit(run) for name, run in queries.items()}
        return {name: future.result() for name, future in futures.items()}

    def _search(
        self,
        query: str,
        k: int,
        *,
        mode: str,
        filters: Filters,
        signature: list[str] | None,
        graph: bool,
        weights: Weights,
        prf: int = 0,
    ) -> list[SearchHit]:
        self._ready()
        where = filters.where(self.namespace, quote)
        n = max(3 * k, 30)
        rankings = self._rankings(query, n, mode=mode, where=where, signature=signature)
        fused = fuse(rankings, weights)
        if mode == "hybrid" and (signature or prf) and fused:
            rankings["structure"] = self._structure_signal(
                fused, rankings.get("structure", []), signature=signature, prf=prf, n=n, where=where
            )
            fused = fuse(rankings, weights)
        if graph and mode == "hybrid" and fused:
            neighbours = self.graph.neighbours([f.id for f in fused[:5]])
            if neighbours:
                rankings["graph"] = graph_ranking(fused[:5], neighbours)
                fused = fuse(rankings, weights)
        hits: list[SearchHit] = []
        page = k + 5  # hydrate from SQL page by page: records are whole documents
        for start in range(0, len(fused), page):
            chunk = fused[start : start + page]
            records = self.records.get_any([f.id for f in chunk])
            for entry in chunk:
                item = records.get(entry.id)
                if item is None:
                    continue  # deleted, or not committed yet: never visible
                if isinstance(item, Experience) and item.merged_into is not None:
                    continue  # folded into another record by admission control (via the graph)
                kind = "experience" if isinstance(item, Experience) else "skill"
                if "graph" in entry.signals and not filters.accepts(
                    item.model_dump(mode="json"), kind
                ):
                    continue
                hits.append(self._hit(item, entry.score, entry.signals))
            if len(hits) >= page:
                break
        hits.sort(key=lambda h: -h.score * (1.1 if h.status == SkillStatus.validated else 1.0))
        return hits[:k]

    @staticmethod
    def _hit(item: Experience | Skill, score: float, signals: dict[str, Any]) -> SearchHit:
        if isinstance(item, Experience):
            return SearchHit(
                id=item.id,
                kind=Kind.experience,
                score=round(score, 6),
                title=item.task[:200],
                snippet=(item.strategy or item.final_answer or "")[:300],
                outcome=item.outcome,
                signals=signals,
                attribution=item.attribution,
                provenance=item.provenance,
                record=item.model_dump(mode="json", exclude={"steps"}),
            )
        return SearchHit(
            id=item.id,
            kind=Kind.skill,
            score=round(score, 6),
            title=item.name,
            snippet=item.description[:300],
            status=item.status,
            signals=signals,
            provenance=item.provenance,
            record=item.model_dump(mode="json", exclude={"program"}),
        )

    # -- import / export -----------------------------------------------------------------------
    def import_file(
        self,
        path: str | Path,
        format: str = "auto",
        *,
        skip_invalid: bool = False,
        domain: str | None = None,
        progress: Progress | None = None,
    ) -> Any:
        """Import a file (see :mod:`kb.importers` for formats, ``kb`` for the lossless export).

        By default a bad record aborts the file and nothing from it is stored; with
        ``skip_invalid`` the rest is imported and the report lists what was skipped.
        """
        from kb.transfer import import_file

        return import_file(
            self, Path(path), format, skip_invalid=skip_invalid, domain=domain, progress=progress
        )

    def export(self, path: str | Path, *, format: str = "jsonl") -> dict[str, Any]:
        """Write this namespace to ``path``: ``jsonl`` is lossless (records, edges, events,
        embeddings with the model id) and re-imports with ``import_file``."""
        from kb.transfer import export

        return export(self, Path(path), format)

    # -- maintenance ---------------------------------------------------------------------------
    def stats(self) -> Any:
        """Counts of this namespace and the state of its index."""
        model, dim = self.stored_model()
        return self.records.stats(
            str(self.path), model=model, dim=dim, schema_version=self.sql.schema_version
        )

    def reindex(self, *, progress: Progress | None = None) -> int:
        """Rebuild the whole index from SQL with the configured model; returns rows indexed."""
        with self._writing():
            self.index.drop()
            with self.sql.session() as session:
                self.sql.set_meta({"model": self.model_name}, session)
                self.records.mark_all_unindexed(session)
        total = 0
        for chunk in self.records.iter_all_namespaces(WRITE_BATCH):
            vectors = self.embedder.encode([self.embed_text(i) for i in chunk])
            with self._writing():
                if total == 0:
                    self.sql.set_meta({"dim": str(vectors.shape[1])})
                self.sql.cache_put(self.embedder.drain())
                self.index.upsert(self._index_rows(chunk, vectors), new=True)
                self.records.mark_indexed([i.id for i in chunk])
            total += len(chunk)
            if progress:
                progress(len(chunk))
        with self._writing():
            self.index.optimize()
        self._repaired = True
        return total

    def optimize(self) -> None:
        """Compact the index and fold new rows into its indexes."""
        with self._writing():
            self.index.optimize()

    def doctor(self) -> Any:
        """Check the model, the index against SQL, and versions."""
        from kb.transfer import doctor

        return doctor(self)


__all__ = ["AddResult", "ImportFailed", "KnowledgeBase"]
