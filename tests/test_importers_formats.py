"""Importers of the trace formats agents write: Anthropic Messages, OpenAI Responses / Agents SDK
RunState, OpenTelemetry GenAI / OpenInference / Vercel AI spans, LangSmith runs, SWE-agent
``.traj``, OpenHands events, smolagents memory, multi-agent logs with mistake labels.

The real upstream samples in ``../shared/data/traces`` (see its README) are the inputs wherever
one exists; a test skips only when that folder is absent. Three formats have no public sample, so
their inputs here are built by hand from the published specification, as each fixture says:
OTLP ``resourceSpans`` with nested agent/LLM/tool spans (OpenTelemetry GenAI semantic
conventions), a multi-run LangSmith tree (the LangSmith run schema), and smolagents memory steps
(``MemoryStep.dict()`` in ``smolagents/memory.py``). The multi-agent log is our own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kb.errors import ImportFailed
from kb.importers import (
    FORMATS,
    detect,
    iter_experiences,
    read_records,
    to_experience,
    trajectory_from_any,
)
from kb.models import MAX_STEP_TEXT, MAX_TEXT, ExperienceCreate, ImportReport, Step
from kb.service import KnowledgeBase
from tests.conftest import requires_data

pytestmark = pytest.mark.timeout(120)


def traces(*parts: str) -> Path:
    return requires_data("traces", *parts)


def one(path: Path) -> ExperienceCreate:
    """The single experience a sample file imports to."""
    results = list(iter_experiences(path))
    assert len(results) == 1, results
    exp = results[0][1]
    assert isinstance(exp, ExperienceCreate), exp
    return exp


def calls(exp: ExperienceCreate) -> list[tuple[str | None, dict[str, Any] | None]]:
    return [(s.tool, s.args) for s in exp.steps if s.kind == "tool_call"]


def kinds(exp: ExperienceCreate) -> list[str]:
    return [s.kind for s in exp.steps]


def step_extra(exp: ExperienceCreate, index: int) -> dict[str, Any]:
    return dict(exp.artifacts.get("steps", {}).get(str(index), {}))


# -- detection of every sample ------------------------------------------------------------------
SAMPLES = [
    ("anthropic-messages/tool_runner_400_orphan_tool_result.f59a9391.json", "anthropic", 1),
    ("anthropic-messages/tool_runner_compaction_summary.956fa2fe.json", "anthropic", 1),
    ("anthropic-messages/tool_runner_programmatic_code_execution.092be1de.json", "anthropic", 1),
    ("anthropic-messages/tool_runner_sequential_tool_use.e075a6c2.json", "anthropic", 1),
    ("anthropic-messages/tool_runner_server_web_search.32da0815.json", "anthropic", 1),
    ("openai-responses/run_state_v1_13_pending_tool_approval.json", "openai-responses", 1),
    ("openai-responses/run_state_v1_13_programmatic_tool_calling.json", "openai-responses", 1),
    (
        "openai-responses/run_state_v1_5_tool_search_and_display_metadata.json",
        "openai-responses",
        1,
    ),
    (
        "openai-responses/run_state_v1_9_custom_tool_call_and_tool_origin.json",
        "openai-responses",
        1,
    ),
    ("otel-genai/openinference_client_span_tool_calls.json", "otel", 1),
    ("otel-genai/otel_genai_client_span_tool_calls.json", "otel", 1),
    ("otel-genai/otel_genai_deprecated_client_span_tool_calls.json", "otel", 1),
    ("otel-genai/otel_genai_tool_execution_span.json", "otel", 1),
    ("otel-genai/vercel-ai-v6_all-spans.json", "otel", 10),
    ("langsmith/langsmith_js_wrap_openai_default.json", "langsmith", 1),
    ("langsmith/langsmith_py_wrap_openai_.json", "langsmith", 1),
    ("langsmith/langsmith_py_wrap_openai_reasoning.json", "langsmith", 1),
    ("langsmith/langsmith_py_wrap_openai_stream.json", "langsmith", 1),
    ("swe-agent/ctf_pwn_warmup.traj", "swe-agent", 1),
    ("swe-agent/function_calling_simple.traj", "swe-agent", 1),
    ("swe-agent/marshmallow-code__marshmallow-1867.function_calling_replace.traj", "swe-agent", 1),
    ("swe-agent/pydicom__pydicom-1458.traj", "swe-agent", 1),
    ("swe-agent/swe-agent__test-repo-i1.traj", "swe-agent", 1),
    ("openhands/runtime_trajs_basic.json", "openhands", 1),
    ("openhands/runtime_trajs_basic_interactions.json", "openhands", 1),
    ("openhands/runtime_trajs_wrong_initial_state.json", "openhands", 1),
    ("openhands/multi_swe_bench_output.jsonl", "openhands", 3),
    ("openhands/resolver_mock_output.jsonl", "openhands", 2),
]


@pytest.mark.parametrize(("name", "fmt", "records"), SAMPLES)
def test_every_sample_is_detected_and_detection_is_stable(
    name: str, fmt: str, records: int
) -> None:
    path = traces(*name.split("/"))
    found = read_records(path)
    assert len(found) == records
    assert [detect(r) for r in found] == [fmt] * records
    assert [detect(r) for r in read_records(path)] == [fmt] * records  # same answer again
    for record in found:
        try:
            exp = to_experience(record, fmt, source=name)
        except ValueError as exc:  # only the OpenHands outputs with over-long results
            assert "characters; the limit is" in str(exc), exc
            continue
        # an imported experience, written back as JSON, is a native record of the same content
        again = json.loads(exp.model_dump_json())
        assert detect(again) == "native"
        assert to_experience(again, "native", source=name) == exp


# -- Anthropic Messages -------------------------------------------------------------------------
def test_anthropic_sequential_tool_use() -> None:
    exp = one(traces("anthropic-messages", "tool_runner_sequential_tool_use.e075a6c2.json"))
    assert exp.task.startswith("What's the weather in San Francisco, New York, London, Tokyo")
    assert kinds(exp) == ["message", "tool_call", "observation", "tool_call"]
    assert calls(exp) == [
        ("get_weather", {"location": "San Francisco, CA", "units": "f"}),
        ("get_weather", {"location": "New York, NY", "units": "f"}),
    ]
    first, result = exp.steps[1], exp.steps[2]
    assert first.content == (
        "I'll get the weather for each of those cities. Let me start by checking San Francisco."
    )
    assert result.tool == "get_weather" and result.role == "tool"
    assert json.loads(result.result or "")["temperature"] == "68°F"
    assert step_extra(exp, 1) == {"caller": {"type": "direct"}}
    assert exp.outcome == "unknown" and exp.final_answer is None  # the recording stops at a call
    assert exp.provenance.source_id == "msg_01UBZt9MX63Tk3v1gKvgxk3A"
    assert exp.agent == "claude-haiku-4-5"
    exchanges = exp.artifacts["exchanges"]
    assert len(exchanges) == 2 and exchanges[1]["response"]["body"]["stop_reason"] == "tool_use"


def test_anthropic_server_tools_and_code_execution() -> None:
    search = one(traces("anthropic-messages", "tool_runner_server_web_search.32da0815.json"))
    assert search.task == "What is the weather in SF?"
    assert kinds(search) == ["message", "tool_call", "observation", "message"]
    assert calls(search) == [("web_search", {"query": "San Francisco weather today"})]
    observation = search.steps[2]
    assert observation.tool == "web_search" and "accuweather.com" in (observation.result or "")
    assert step_extra(search, 2)["type"] == "web_search_tool_result"
    assert "encrypted_content" in json.dumps(step_extra(search, 2)["content"])
    assert (search.final_answer or "").startswith("Today in San Francisco, there are showers")
    assert "citations" in json.dumps(step_extra(search, 3))

    code = one(
        traces("anthropic-messages", "tool_runner_programmatic_code_execution.092be1de.json")
    )
    assert [tool for tool, _ in calls(code)] == ["code_execution", "get_weather", "get_weather"]
    assert "await get_weather" in calls(code)[0][1]["code"]  # type: ignore[index]
    assert step_extra(code, 1)["type"] == "server_tool_use"
    assert step_extra(code, 2)["caller"]["type"] == "code_execution_20260120"
    assert (
        code.steps[3].kind == "observation"
        and "20°C" in json.loads(code.steps[3].result or "")["temperature"]
    )


def test_anthropic_error_response_is_a_failure() -> None:
    exp = one(traces("anthropic-messages", "tool_runner_400_orphan_tool_result.f59a9391.json"))
    assert exp.task == "What's the weather in SF in Celsius?"
    assert kinds(exp) == ["message", "tool_call", "observation", "error"]
    assert calls(exp) == [("get_weather", {"location": "San Francisco, CA", "units": "c"})]
    assert exp.steps[2].result == (
        "The weather in San Francisco, CA is currently sunny with a temperature of 20°C."
    )
    error = exp.steps[3].error or ""
    assert error.startswith("400 invalid_request_error: messages.0.content.1: unexpected")
    assert exp.outcome == "failure"


def test_anthropic_compaction_keeps_the_new_user_turn() -> None:
    exp = one(traces("anthropic-messages", "tool_runner_compaction_summary.956fa2fe.json"))
    assert kinds(exp) == ["message", "tool_call", "message", "message"]
    assert calls(exp)[0][0] == "submit_analysis"
    assert (exp.steps[1].content or "").startswith("# The Wonderful World of Companion Animals")
    assert exp.steps[2].role == "user" and "continuation" not in exp.task
    assert (exp.final_answer or "").startswith("<summary>")


ANTHROPIC_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Look up order 7"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the order tool.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "get_order", "input": {"id": 7}},
            {"type": "tool_use", "id": "t2", "name": "get_user", "input": {"id": 1}},
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t2",
                "content": [{"type": "text", "text": "Ann"}],
            },
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": "no such order",
                "is_error": True,
            },
        ],
    },
    {"role": "assistant", "content": "Order 7 does not exist."},
]


@pytest.mark.parametrize("shape", ["list", "body"])
def test_anthropic_messages_without_a_recording(shape: str) -> None:
    record: Any = ANTHROPIC_MESSAGES
    if shape == "body":
        record = {"model": "claude-x", "system": "Be brief.", "messages": ANTHROPIC_MESSAGES}
    assert detect(record) == "anthropic"  # was "openai", which dropped the tool blocks
    exp = to_experience(record, "auto", source="s")
    offset = 1 if shape == "body" else 0
    if shape == "body":
        assert exp.steps[0].role == "system" and exp.steps[0].content == "Be brief."
    assert kinds(exp)[offset:] == [
        "message",
        "thinking",
        "tool_call",
        "tool_call",
        "observation",
        "error",
        "message",
    ]
    assert calls(exp) == [("get_order", {"id": 7}), ("get_user", {"id": 1})]
    thinking, result, error = (exp.steps[offset + i] for i in (1, 4, 5))
    assert thinking.content == "Need the order tool."
    assert exp.steps[offset + 2].content == "Checking."
    assert (result.tool, result.result) == ("get_user", "Ann")
    assert (error.tool, error.error) == ("get_order", "no such order")
    assert exp.final_answer == "Order 7 does not exist."


# -- OpenAI Responses and Agents SDK RunState ---------------------------------------------------
def test_run_state_with_pending_approval() -> None:
    exp = one(traces("openai-responses", "run_state_v1_13_pending_tool_approval.json"))
    assert exp.task == "historical input"
    assert kinds(exp) == ["message", "tool_call", "approval"]
    assert calls(exp) == [("historical_approval", {"account_id": "account-1"})]
    assert exp.steps[1].agent == "compat-agent" and exp.agent == "compat-agent"
    assert exp.steps[2].content == "approval requested for historical_approval"
    assert exp.artifacts["current_step"]["type"] == "next_step_interruption"
    assert exp.provenance.source_id == "trace_179a5e809d614cf89ac5a1f24b415704"
    assert step_extra(exp, 1)["tool_origin"] == {"type": "function"}


@pytest.mark.parametrize(
    ("name", "expected_calls", "results"),
    [
        (
            "run_state_v1_13_programmatic_tool_calling.json",
            [("program", {"code": "lookup()"}), ("lookup", {})],
            [("program", "done")],
        ),
        (
            "run_state_v1_9_custom_tool_call_and_tool_origin.json",
            [("custom_lookup", {"input": "account-1"})],
            [("custom_lookup", "custom result")],
        ),
        (
            "run_state_v1_5_tool_search_and_display_metadata.json",
            [("tool_search", {"query": "account balance"}), ("lookup", {})],
            [("tool_search", "[]")],
        ),
    ],
)
def test_run_state_items(name: str, expected_calls: list[Any], results: list[Any]) -> None:
    exp = one(traces("openai-responses", name))
    assert exp.task == "historical input" and exp.outcome == "unknown"
    assert calls(exp) == expected_calls
    assert [(s.tool, s.result) for s in exp.steps if s.kind == "observation"] == results
    assert len(exp.steps) == 1 + len(expected_calls) + len(results)


def test_responses_item_list() -> None:
    items = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Use the tool."}],
        },
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "snow"},
        {"type": "web_search_call", "id": "ws_1", "status": "failed", "action": {"query": "Oslo"}},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It snows in Oslo.", "annotations": []}],
        },
    ]
    assert detect(items) == "openai-responses"
    exp = to_experience(items, "auto", source="s")
    assert kinds(exp) == [
        "message",
        "thinking",
        "tool_call",
        "observation",
        "tool_call",
        "error",
        "message",
    ]
    assert calls(exp) == [
        ("weather", {"city": "Oslo"}),
        ("web_search", {"action": {"query": "Oslo"}}),
    ]
    assert (exp.steps[3].tool, exp.steps[3].result) == ("weather", "snow")
    assert exp.steps[5].error == "web_search_call failed"
    assert exp.final_answer == "It snows in Oslo."


# -- OpenTelemetry GenAI, OpenInference, Vercel AI ----------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "otel_genai_client_span_tool_calls.json",
        "otel_genai_deprecated_client_span_tool_calls.json",
        "openinference_client_span_tool_calls.json",
    ],
)
def test_llm_span_attribute_maps(name: str) -> None:
    exp = one(traces("otel-genai", name))
    assert exp.task == "Weather in Paris?"
    assert kinds(exp) == ["message", "tool_call", "observation", "message"]
    assert calls(exp) == [("get_weather", {"location": "Paris"})]
    assert exp.steps[1].content == "Absolutely! Let me check the weather for you."
    assert (exp.steps[2].tool, exp.steps[2].result) == ("get_weather", "rainy, 57°F")
    assert exp.final_answer == "The weather in Paris is currently rainy with a temperature of 57°F."
    assert exp.provenance.source_id is None  # an attribute map has no trace id
    unmapped = exp.artifacts["spans"][0]["attributes"]
    assert any(k.endswith(("usage.input_tokens", "token_count.prompt")) for k in unmapped)


def test_tool_execution_span() -> None:
    exp = one(traces("otel-genai", "otel_genai_tool_execution_span.json"))
    assert exp.task == "execute_tool get_weather"  # the span name the conventions give
    assert kinds(exp) == ["tool_call", "observation"]
    assert calls(exp) == [("get_weather", {"city": "New York"})]
    assert json.loads(exp.steps[1].result or "")["status"] == "success"
    attributes = exp.artifacts["spans"][0]["attributes"]
    assert attributes["gen_ai.tool.description"].startswith("Retrieves the current weather")


def test_vercel_span_list_is_one_experience_per_trace() -> None:
    path = traces("otel-genai", "vercel-ai-v6_all-spans.json")
    results = [e for _, e in iter_experiences(path)]
    assert all(isinstance(e, ExperienceCreate) for e in results)
    exps: list[ExperienceCreate] = results  # type: ignore[assignment]
    assert len(exps) == 10 and len({e.provenance.source_id for e in exps}) == 10
    assert [len(e.steps) for e in exps] == [2, 2, 5, 5, 2, 2, 2, 2, 2, 2]
    haiku = exps[0]
    assert haiku.task == "Write a haiku about programming."
    assert (haiku.final_answer or "").startswith("Lines of code align")
    assert haiku.steps[1].duration == pytest.approx(1.779416, abs=1e-3)
    chat = exps[2]
    assert [s.role for s in chat.steps] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.steps[3].content == "And what is 3 + 3?" and chat.final_answer == "3 + 3 equals 6."
    assert json.loads(exps[4].final_answer or "")["name"] == "Scrambled Eggs"
    embed = exps[8]
    assert embed.task == "The quick brown fox jumps over the lazy dog."
    assert kinds(embed) == ["message", "embedding"]
    assert "ai.embeddings" in embed.artifacts["spans"][0]["attributes"]


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value)}


def _span(
    span_id: str, parent: str | None, name: str, start: int, attrs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "traceId": extra.pop("trace", TRACE),
        "spanId": span_id,
        "parentSpanId": parent or "",
        "name": name,
        "kind": 3 if name.startswith("chat") else 1,
        "startTimeUnixNano": str(1_750_000_000_000_000_000 + start * 1_000_000_000),
        "endTimeUnixNano": str(1_750_000_000_000_000_000 + (start + 1) * 1_000_000_000),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
        "status": extra.pop("status", {"code": 0}),
        "events": extra.pop("events", []),
    }


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SYSTEM = [{"type": "text", "content": "You are a weather assistant."}]
ASK = {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris and Tokyo?"}]}
CALL_PARIS = {
    "role": "assistant",
    "parts": [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    ],
}
DONE_PARIS = {
    "role": "tool",
    "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 57°F"}],
}
CALL_TOKYO = {
    "role": "assistant",
    "parts": [
        {"type": "tool_call", "id": "call_2", "name": "get_weather", "arguments": {"city": "Tokyo"}}
    ],
}
DONE_TOKYO = {
    "role": "tool",
    "parts": [{"type": "tool_call_response", "id": "call_2", "response": "timeout"}],
}
ANSWER = {
    "role": "assistant",
    "parts": [
        {"type": "text", "content": "Paris: rainy, 57°F. Tokyo: the weather service timed out."}
    ],
    "finish_reason": "stop",
}


def _chat(span_id: str, start: int, inputs: list[Any], output: dict[str, Any]) -> dict[str, Any]:
    return _span(
        span_id,
        "a0",
        "chat gpt-4o",
        start,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.response.finish_reasons": [output.get("finish_reason", "tool_call")],
            "gen_ai.system_instructions": SYSTEM,
            "gen_ai.input.messages": inputs,
            "gen_ai.output.messages": [output],
        },
    )


def _tool(span_id: str, start: int, call: str, city: str, result: str | None, **extra: Any) -> Any:
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": call,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": {"city": city},
    }
    if result is not None:
        attrs["gen_ai.tool.call.result"] = result
    return _span(span_id, "a0", "execute_tool get_weather", start, attrs, **extra)


# Built by hand from the OpenTelemetry GenAI semantic conventions (gen-ai-spans, gen-ai-agent-spans,
# execute_tool; OTLP/JSON encoding): no public OTLP file of an agent trace exists. An
# invoke_agent span holds three chat spans and two execute_tool spans (the second fails), and the
# same export holds a second trace: one chat span that errors.
OTLP = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "weather-bot"}}]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "opentelemetry.instrumentation.openai_agents"},
                    "spans": [
                        _tool(
                            "t2",
                            4,
                            "call_2",
                            "Tokyo",
                            None,
                            status={"code": 2, "message": "TimeoutError: upstream timed out"},
                            events=[
                                {
                                    "name": "exception",
                                    "timeUnixNano": "1",
                                    "attributes": [
                                        {
                                            "key": "exception.type",
                                            "value": {"stringValue": "TimeoutError"},
                                        }
                                    ],
                                }
                            ],
                        ),
                        _span(
                            "a0",
                            None,
                            "invoke_agent WeatherAgent",
                            0,
                            {
                                "gen_ai.operation.name": "invoke_agent",
                                "gen_ai.agent.name": "WeatherAgent",
                                "gen_ai.agent.id": "asst_5j66UpCpwteGg4YSxUnt7lPY",
                                "gen_ai.input.messages": [ASK],
                                "gen_ai.output.messages": [ANSWER],
                            },
                        ),
                        _chat("c1", 1, [ASK], CALL_PARIS),
                        _tool("t1", 2, "call_1", "Paris", "rainy, 57°F"),
                        _chat("c2", 3, [ASK, CALL_PARIS, DONE_PARIS], CALL_TOKYO),
                        _chat(
                            "c3", 5, [ASK, CALL_PARIS, DONE_PARIS, CALL_TOKYO, DONE_TOKYO], ANSWER
                        ),
                        _span(
                            "x1",
                            None,
                            "chat gpt-4o",
                            9,
                            {
                                "gen_ai.operation.name": "chat",
                                "gen_ai.request.model": "gpt-4o",
                                "gen_ai.input.messages": [
                                    {
                                        "role": "user",
                                        "parts": [{"type": "text", "content": "Say hi"}],
                                    }
                                ],
                            },
                            trace="5b8efff798038103d269b633813fc60c",
                            status={"code": 2, "message": "rate limited"},
                        ),
                    ],
                }
            ],
        }
    ]
}


def test_otlp_agent_trace_from_the_genai_conventions(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(OTLP), encoding="utf-8")
    records = read_records(path)
    assert len(records) == 2 and {detect(r) for r in records} == {"otel"}
    found = [e for _, e in iter_experiences(path)]
    agent, failed = found
    assert isinstance(agent, ExperienceCreate) and isinstance(failed, ExperienceCreate)
    assert agent.task == "Weather in Paris and Tokyo?"
    assert [(s.kind, s.role) for s in agent.steps] == [
        ("message", "system"),
        ("message", "user"),
        ("tool_call", "assistant"),
        ("observation", "tool"),
        ("tool_call", "assistant"),
        ("error", "tool"),
        ("message", "assistant"),
    ]
    assert calls(agent) == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]
    assert agent.steps[2].agent == "WeatherAgent" and agent.agent == "WeatherAgent"
    assert (agent.steps[3].tool, agent.steps[3].result) == ("get_weather", "rainy, 57°F")
    assert (agent.steps[5].tool, agent.steps[5].error) == (
        "get_weather",
        "TimeoutError: upstream timed out",
    )
    assert agent.final_answer == ANSWER["parts"][0]["content"]  # type: ignore[index]
    assert agent.outcome == "unknown" and agent.provenance.source_id == TRACE
    assert agent.steps[3].duration == 1.0
    assert agent.artifacts["resource"] == {"service.name": "weather-bot"}
    assert len(agent.artifacts["spans"]) == 6
    assert failed.task == "Say hi" and kinds(failed) == ["message", "error"]
    assert failed.steps[1].error == "rate limited" and failed.outcome == "failure"


# -- LangSmith ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "task", "answer"),
    [
        ("langsmith_py_wrap_openai_.json", "howdy", "Howdy! How can I assist you today?"),
        ("langsmith_py_wrap_openai_stream.json", "howdy", "Howdy! How can I assist you today?"),
        ("langsmith_js_wrap_openai_default.json", "howdy", "Howdy! How can I assist you today?"),
        ("langsmith_py_wrap_openai_reasoning.json", "Write a bash script that", "Certainly! Below"),
    ],
)
def test_langsmith_llm_runs(name: str, task: str, answer: str) -> None:
    path = traces("langsmith", name)
    exp = one(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert exp.task.startswith(task)
    assert [(s.role, s.kind) for s in exp.steps] == [("user", "message"), ("assistant", "message")]
    assert (exp.final_answer or "").startswith(answer)
    assert exp.provenance.source_id == raw["post"][0]["trace_id"] and exp.agent == "ChatOpenAI"
    assert exp.steps[1].duration is not None and exp.steps[1].duration > 0  # post + patch merged
    assert exp.artifacts["runs"][0]["extra"]["metadata"]["ls_provider"] == "openai"


def _lc(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", kind],
        "kwargs": kwargs,
    }


ROOT = "1f0c2a56-0000-4000-8000-000000000001"
SYS = _lc("SystemMessage", content="You are a calculator agent.")
HUMAN = _lc("HumanMessage", content="What is 17 * 23?")
AI_CALL = _lc(
    "AIMessage",
    content="",
    tool_calls=[
        {"name": "multiply", "args": {"a": 17, "b": 23}, "id": "call_1", "type": "tool_call"}
    ],
)
TOOL_MSG = _lc("ToolMessage", content="391", tool_call_id="call_1", name="multiply")


def _run(
    run_id: str, parent: str | None, run_type: str, name: str, start: int, **fields: Any
) -> dict[str, Any]:
    order = f"20250101T00000{start}000000Z{run_id}"
    return {
        "id": run_id,
        "trace_id": fields.pop("trace", ROOT),
        "parent_run_id": parent,
        "dotted_order": order if parent is None else f"20250101T000000000000Z{parent}.{order}",
        "run_type": run_type,
        "name": name,
        "start_time": f"2025-01-01T00:00:0{start}+00:00",
        "end_time": f"2025-01-01T00:00:0{start}.500000+00:00",
        **fields,
    }


# Built by hand from the LangSmith run schema (Run: id, trace_id, parent_run_id, dotted_order,
# run_type, inputs, outputs, error, child_runs; runs sent as post/patch batches): no public export
# of a multi-run tree exists. Line 1: an agent chain whose child runs are an llm call that asks
# for a tool, the tool run, and the llm's answer; its outputs arrive in a patch. Line 2: another
# trace, a chain whose tool run fails.
LANGSMITH = [
    {
        "post": [
            _run(
                ROOT,
                None,
                "chain",
                "AgentExecutor",
                0,
                inputs={"input": "What is 17 * 23?"},
                child_runs=[
                    _run(
                        "1f0c2a56-0000-4000-8000-000000000002",
                        ROOT,
                        "llm",
                        "ChatOpenAI",
                        1,
                        inputs={"messages": [[SYS, HUMAN]]},
                        outputs={
                            "generations": [
                                [
                                    {
                                        "text": "",
                                        "message": AI_CALL,
                                        "generation_info": {"finish_reason": "tool_calls"},
                                    }
                                ]
                            ]
                        },
                    ),
                    _run(
                        "1f0c2a56-0000-4000-8000-000000000003",
                        ROOT,
                        "tool",
                        "multiply",
                        2,
                        inputs={"input": "{'a': 17, 'b': 23}"},
                        outputs={"output": TOOL_MSG},
                    ),
                    _run(
                        "1f0c2a56-0000-4000-8000-000000000004",
                        ROOT,
                        "llm",
                        "ChatOpenAI",
                        3,
                        inputs={"messages": [[SYS, HUMAN, AI_CALL, TOOL_MSG]]},
                        outputs={
                            "generations": [
                                [
                                    {
                                        "text": "17 * 23 = 391",
                                        "message": _lc("AIMessage", content="17 * 23 = 391"),
                                    }
                                ]
                            ]
                        },
                    ),
                ],
            ),
        ],
        "patch": [
            {
                "id": ROOT,
                "trace_id": ROOT,
                "outputs": {"output": "17 * 23 = 391"},
                "end_time": "2025-01-01T00:00:05+00:00",
            }
        ],
    },
    _run(
        "2a0c2a56-0000-4000-8000-000000000001",
        None,
        "chain",
        "Researcher",
        0,
        trace="2a0c2a56-0000-4000-8000-000000000001",
        inputs={"question": "What's the weather in Paris?"},
        error="ConnectionError: timeout",
        child_runs=[
            _run(
                "2a0c2a56-0000-4000-8000-000000000002",
                "2a0c2a56-0000-4000-8000-000000000001",
                "tool",
                "web_search",
                1,
                trace="2a0c2a56-0000-4000-8000-000000000001",
                inputs={"query": "weather Paris"},
                error="ConnectionError: timeout",
            )
        ],
    ),
]


def test_langsmith_multi_run_tree(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LANGSMITH), encoding="utf-8")
    records = read_records(path)
    assert len(records) == 2 and {detect(r) for r in records} == {"langsmith"}
    agent, failed = (e for _, e in iter_experiences(path))
    assert isinstance(agent, ExperienceCreate) and isinstance(failed, ExperienceCreate)
    assert agent.task == "What is 17 * 23?" and agent.agent == "AgentExecutor"
    assert [(s.role, s.kind) for s in agent.steps] == [
        ("system", "message"),
        ("user", "message"),
        ("assistant", "tool_call"),
        ("tool", "observation"),
        ("assistant", "message"),
    ]
    assert calls(agent) == [("multiply", {"a": 17, "b": 23})]
    assert (agent.steps[3].tool, agent.steps[3].result) == ("multiply", "391")
    assert agent.final_answer == "17 * 23 = 391" and agent.outcome == "unknown"
    assert agent.provenance.source_id == ROOT
    assert {r["name"] for r in agent.artifacts["runs"]} == {
        "AgentExecutor",
        "ChatOpenAI",
        "multiply",
    }
    assert failed.task == "What's the weather in Paris?"
    assert kinds(failed) == ["tool_call", "error", "error"]
    assert calls(failed) == [("web_search", {"query": "weather Paris"})]
    assert failed.steps[1].error == "ConnectionError: timeout" and failed.outcome == "failure"


# -- SWE-agent --------------------------------------------------------------------------------------
def test_swe_agent_function_calling_run() -> None:
    exp = one(
        traces("swe-agent", "marshmallow-code__marshmallow-1867.function_calling_replace.traj")
    )
    assert exp.task.startswith("TimeDelta serialization precision")
    assert len(exp.steps) == 2 + 2 * 11
    assert [s.role for s in exp.steps[:2]] == ["system", "user"]
    assert calls(exp)[:3] == [
        ("create", {"filename": "reproduce.py"}),
        ("insert", calls(exp)[1][1]),
        ("bash", {"command": "python reproduce.py"}),
    ]
    assert "from marshmallow.fields import TimeDelta" in calls(exp)[1][1]["text"]  # type: ignore[index]
    assert exp.steps[7].result == "344" and exp.steps[19].result == "345"
    assert exp.steps[2].duration == pytest.approx(0.2387, abs=1e-3)
    assert step_extra(exp, 2)["state"] == {
        "open_file": "/testbed/reproduce.py",
        "working_dir": "/testbed",
    }
    assert exp.provenance.source_id == "marshmallow-code__marshmallow-1867"
    assert (exp.final_answer or "").lstrip().startswith("diff --git a/src/marshmallow/fields.py")
    assert exp.outcome == "unknown"  # "submitted": only the tests decide


def test_swe_agent_text_actions_and_demonstrations() -> None:
    exp = one(traces("swe-agent", "pydicom__pydicom-1458.traj"))
    assert exp.task.startswith("Pixel Representation attribute should be optional")
    assert "INSTRUCTIONS" not in exp.task
    assert len(exp.steps) == 2 + 2 * 12
    assert calls(exp)[0] == ("create", {"command": "create reproduce_bug.py"})
    assert [t for t, _ in calls(exp)].count("edit") == 5
    assert exp.steps[7].kind == "error" and (exp.steps[7].error or "").startswith("Traceback")
    assert exp.artifacts["demonstrations"][0]["content"].startswith("Here is a demonstration")
    assert all("DEMONSTRATION" not in (s.content or "") for s in exp.steps)
    toy = one(traces("swe-agent", "swe-agent__test-repo-i1.traj"))
    assert toy.task.startswith("SyntaxError: invalid syntax") and len(toy.steps) == 12
    assert len(toy.artifacts["demonstrations"][0]["content"]) > MAX_TEXT  # kept whole, not a step
    ctf = one(traces("swe-agent", "ctf_pwn_warmup.traj"))
    assert ctf.final_answer == "\nFLAG{LET_US_BEGIN_CSAW_2016}\n"
    assert calls(ctf)[-1] == ("submit", {"command": "submit FLAG{LET_US_BEGIN_CSAW_2016}"})
    assert ctf.artifacts["info"]["exit_status"] == "submitted"


def test_swe_agent_demonstration_history_only() -> None:
    exp = one(traces("swe-agent", "function_calling_simple.traj"))
    assert exp.task.startswith("SyntaxError: invalid syntax")
    assert len(exp.steps) == 12
    assert calls(exp) == [
        ("find_file", {"file_name": "missing_colon.py"}),
        ("open", {"path": "tests/missing_colon.py"}),
        ("edit", calls(exp)[2][1]),
        ("bash", {"command": "python tests/missing_colon.py"}),
        ("submit", {}),
    ]
    assert exp.steps[9].tool == "bash" and (exp.steps[9].result or "").startswith("8.2")
    assert step_extra(exp, 3)["message_type"] == "observation"


def test_swe_agent_exit_without_submission_is_a_failure() -> None:
    record = {
        "trajectory": [{"action": "ls", "observation": "a.py", "thought": "look", "state": "{}"}],
        "history": [{"role": "user", "content": "Fix a.py", "agent": "primary"}],
        "info": {"exit_status": "exit_cost", "submission": None},
    }
    assert detect(record) == "swe-agent"  # a .traj was taken for a multi-agent log before
    exp = to_experience(record, "auto", source="s")
    assert exp.task == "Fix a.py" and exp.outcome == "failure" and exp.final_answer is None
    assert calls(exp) == [("ls", {"command": "ls"})]


# -- OpenHands ----------------------------------------------------------------------------------
def test_openhands_event_stream() -> None:
    exp = one(traces("openhands", "runtime_trajs_wrong_initial_state.json"))
    assert exp.task == "Please rename game_2048.py to 2048.py"
    assert kinds(exp) == ["message"] + ["tool_call", "observation"] * 3 + ["tool_call"]
    assert calls(exp) == [
        ("str_replace_editor", {"command": "view", "path": "/workspace"}),
        (
            "execute_bash",
            {"command": "mv /workspace/game_2048.py /workspace/2048.py", "is_input": "false"},
        ),
        ("str_replace_editor", {"command": "view", "path": "/workspace"}),
        ("finish", {}),
    ]
    assert exp.steps[4].tool == "execute_bash" and exp.steps[4].error is None
    assert step_extra(exp, 4)["extras"]["metadata"]["exit_code"] == 0
    assert (exp.final_answer or "").startswith("The file has been successfully renamed")
    assert (
        exp.steps[1].content
        == "I'll help you rename the file. First, let me check if the file exists and its location."
    )
    assert exp.outcome == "unknown" and exp.provenance.source_id is None
    chat = one(traces("openhands", "runtime_trajs_basic_interactions.json"))
    assert [s.role for s in chat.steps] == ["user", "assistant"] * 3
    assert chat.task == "what's 1+1?"


def test_openhands_evaluation_output() -> None:
    path = traces("openhands", "multi_swe_bench_output.jsonl")
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for (number, exp), record in zip(iter_experiences(path), raw, strict=True):
        longest = max(len(e.get("content") or "") for e in record["history"])
        if longest > MAX_STEP_TEXT:  # nothing is truncated: such a record is refused whole
            assert isinstance(exp, ImportFailed), number
            assert f"is {longest} characters; the limit is {MAX_STEP_TEXT}" in str(exp)
            continue
        assert isinstance(exp, ExperienceCreate), exp
        assert exp.task == record["instance"]["problem_statement"]
        assert exp.provenance.source_id == record["instance_id"]
        assert exp.agent == "CodeActAgent" and len(exp.steps) == len(record["history"])
        if record["instance_id"] != "ponylang__ponyc-4593":
            continue  # the two runs with long observations (49 and 103 steps) import whole too
        assert len(exp.steps) == 70
        assert exp.steps[0].role == "system" and exp.steps[2].kind == "recall"
        errors = [s for s in exp.steps if s.kind == "error"]
        assert [s.error for s in errors][:2] == ["exit code 2", "exit code 1"]
        assert any((s.error or "").startswith("Parameter 'command' is expected") for s in errors)
        assert exp.final_answer == record["test_result"]["git_patch"]
        assert exp.outcome == "unknown"  # no test report in this file


def test_openhands_resolver_output() -> None:
    path = traces("openhands", "resolver_mock_output.jsonl")
    first, second = (e for _, e in iter_experiences(path))
    assert isinstance(first, ExperienceCreate) and isinstance(second, ExperienceCreate)
    assert first.task == "Add MIT license\n\nWe can license this repo under the MIT license."
    assert first.provenance.source_id == "neubig/pr-viewer#5" and first.outcome == "success"
    assert first.steps[0].role == "user" and first.steps[0].content.startswith("Please fix")  # type: ignore[union-attr]
    assert calls(first)[:2] == [("run", {"command": "touch LICENSE"}), calls(first)[1]]
    assert calls(first)[1][0] == "run_ipython" and "MIT License" in calls(first)[1][1]["code"]  # type: ignore[index]
    assert first.steps[6].result.startswith("MIT License")  # type: ignore[union-attr]
    assert (first.final_answer or "").startswith("diff --git a/LICENSE b/LICENSE")
    assert first.artifacts["result_explanation"].startswith("The AI agent has successfully added")
    assert len(second.steps) == 44 and second.provenance.source_id == "neubig/pr-viewer#1"


# -- smolagents ------------------------------------------------------------------------------------
# Built by hand from smolagents' own step shapes (smolagents/memory.py: TaskStep, PlanningStep,
# ActionStep.dict() with tool_calls/observations/error, FinalAnswerStep; Timing.dict(),
# AgentError.dict()): smolagents keeps no run logs in its repository.
TIMING = {"start_time": 1750000000.0, "end_time": 1750000002.5, "duration": 2.5}


def _action(number: int, code: str, **fields: Any) -> dict[str, Any]:
    return {
        "step_number": number,
        "timing": TIMING,
        "model_input_messages": None,
        "tool_calls": [
            {
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": "python_interpreter", "arguments": code},
            }
        ],
        "error": None,
        "model_output_message": {"role": "assistant", "content": f"Code:\n```py\n{code}\n```"},
        "model_output": f"Thought: step {number}.\nCode:\n```py\n{code}\n```",
        "code_action": code,
        "observations": None,
        "observations_images": None,
        "action_output": None,
        "token_usage": {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60},
        "is_final_answer": False,
        **fields,
    }


SMOLAGENTS = [
    {"task": "How many seconds are in a leap year?", "task_images": None},
    {
        "model_input_messages": [
            {"role": "user", "content": [{"type": "text", "text": "Plan it."}]}
        ],
        "model_output_message": {
            "role": "assistant",
            "content": "1. Multiply 366 by 86400.\n2. Answer.",
        },
        "plan": "1. Multiply 366 by 86400.\n2. Answer.",
        "timing": TIMING,
        "token_usage": None,
    },
    _action(
        1, "366 * 86400", observations="Execution logs:\nLast output from code snippet:\n31622400"
    ),
    _action(
        2,
        "final_answer(31622400",
        error={"type": "AgentParsingError", "message": "'(' was never closed"},
    ),
    _action(
        3,
        "final_answer(31622400)",
        observations="Last output from code snippet:\n31622400",
        action_output=31622400,
        is_final_answer=True,
    ),
    {"output": 31622400},
]


def test_smolagents_memory_steps() -> None:
    assert detect(SMOLAGENTS) == "smolagents"  # was taken for the native format
    assert detect({"steps": SMOLAGENTS, "system_prompt": "You are a CodeAgent."}) == "smolagents"
    exp = to_experience(SMOLAGENTS, "auto", source="s")
    assert exp.task == "How many seconds are in a leap year?"
    assert kinds(exp) == [
        "message",
        "plan",
        "tool_call",
        "observation",
        "tool_call",
        "error",
        "tool_call",
        "observation",
        "final_answer",
    ]
    assert calls(exp) == [
        ("python_interpreter", {"code": "366 * 86400"}),
        ("python_interpreter", {"code": "final_answer(31622400"}),
        ("python_interpreter", {"code": "final_answer(31622400)"}),
    ]
    assert exp.steps[2].content == "Thought: step 1.\nCode:\n```py\n366 * 86400\n```"
    assert exp.steps[2].duration == 2.5 and exp.steps[2].timestamp is not None
    assert exp.steps[3].result == "Execution logs:\nLast output from code snippet:\n31622400"
    assert exp.steps[5].error == "AgentParsingError: '(' was never closed"
    assert exp.plan == ["1. Multiply 366 by 86400.\n2. Answer."]
    assert exp.final_answer == "31622400" and exp.outcome == "unknown"
    assert step_extra(exp, 2)["token_usage"]["total_tokens"] == 60
    ran_out = [
        *SMOLAGENTS[:3],
        _action(2, "x", error={"type": "AgentMaxStepsError", "message": "Reached max steps."}),
    ]
    assert to_experience(ran_out, "smolagents", source="s").outcome == "failure"


# -- multi-agent logs with human mistake labels -------------------------------------------------
MISTAKE = {
    "question": "Which planet has the most known moons?",
    "ground_truth": "Saturn",
    "history": [
        {"role": "user", "content": "Which planet has the most known moons?"},
        {"role": "assistant", "name": "Orchestrator", "content": "WebSurfer, please look it up."},
        {"role": "assistant", "name": "WebSurfer", "content": "A 2019 page says Jupiter, with 79."},
        {"role": "assistant", "name": "Orchestrator", "content": "Final answer: Jupiter."},
    ],
    "mistake_agent": "WebSurfer",
    "mistake_step": "2",
    "mistake_reason": "Trusted an outdated page; Saturn has had the most known moons since 2023.",
    "level": 1,
}


def test_multiagent_mistake_labels_are_a_human_attribution() -> None:
    exp = to_experience(MISTAKE, "auto", source="s")
    attribution = exp.attribution
    assert attribution is not None
    assert (attribution.agent, attribution.step) == ("WebSurfer", 2)
    assert attribution.reason.startswith("Trusted an outdated page")
    assert (attribution.method, attribution.confidence) == ("label", 1.0)
    assert attribution.step is not None
    assert exp.steps[attribution.step].agent == "WebSurfer"  # mistake_step = position in history
    assert exp.outcome == "failure" and exp.artifacts == {"level": 1}
    with pytest.raises(ValueError, match=r"mistake_step: 4 is outside the history \(0 to 3"):
        to_experience({**MISTAKE, "mistake_step": 4}, "multiagent", source="s")


# -- refusals and forcing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "closest", "words"),
    [
        ({"something": "else"}, None, "none came close"),
        ({"history": [{"role": "user", "content": "hi"}]}, "multiagent", "no question"),
        ({"post": [{"name": "x"}]}, "langsmith", "post/patch must hold runs"),
        ({"attributes": {"gen_ai.operation.name": "chat"}}, "otel", "a span needs a name"),
        ({"trajectory": [{"thought": "t"}], "info": {}}, "swe-agent", "action and observation"),
        ({"generated_items": []}, "openai-responses", "a RunState needs"),
        (
            [{"role": "user", "content": [{"type": "tool_use_v9"}]}],
            "openai",
            "not an OpenAI chat part",
        ),
        ({"task": "x", "weird": 1}, "native", "weird"),
    ],
)
def test_unknown_shapes_are_refused_with_the_near_miss(
    record: Any, closest: str | None, words: str
) -> None:
    assert detect(record) == "unknown"
    with pytest.raises(ImportFailed) as info:
        to_experience(record, "unknown", source="s")
    message = str(info.value)
    assert message.startswith("unknown record shape")
    assert "tried kb, labels, native, swe-agent, openhands" in message
    assert words in message
    if closest:
        assert f"closest: {closest} (" in message


def test_format_forces_one_importer() -> None:
    assert "anthropic" in FORMATS and "smolagents" in FORMATS
    exp = to_experience(ANTHROPIC_MESSAGES, "openai", source="s")  # forced: the chat importer
    assert len(exp.steps) == len(ANTHROPIC_MESSAGES)
    with pytest.raises(ValueError, match="no task text"):
        to_experience(ANTHROPIC_MESSAGES[1:], "anthropic", source="s")
    with pytest.raises(ImportFailed, match="format must be one of"):
        to_experience(ANTHROPIC_MESSAGES, "csv", source="s")


# -- trajectory_from_any --------------------------------------------------------------------------
def test_trajectory_from_any_on_raw_tau_messages() -> None:
    path = requires_data("tau-retail", "trajectories.json")
    record = json.loads(path.read_text(encoding="utf-8"))[2]
    messages = record["traj"]
    assert {"refusal", "annotations", "index"} <= set(messages[2])  # raw SDK message dumps
    exp = trajectory_from_any(messages)
    assert [s.index for s in exp.steps] == list(range(len(messages)))
    assert exp.task == next(m["content"] for m in messages if m["role"] == "user")
    for step, message in zip(exp.steps, messages, strict=True):
        assert step.role == message["role"]
        if message["role"] == "assistant" and message.get("tool_calls"):
            function = message["tool_calls"][0]["function"]
            assert (step.tool, step.args) == (function["name"], json.loads(function["arguments"]))
        if message["role"] == "tool":
            assert step.result == message["content"]
    assert trajectory_from_any(record).provenance.source_id == str(record["task_id"])


class _SdkMessage(BaseModel):  # stands in for an SDK's pydantic message objects
    role: str
    content: Any


@pytest.mark.parametrize(
    "shape", ["experience", "steps", "sdk-objects", "json-text", "anthropic", "smolagents"]
)
def test_trajectory_from_any_shapes(shape: str) -> None:
    steps = [
        Step(index=0, role="user", content="Book a table"),
        Step(index=1, kind="tool_call", tool="book"),
    ]
    raw: Any = {
        "experience": ExperienceCreate(task="Book a table", steps=steps),
        "steps": steps,
        "sdk-objects": [
            _SdkMessage(role="user", content="Book a table"),
            _SdkMessage(role="assistant", content="Done"),
        ],
        "json-text": json.dumps([{"role": "user", "content": "Book a table"}]),
        "anthropic": [{**m, "id": "msg_1"} for m in ANTHROPIC_MESSAGES],
        "smolagents": SMOLAGENTS,
    }[shape]
    exp = trajectory_from_any(raw)
    assert exp.task in {"Book a table", "Look up order 7", "How many seconds are in a leap year?"}
    assert exp.steps and exp.steps[0].role == "user"
    if shape == "steps":
        assert exp.steps[1].tool == "book" and exp.provenance.imported_from == "memory"
    if shape == "anthropic":
        assert calls(exp) == [("get_order", {"id": 7}), ("get_user", {"id": 1})]


def test_trajectory_from_any_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ImportFailed, match="unknown record shape"):
        trajectory_from_any({"nothing": 1})
    with pytest.raises(ImportFailed, match="not JSON"):
        trajectory_from_any("just words")
    with pytest.raises(ImportFailed, match=r"trajectory \(openai\): .*no task text"):
        trajectory_from_any([{"role": "assistant", "content": "hi"}])


# -- through the store ------------------------------------------------------------------------------
def test_import_file_reports_the_new_formats(fake_kb: KnowledgeBase) -> None:
    traj = fake_kb.import_file(traces("swe-agent", "pydicom__pydicom-1458.traj"))
    assert isinstance(traj, ImportReport)
    assert traj.format == "swe-agent" and len(traj.added) == 1
    spans = fake_kb.import_file(traces("otel-genai", "vercel-ai-v6_all-spans.json"))
    assert isinstance(spans, ImportReport)
    assert spans.format == "otel" and len(spans.added) == 10
    stored = fake_kb.get_experience(traj.added[0])
    assert stored.signature[:3] == ["create", "edit", "python"]
