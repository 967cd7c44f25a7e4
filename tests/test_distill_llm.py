"""LLM distillation against a local HTTP server on 127.0.0.1 that returns FIXED replies.

This checks the protocol (endpoint path, model, headers, JSON mode, the strategy/execution prompt),
the parsing and schema validation of replies, the retries (transport, 5xx, invalid replies) and the
cache by content hash, not the quality of any model. No network is used.

No small instruction model installs from the package registries here (the runtimes on PyPI fetch
their weights from a model hub at run time, which this machine cannot reach), so no test runs a
real model behind an OpenAI-compatible server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from kb.distill import decision_tools, distill
from kb.distill_llm import LLMDistiller, render_prompt
from kb.embeddings import HashEmbedder
from kb.errors import Invalid
from kb.models import ExperienceCreate
from kb.service import KnowledgeBase
from kb.trace import LLMConfig, LLMError

pytestmark = pytest.mark.timeout(60)

Replier = Callable[[dict[str, Any]], tuple[int, str]]

GOOD = {
    "strategy": {
        "goal": "Refund a damaged item",
        "decision_points": [
            {"tool": "find_customer", "bindings": {"email": "user"}},
            {"tool": "get_order", "bindings": {"order_id": "user"}, "note": "read what was paid"},
            {"tool": "refund_payment", "bindings": {"amount": "get_order"}},
        ],
        "checks": ["read the amount paid before refunding"],
    },
    "plan": ["verify the customer", "read the order", "refund at most the amount paid"],
    "lessons": ["Refunding more than was paid fails: read the order first."],
}


def completion(content: str) -> str:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})


class FixedServer:
    """Answers each POST with the next (status, body) of ``replies`` (the last one repeats)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: list[tuple[int, str]] = [(200, completion(json.dumps(GOOD)))]
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, **body})
                owner.headers.append(dict(self.headers))
                n = min(len(owner.requests), len(owner.replies)) - 1
                status, payload = owner.replies[n]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def server() -> Iterator[FixedServer]:
    srv = FixedServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def run() -> ExperienceCreate:
    steps = [
        {"role": "user", "content": "My blender arrived broken, order #A100, email ana@x.org"},
        {
            "role": "assistant",
            "kind": "tool_call",
            "tool": "find_customer",
            "args": {"email": "ana@x.org"},
        },
        {"role": "tool", "kind": "observation", "tool": "find_customer", "result": "c_ana"},
        {
            "role": "assistant",
            "kind": "tool_call",
            "tool": "get_order",
            "args": {"order_id": "#A100"},
        },
        {"role": "tool", "kind": "observation", "tool": "get_order", "result": '{"paid": 25.0}'},
        {
            "role": "assistant",
            "kind": "tool_call",
            "tool": "refund_payment",
            "args": {"amount": 40.0},
        },
        {
            "role": "tool",
            "kind": "error",
            "tool": "refund_payment",
            "error": "Error: refund amount 40.0 exceeds the amount paid (25.0)",
        },
    ]
    return ExperienceCreate.model_validate(
        {"task": "Refund the broken blender", "outcome": "failure", "steps": steps}
    )


def distiller(server: FixedServer, tmp_path: Path | None = None, **options: Any) -> LLMDistiller:
    config = LLMConfig(base_url=server.url, model="distil-1b", api_key="sk-test", timeout=5)
    return LLMDistiller(
        config, cache_dir=tmp_path / "cache" if tmp_path else None, sleep=lambda s: None, **options
    )


def test_protocol_prompt_and_parsed_reply(server: FixedServer) -> None:
    server.replies = [(200, completion("Here you go:\n```json\n" + json.dumps(GOOD) + "\n```"))]
    exp = run()
    result = distiller(server).distill(exp, distill(exp))
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["model"] == "distil-1b"
    assert request["response_format"] == {"type": "json_object"}
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert "STRATEGY" in system and "EXECUTION" in system
    assert "TASK: Refund the broken blender" in user and "OUTCOME: failure" in user
    assert "FAILING STEP: 5" in user
    assert '[step 5] assistant: CALL refund_payment({"amount": 40.0})' in user
    assert "DRAFT (rule-based, improve it): Goal: Refund the broken blender" in user
    assert result.method == "llm:distil-1b"
    assert decision_tools(result.strategy_text()) == [
        "find_customer",
        "get_order",
        "refund_payment",
    ]
    assert result.plan == GOOD["plan"] and result.lessons == GOOD["lessons"]
    assert result.checks == ["read the amount paid before refunding"]


def test_invalid_replies_are_sent_back_until_one_validates(server: FixedServer) -> None:
    invented = json.loads(json.dumps(GOOD))
    invented["strategy"]["decision_points"][0]["tool"] = "delete_customer"
    server.replies = [
        (200, completion("I think the run failed.")),  # no JSON at all
        (200, completion('{"plan": ["x"]}')),  # no strategy: fails the schema
        (200, completion(json.dumps(invented))),  # a tool the run never called
        (200, completion(json.dumps(GOOD))),
    ]
    result = distiller(server, retries=3).distill(run(), distill(run()))
    assert len(server.requests) == 4
    assert result.points[0].tool == "find_customer"
    last = server.requests[3]["messages"]
    assert last[-2]["role"] == "assistant" and "delete_customer" in last[-2]["content"]
    assert "never called: ['delete_customer']" in last[-1]["content"]
    assert "That reply is not valid" in server.requests[1]["messages"][-1]["content"]


