"""Load on the MCP server over streamable HTTP: concurrent clients doing search and record.

Starts ``python -m mcp_server --http`` on a free loopback port over a fresh store (seeded with a
few experiences), creates a bearer token, and runs ``--clients`` concurrent MCP clients (fastmcp
``Client``, each its own HTTP connection) for ``--duration`` seconds. Each client alternates
``search`` and ``record_experience``. Reports requests/s, p50/p95 latency (overall and
per tool) and the error count (must be 0), and checks that the store holds exactly as many new
records as there were successful record calls. Before the load, one client runs the same mix for
the same time against the same server (the baseline): the target is record throughput with
``--clients`` >= 2 x one client's (concurrent writers share one write: group commit), record p95
< 1 s, 0 errors.

Then, on the same store, one stdio client (``kb serve`` as a subprocess, the mcp SDK's client)
against the SDK in this process: ``search`` p50 over ``--queries`` distinct user messages (each
embedded once by each side: no cache serves it) must be <= 1.5 x the SDK's ``kb.search`` p50.

Bounded: loopback only, a fixed duration, a per-call timeout, and at most ``--max-requests`` calls.

Run: ``python benchmarks/bench_mcp_load.py [--duration 60] [--clients 8]``; writes
``benchmarks/results/mcp_load.json``. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastmcp import Client  # noqa: E402

from benchmarks.common import LOAD_QUERIES, LOAD_SEED, nearest_rank, user_queries  # noqa: E402
from kb.service import KnowledgeBase  # noqa: E402
from tests.served import free_port, health  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "mcp_load.json"
NAMESPACE = "load"


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "count": len(latencies),
        "p50_ms": round(nearest_rank(latencies, 0.50) * 1000, 1),
        "p95_ms": round(nearest_rank(latencies, 0.95) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else 0.0,
    }


async def client_loop(
    number: int,
    url: str,
    token: str,
    deadline: float,
    budget: list[int],
    timeout: float,
    out: dict[str, Any],
) -> None:
    async with Client(url, auth=token, timeout=timeout) as client:
        i = 0
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            if i % 2 == 0:
                tool = "search"
                args: dict[str, Any] = {
                    "query": LOAD_QUERIES[(number + i) % len(LOAD_QUERIES)],
                    "k": 5,
                }
            else:
                tool = "record_experience"
                args = {
                    "task": f"load test task {number}-{i}: refund order {i}",
                    "outcome": "success" if i % 3 else "failure",
                    "lessons": [f"lesson {i} of client {number}"],
                    "tags": ["load"],
                }
            start = time.perf_counter()
            try:
                result = await client.call_tool(tool, args, raise_on_error=False)
                failed = result.is_error
                error = result.content[0].text if failed and result.content else None
            except Exception as exc:  # a transport failure counts as an error, the run goes on
                failed, error = True, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            if failed:
                out["errors"].append({"tool": tool, "error": str(error)[:300]})
            else:
                out["latencies"].setdefault(tool, []).append(elapsed)
                if tool == "record_experience":
                    out["records_ok"] += 1
            i += 1


async def run_clients(
    url: str, token: str, *, clients: int, duration: float, max_requests: int, timeout: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": {}, "errors": [], "records_ok": 0}
    budget = [max_requests]
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(
        *(client_loop(n, url, token, deadline, budget, timeout, out) for n in range(clients))
    )
    out["elapsed_s"] = time.monotonic() - start
    return out


def wait_healthy(base: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        if health(base, timeout=2) is not None:
            return
        time.sleep(0.2)
    raise SystemExit("the server did not become healthy")


def stdio_against_sdk(store: Path, queries: list[str], warmup: list[str]) -> dict[str, Any]:
    """``search`` (k=5) through one stdio MCP client and through the SDK, the same queries."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    sdk: list[float] = []
    with KnowledgeBase.open(store, namespace=NAMESPACE) as kb:
        for query in warmup:
            kb.search(query, 5)
        for query in queries:
            started = time.perf_counter()
            kb.search(query, 5)
            sdk.append(time.perf_counter() - started)
    kb_bin = Path(sys.executable).with_name("kb")
    params = StdioServerParameters(
        command=str(kb_bin),
        args=["--store", str(store), "serve"],
        cwd=str(ROOT),
        env={**os.environ, "KB_NAMESPACE": NAMESPACE},
    )
    mcp: list[float] = []

    async def scenario() -> None:
        with open(os.devnull, "w") as err:
            async with (
                stdio_client(params, errlog=err) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                for query in warmup:
                    await session.call_tool("search", {"query": query, "k": 5})
                for query in queries:
                    started = time.perf_counter()
                    result = await session.call_tool("search", {"query": query, "k": 5})
                    mcp.append(time.perf_counter() - started)
                    assert not result.is_error, result

    asyncio.run(scenario())
    ratio = nearest_rank(mcp, 0.5) / nearest_rank(sdk, 0.5)
    return {
        "queries": len(queries),
        "warmup_queries": len(warmup),
        "sdk_search": summary(sdk),
        "stdio_mcp_search": summary(mcp),
        "ratio_p50": round(ratio, 3),
        "ratio_p50_target": 1.5,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="MCP HTTP load benchmark")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="hard cap on calls")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call timeout, seconds")
    parser.add_argument("--store", type=Path, default=None, help="store dir (default: a temp dir)")
    parser.add_argument("--queries", type=int, default=100, help="timed stdio/SDK searches")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 600:
        parser.error("--clients must be 1-64 and --duration 0-600 s")

    tmp = tempfile.TemporaryDirectory(prefix="kb-load-")
    store = args.store or Path(tmp.name) / "store"
    with KnowledgeBase.open(store, namespace=NAMESPACE) as kb:
        kb.add_experiences(
            [
                {"task": task.format(n=n), "outcome": outcome, "strategy": strategy}
                for n in range(25)
                for task, outcome, strategy in LOAD_SEED
            ]
        )
        seeded = kb.stats().experiences
        token = kb.create_token("load-benchmark", NAMESPACE).secret

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(tmp.name) / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcp_server",
                "--http",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--store",
                str(store),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "KB_RATE_LIMIT": "0"},  # throughput, not the per-token limit
        )
        try:
            wait_healthy(base, proc)

            async def warm() -> None:  # the first call loads the embedding model
                async with Client(f"{base}/mcp", auth=token, timeout=120) as c:
                    await c.call_tool("search", {"query": "warm up"})

            asyncio.run(warm())
            one, run = (
                asyncio.run(
                    run_clients(
                        f"{base}/mcp",
                        token,
                        clients=clients,
                        duration=args.duration,
                        max_requests=args.max_requests,
                        timeout=args.timeout,
                    )
                )
                for clients in (1, args.clients)
            )
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    with KnowledgeBase.open(store, namespace=NAMESPACE) as kb:
        stored = kb.stats().experiences - seeded - one["records_ok"]
    logged = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    logged_calls = [e for e in logged if e.get("event") == "tool"]
    all_latencies = [x for values in run["latencies"].values() for x in values]
    requests = len(all_latencies) + len(run["errors"])
    import fastmcp

    report: dict[str, Any] = {
        "benchmark": "mcp_load",
        "transport": "streamable-http (stateless), loopback, bearer token",
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "mix": "alternate search (k=5) / record_experience",
            "seeded_experiences": seeded,
        },
        "elapsed_s": round(run["elapsed_s"], 2),
        "requests": requests,
        "requests_per_s": round(requests / run["elapsed_s"], 1),
        "latency": summary(all_latencies),
        "latency_by_tool": {tool: summary(v) for tool, v in sorted(run["latencies"].items())},
        "errors": len(run["errors"]),
        "error_samples": run["errors"][:5],
        "record_calls_ok": run["records_ok"],
        "records_stored": stored,
        "records_match": stored == run["records_ok"],
        "server_log_lines": len(logged_calls),
        "server_errors": [
            line
            for line in log_path.read_text().splitlines()
            if "Traceback" in line or "rror" in line
        ][:20],
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "fastmcp": fastmcp.__version__,
        },
    }
    one_rate = one["records_ok"] / one["elapsed_s"]
    many_rate = run["records_ok"] / run["elapsed_s"]
    record_p95 = report["latency_by_tool"].get("record_experience", {}).get("p95_ms", 0.0)
    report["baseline_one_client"] = {
        "records_per_s": round(one_rate, 2),
        "latency_by_tool": {tool: summary(v) for tool, v in sorted(one["latencies"].items())},
        "errors": len(one["errors"]),
    }
    report["records_per_s"] = round(many_rate, 2)
    report["targets"] = {
        "record_throughput_ratio": round(many_rate / one_rate, 2) if one_rate else None,
        "record_throughput_ratio_target": 2.0,
        "record_p95_ms": record_p95,
        "record_p95_ms_target": 1000,
        "errors": report["errors"] + len(one["errors"]),
    }
    distinct = user_queries()
    report["stdio"] = stdio_against_sdk(store, distinct[10 : 10 + args.queries], distinct[:10])
    report["targets"]["stdio_search_p50_ratio"] = report["stdio"]["ratio_p50"]
    report["targets"]["stdio_search_p50_ratio_target"] = 1.5
    report["load_average"] = os.getloadavg()
    report["ok"] = report["errors"] == 0 and report["records_match"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "requests",
                    "requests_per_s",
                    "latency",
                    "errors",
                    "record_calls_ok",
                    "records_stored",
                    "targets",
                    "ok",
                )
            },
            indent=2,
        )
    )
    if not report["ok"]:  # keep the server's log (tracebacks included) beside the result
        kept = args.out.with_suffix(".server.log")
        kept.write_bytes(log_path.read_bytes())
        print(f"server log kept: {kept}")
    tmp.cleanup()
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
