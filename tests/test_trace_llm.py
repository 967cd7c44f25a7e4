"""The llm tracer against a local HTTP server on 127.0.0.1 that returns FIXED replies.

This checks the protocols (what is asked, how many calls, the endpoint path and headers) and the
parsing of replies, not the quality of any model. No network is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from kb.config import Settings
from kb.errors import Invalid
from kb.importers import from_multiagent
from kb.models import ExperienceCreate
from kb.trace import LLMConfig, LLMError, attribute
from kb.trace.llm import parse_reply

Replier = Callable[[dict[str, Any]], str]


class FixedServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply: Replier = lambda body: "{}"
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, **body})
                owner.headers.append(dict(self.headers))
                content = owner.reply(body)
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                )
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def prompt(self, i: int) -> str:
        return str(self.requests[i]["messages"][-1]["content"])


@pytest.fixture
def server() -> Iterator[FixedServer]:
    srv = FixedServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def log() -> ExperienceCreate:
    history = [{"role": "user", "content": "What is 6 times 7?"}]
    history += [
        {"role": "assistant", "name": f"Agent{i}", "content": f"thought {i}"} for i in range(1, 8)
    ]
    return from_multiagent(
        {"question": "What is 6 times 7?", "ground_truth": "42", "history": history}, source="test"
    )


def config(server: FixedServer) -> LLMConfig:
    return LLMConfig(base_url=server.url, model="tracer-7b", api_key="sk-test", timeout=5)


def test_all_at_once_parses_a_fenced_reply(server: FixedServer, log: ExperienceCreate) -> None:
    server.reply = lambda body: (
        'Sure.\n```json\n{"mistake_agent": "Agent3", "mistake_step": 3, "reason": "bad sum", '
        '"confidence": 0.8}\n```'
    )
    result = attribute(log, method="llm", llm=config(server))
    assert (result.step, result.agent, result.reason) == (3, "Agent3", "bad sum")
    assert result.confidence == 0.8 and result.method == "llm:all_at_once"
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["model"] == "tracer-7b"
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert "[step 3] Agent3: thought 3" in server.prompt(0)
    assert '"mistake_step"' in server.prompt(0) and "CORRECT ANSWER: 42" in server.prompt(0)


def test_step_by_step_stops_at_the_first_yes(server: FixedServer, log: ExperienceCreate) -> None:
    server.reply = lambda body: (
        "{'mistake': true, 'reason': 'wrong'}"
        if "Is step 5 the decisive" in body["messages"][-1]["content"]
        else '{"mistake": false}'
    )
    result = attribute(log, method="llm:step_by_step", llm=config(server))
    assert result.step == 5 and result.agent == "Agent5" and result.method == "llm:step_by_step"
    assert len(server.requests) == 6  # steps 0..5 asked, then stop
    assert "[step 6]" not in server.prompt(5)


def test_binary_search_halves_to_one_step(server: FixedServer, log: ExperienceCreate) -> None:
    target = 6

    def reply(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        first = text.split("Is the decisive mistake in steps ")[1].split(" ")[0]
        _lo, mid = (int(x) for x in first.split("-"))
        return json.dumps({"half": "first" if target <= mid else "second", "reason": "r"})

    server.reply = reply
    result = attribute(log, method="llm:binary_search", llm=config(server))
    assert result.step == target and result.method == "llm:binary_search"
    assert len(server.requests) == 3  # 8 steps -> 3 halvings


def test_errors_are_clear(server: FixedServer, log: ExperienceCreate) -> None:
    with pytest.raises(Invalid, match="not configured"):
        attribute(log, method="llm")
    server.reply = lambda body: "I cannot tell."
    with pytest.raises(LLMError, match="no JSON"):
        attribute(log, method="llm", llm=config(server))
    server.reply = lambda body: '{"mistake_step": 99}'
    with pytest.raises(LLMError, match="outside"):
        attribute(log, method="llm", llm=config(server))
    server.status = 500
    with pytest.raises(LLMError, match="500"):
        attribute(log, method="llm", llm=config(server))
    dead = LLMConfig(base_url="http://127.0.0.1:9", model="m", timeout=2)
    with pytest.raises(LLMError, match="unreachable"):
        attribute(log, method="llm", llm=dead)


def test_auto_uses_the_llm_when_configured(server: FixedServer, log: ExperienceCreate) -> None:
    server.reply = lambda body: '{"mistake_step": "step 2", "reason": "x"}'
    result = attribute(log, llm=config(server))
    assert result.method == "llm:all_at_once" and result.step == 2 and result.agent == "Agent2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"mistake_step": 4}', {"mistake_step": 4}),
        ('prose {"a": {"b": 1}} more', {"a": {"b": 1}}),
        ("{'half': 'second',}", {"half": "second"}),
        ("The decisive error is step 7.", {"mistake_step": 7}),
    ],
)
def test_parse_reply(text: str, expected: dict[str, Any]) -> None:
    parsed = parse_reply(text)
    assert {k: parsed[k] for k in expected} == expected


def test_config_from_settings() -> None:
    assert LLMConfig.from_settings(Settings(llm_base_url=None)) is None
    cfg = LLMConfig.from_settings(
        Settings(llm_base_url="http://h/v1", llm_model="m", llm_timeout=3)
    )
    assert cfg is not None and cfg.model == "m" and cfg.timeout == 3
    with pytest.raises(Invalid, match="KB_LLM_MODEL"):
        LLMConfig.from_settings(Settings(llm_base_url="http://h/v1", llm_model=None))