def test_server_errors_are_retried_then_reported(server: FixedServer) -> None:
    server.replies = [(503, "busy"), (500, "oops"), (200, completion(json.dumps(GOOD)))]
    result = distiller(server, retries=2).distill(run(), distill(run()))
    assert len(server.requests) == 3 and result.lessons == GOOD["lessons"]

    server.requests.clear()
    server.replies = [(503, "busy")]
    with pytest.raises(LLMError, match=r"answered 503: busy \(after 3 tries\)"):
        distiller(server, retries=2).distill(run(), distill(run()))
    assert len(server.requests) == 3

    server.requests.clear()
    server.replies = [(401, "bad key")]
    with pytest.raises(LLMError, match="answered 401: bad key"):
        distiller(server, retries=2).distill(run(), distill(run()))
    assert len(server.requests) == 1  # not retried

    server.requests.clear()
    server.replies = [(200, completion("no json here"))]
    with pytest.raises(LLMError, match="no valid distillation after 2 replies"):
        distiller(server, retries=1).distill(run(), distill(run()))

    server.replies = [(200, "<html>not a completion</html>")]
    with pytest.raises(LLMError, match="sent no chat completion"):
        distiller(server).distill(run(), distill(run()))


def test_an_unreachable_endpoint_is_an_error() -> None:
    config = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout=2)
    with pytest.raises(LLMError, match="unreachable"):
        LLMDistiller(config, retries=1, sleep=lambda s: None).distill(run(), distill(run()))


def test_replies_are_cached_by_content_hash(server: FixedServer, tmp_path: Path) -> None:
    exp = run()
    first = distiller(server, tmp_path).distill(exp, distill(exp))
    again = distiller(server, tmp_path)
    assert again.distill(exp, distill(exp)) == first
    assert len(server.requests) == 1 and again.cache_hits == 1
    changed = exp.model_copy(update={"task": "Refund the broken kettle"})
    again.distill(changed, distill(changed))
    assert len(server.requests) == 2  # other content: asked again


def test_prompt_shows_the_repair() -> None:
    exp = run()
    fixed = ExperienceCreate.model_validate(
        {
            **exp.model_dump(),
            "outcome": "success",
            "steps": [
                s.model_dump()
                if s.tool != "refund_payment"
                else {**s.model_dump(), "args": {"amount": 25.0}}
                for s in exp.steps[:6]
            ],
        }
    )
    prompt = render_prompt(exp, distill(exp, repairs=[fixed]), [fixed])
    assert "A SUCCESSFUL RUN OF THE SAME TASK CALLED: find_customer(email=ana@x.org)" in prompt
    assert "refund_payment(amount=25.0)" in prompt
    assert (
        "Instead of refund_payment(amount=40.0 [chosen]), do refund_payment(amount=25.0 [get_order])"
        in prompt
    )


def test_store_distills_with_the_configured_endpoint(server: FixedServer, tmp_path: Path) -> None:
    settings = Settings(llm_base_url=server.url, llm_model="distil-1b")
    with KnowledgeBase.open(tmp_path / "s", settings=settings, embedder=HashEmbedder()) as kb:
        human = run().model_copy(
            update={"task": "Refund the broken kettle", "lessons": ["Check the amount paid."]}
        )
        ids = [r.id for r in kb.add_experiences([run(), human])]
        report = kb.distill(method="llm")
        assert sorted(report.distilled) == sorted(ids) and report.model_calls == 2
        exp, kept = kb.get_experience(ids[0]), kb.get_experience(ids[1])
        assert exp.distilled is not None and exp.distilled.method == "llm:distil-1b"
        assert exp.lessons == GOOD["lessons"] and exp.plan == GOOD["plan"]
        assert exp.strategy is not None and exp.strategy.startswith("Goal: Refund a damaged item")
        assert kept.lessons == ["Check the amount paid."]  # human text stays
        assert kb.distill(method="llm").unchanged == ids  # up to date: nothing asked
        assert len(server.requests) == 2
        # a trace arriving does not replace what the model wrote; asking again refreshes it
        kb.label(ids[0], step=5, reason="refunded more than was paid")
        assert kb.get_experience(ids[0]).lessons == GOOD["lessons"]
        assert kb.distill([ids[0]], method="llm").distilled == [ids[0]]
        assert len(server.requests) == 3


def test_llm_distillation_needs_an_endpoint(tmp_path: Path) -> None:
    with (
        KnowledgeBase.open(tmp_path / "s", embedder=HashEmbedder()) as kb,
        pytest.raises(Invalid, match="KB_LLM_BASE_URL"),
    ):
        kb.distill(method="llm")
