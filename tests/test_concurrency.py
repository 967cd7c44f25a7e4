"""Two writer processes and one reader process on one store for ~20 s: no error, nothing lost.

Every process uses the deterministic ``HashEmbedder``: concurrency is about the file lock, LanceDB
commit conflicts and compaction, not about meaning, and a real model in three processes would
spend the time loading rather than racing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kb.embeddings import HashEmbedder
from kb.service import KnowledgeBase

pytestmark = pytest.mark.slow

SECONDS = 20
WRITER = """
import json, sys, time
from kb.embeddings import HashEmbedder
from kb.service import KnowledgeBase

path, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
ids = []
with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        size = 1 + n % 7
        batch = [{"task": f"{name} record w{name}n{n + i}x", "outcome": "success" if i % 2 else "failure",
                  "tags": [name], "steps": [{"index": 0, "role": "assistant", "content": "go"}]}
                 for i in range(size)]
        got = [r.id for r in kb.add_experiences(batch)]
        assert len(got) == size
        ids += got
        n += size
        if n % 5 == 0:
            kb.update_experience(got[0], {"lessons": [f"lesson of {name}"]})
print(json.dumps({"written": len(ids), "ids": ids}))
"""
READER = """
import json, sys, time
from kb.embeddings import HashEmbedder
from kb.service import KnowledgeBase

path, seconds = sys.argv[1], float(sys.argv[2])
reads, last = 0, 0
with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for mode in ("hybrid", "vector", "lexical"):
            for hit in kb.search("record of a writer", k=20, mode=mode, tags=["a", "b"]):
                assert kb.get_experience(hit.id).id == hit.id
        count = kb.stats().experiences
        assert count >= last, (count, last)
        last = count
        kb.list_experiences(limit=20)
        reads += 1
print(json.dumps({"reads": reads, "last": last}))
"""


def test_two_writers_and_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        kb.add_experience({"task": "seed record so the index exists"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", READER, str(path), str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=SECONDS + 240)
        assert proc.returncode == 0, err[-4000:]
        assert "Traceback" not in err
        results.append(json.loads(out.strip().splitlines()[-1]))
    writers, reader = results[:2], results[2]
    written = sum(w["written"] for w in writers)
    assert all(w["written"] > 0 for w in writers)
    assert reader["reads"] > 0

    with KnowledgeBase.open(path, embedder=HashEmbedder()) as kb:
        ids = {e.id for e in kb.list_experiences(limit=10_000)}
        assert len(ids) == kb.stats().experiences == written + 1
        for writer in writers:
            assert set(writer["ids"]) <= ids
        kb.search("record", mode="lexical")
        assert kb.stats().pending_index == 0
        assert kb.store.items.ids() == ids
        assert kb.store.items.count() == len(ids)  # no duplicate rows from retried commits
        assert kb.doctor().ok
        some = writers[0]["ids"][-1]
        token = kb.get_experience(some).task.split()[-1]
        assert kb.search(token, mode="lexical")[0].id == some
    print(
        f"writers wrote {[w['written'] for w in writers]}, the reader made {reader['reads']} passes"
    )
