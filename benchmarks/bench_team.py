"""Team scale: two MCP servers on one PostgreSQL database, each with its own index.

Starts a PostgreSQL server (the system's binaries, as in the tests; or ``--sql-url``), seeds a
namespace with the real model, and starts two ``python -m mcp_server --http`` processes, each with
its own store directory (LanceDB index) on the shared database, each pinned to one CPU core
(``taskset``) with one torch thread. Then, in one run:

1. **Search throughput**, one server against two: ``--clients`` search-only clients for
   ``--phase`` seconds against server one alone, then spread over both, twice in alternation
   (so a change in the machine's other load hits both configurations alike). Reports requests/s,
   the ratio (target >= 1.6) and the servers' CPU seconds per request.
2. **Mixed load**: ``--clients`` clients for ``--duration`` seconds, each writing
   (``record_experience``, one call in three) through one server and searching through the
   other. Every acknowledged write is checked to be in SQL and searchable on both servers; its
   lag on each server is the time from the acknowledgement until that server's ``/health``
   reports the write's change-log entry applied (polled every 50 ms; the time the answer
arrived, so the lag is if anything overstated). Target: 0 errors, every
   write on both servers within 2 s (p50/p95/max reported).

The machine's contention is reported as measured: the CPU time the servers, this client process
and everything else used during each phase, out of the cores' capacity, and the load average.

Run: ``python benchmarks/bench_team.py [--duration 60] [--clients 8] [--phase 15]``; writes
``benchmarks/results/team.json``. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from benchmarks.common import LOAD_QUERIES, LOAD_SEED, nearest_rank  # noqa: E402
from kb.service import KnowledgeBase  # noqa: E402
from tests.pg import PgServer  # noqa: E402
from tests.served import free_port, health, tool_call  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "team.json"
NS = "team"
TICK = os.sysconf("SC_CLK_TCK")
LAG_BOUND_S = 2.0
POLL_S = 0.05
"""How often the lag watchers read each server's /health (each read costs the server a little)."""


def postgres_version() -> str:
    from tests.pg import binaries

    folder = binaries()
    if folder is None:
        return "PostgreSQL"
    found = subprocess.run([str(folder / "postgres"), "--version"], capture_output=True, text=True)
    return found.stdout.strip()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def process_tree(root: int | None) -> list[int]:
    """A process and its children (PostgreSQL's backends are children of the postmaster)."""
    if root is None:
        return []
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == root:
                pids.append(int(entry.name))
    return pids


def tree_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except OSError:
            continue  # it ended
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


class Server:
    def __init__(self, name: str, store: Path, core: int, env: dict[str, str]):
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = store.with_suffix(".log")
        command = [sys.executable, "-m", "mcp_server", "--http", "--port", str(self.port)]
        command += ["--store", str(store)]
        if shutil.which("taskset"):
            command = ["taskset", "-c", str(core), *command]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out
            )

    def health(self) -> dict[str, Any] | None:
        return health(self.base)

    def wait_ready(self, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while self.health() is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def wait_caught_up(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while True:
            health = self.health()
            if health is not None and health["index"]["behind"] == 0:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not catch up: {health}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def call(client: httpx2.Client, server: Server, token: str, tool: str, args: dict[str, Any]) -> Any:
    """One tools/call over stateless streamable HTTP; the structured result (raises on error)."""
    result = tool_call(server.base, token, tool, args, client=client)
    if result.get("isError"):
        raise RuntimeError(str(result.get("content"))[:300])
    return result["structuredContent"]


POSTGRES_PID: list[int | None] = [None]


def measured(servers: list[Server], work: Any) -> dict[str, Any]:
    """Run ``work()`` and the CPU accounting around it."""
    pg_pids = process_tree(POSTGRES_PID[0])
    pg_before = tree_cpu(pg_pids)
    before = {s.name: cpu_seconds(s.process.pid) for s in servers}
    me_before = time.process_time()
    busy0, total0 = machine_busy()
    start = time.monotonic()
    out = work()
    elapsed = time.monotonic() - start
    busy1, total1 = machine_busy()
    server_cpu = sum(cpu_seconds(s.process.pid) - before[s.name] for s in servers)
    client_cpu = time.process_time() - me_before
    pg_after = tree_cpu(pg_pids)  # backends alive at both ends (the pool keeps them)
    pg_cpu = sum(pg_after[p] - pg_before[p] for p in pg_after if p in pg_before)
    capacity = total1 - total0
    busy = busy1 - busy0
    return {
        **out,
        "elapsed_s": round(elapsed, 2),
        "server_cpu_s": round(server_cpu, 2),
        "cpu": {
            "capacity_s": round(capacity, 1),
            "busy_fraction": round(busy / capacity, 3) if capacity else None,
            "servers_fraction": round(server_cpu / capacity, 3) if capacity else None,
            "bench_client_fraction": round(client_cpu / capacity, 3) if capacity else None,
            "postgres_fraction": round(pg_cpu / capacity, 3) if capacity else None,
            "others_fraction": round(
                max(0.0, busy - server_cpu - client_cpu - pg_cpu) / capacity, 3
            )
            if capacity
            else None,
        },
    }


def search_phase(targets: list[Server], token: str, clients: int, seconds: float) -> Any:
    def work() -> dict[str, Any]:
        counts = [0] * clients
        errors: list[str] = []
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        def loop(n: int) -> None:
            server = targets[n % len(targets)]
            with httpx2.Client() as client:
                i = 0
                while time.monotonic() < deadline:
                    query = LOAD_QUERIES[(n + i) % len(LOAD_QUERIES)]
                    start = time.perf_counter()
                    try:
                        call(client, server, token, "search", {"query": query, "k": 5})
                        counts[n] += 1
                        latencies.append(time.perf_counter() - start)
                    except Exception as exc:  # counted; the run goes on
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    i += 1

        threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "requests": sum(counts),
            "errors": len(errors),
            "error_samples": errors[:3],
            "p50_ms": round(nearest_rank(latencies, 0.5) * 1000, 1),
            "p95_ms": round(nearest_rank(latencies, 0.95) * 1000, 1),
        }

    result = measured(targets, work)
    result["requests_per_s"] = round(result["requests"] / result["elapsed_s"], 2)
    result["server_cpu_ms_per_request"] = (
        round(1000 * result["server_cpu_s"] / result["requests"], 1) if result["requests"] else None
    )
    return result


def mixed_phase(servers: list[Server], token: str, clients: int, seconds: float) -> Any:
    acks: list[dict[str, Any]] = []
    applied: dict[str, list[tuple[float, int]]] = {s.name: [] for s in servers}
    stop = threading.Event()

    def watch(server: Server) -> None:
        with httpx2.Client() as client:
            while not stop.is_set():
                try:
                    answer = client.get(f"{server.base}/health", timeout=5).json()
                    seq = int(answer["index"]["applied"].get(NS, 0))
                    applied[server.name].append((time.time(), seq))
                except (httpx2.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(POLL_S)

    def work() -> dict[str, Any]:
        counts = {"record_experience": 0, "search": 0}
        errors: list[str] = []
        deadline = time.monotonic() + seconds
        lock = threading.Lock()

        def loop(n: int) -> None:
            writer, reader = servers[n % 2], servers[(n + 1) % 2]
            rng = random.Random(n)
            with httpx2.Client() as client:
                i = 0
                while time.monotonic() < deadline:
                    try:
                        if rng.random() < 1 / 3:
                            task = f"team write {n}-{i}: calibrate probe q{n}x{i} of rig {i % 7}"
                            got = call(
                                client,
                                writer,
                                token,
                                "record_experience",
                                {"task": task, "outcome": "success", "lessons": [f"note {i}"]},
                            )
                            with lock:
                                acks.append(
                                    {
                                        "id": got["id"],
                                        "task": task,
                                        "at": time.time(),
                                        "via": writer.name,
                                    }
                                )
                                counts["record_experience"] += 1
                        else:
                            query = LOAD_QUERIES[(n + i) % len(LOAD_QUERIES)]
                            call(client, reader, token, "search", {"query": query, "k": 5})
                            with lock:
                                counts["search"] += 1
                    except Exception as exc:  # counted; the run goes on
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    i += 1

        threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "requests": sum(counts.values()),
            "by_tool": counts,
            "errors": len(errors),
            "error_samples": errors[:3],
        }

    watchers = [threading.Thread(target=watch, args=(s,), daemon=True) for s in servers]
    for t in watchers:
        t.start()
    result = measured(servers, work)
    for server in servers:
        server.wait_caught_up()
    time.sleep(0.2)
    stop.set()
    for t in watchers:
        t.join(10)
    result["requests_per_s"] = round(result["requests"] / result["elapsed_s"], 2)
    result["server_cpu_ms_per_request"] = (
        round(1000 * result["server_cpu_s"] / result["requests"], 1) if result["requests"] else None
    )
    return result, acks, applied


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="two MCP servers on one PostgreSQL database")
    parser.add_argument("--duration", type=float, default=60.0, help="mixed-load seconds")
    parser.add_argument("--phase", type=float, default=15.0, help="seconds per throughput phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=50, help="seed records per task shape (x4)")
    parser.add_argument("--sql-url", default=None, help="a PostgreSQL URL (default: start one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="kb-team-"))
    pg: PgServer | None = None
    url = args.sql_url
    if url is None:
        pg = PgServer(Path(tempfile.mkdtemp(prefix="kb-team-pg-")))
        pg.start()
        url = pg.create_database()
        POSTGRES_PID[0] = pg.process.pid if pg.process is not None else None
    env = {
        **os.environ,
        "KB_SQL_URL": url,
        "KB_RATE_LIMIT": "0",  # throughput, not the per-token limit
        "OMP_NUM_THREADS": "1",  # one torch thread per server
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    servers: list[Server] = []
    try:
        os.environ["KB_SQL_URL"] = url
        with KnowledgeBase.open(tmp / "admin", namespace=NS) as kb:
            kb.add_experiences(
                [
                    {"task": task.format(n=n), "outcome": outcome, "strategy": strategy}
                    for n in range(args.seed)
                    for task, outcome, strategy in LOAD_SEED
                ]
            )
            seeded = kb.stats().experiences
            token = kb.create_token("team-benchmark", NS).secret
        servers = [
            Server("one", tmp / "one", 0, env),
            Server("two", tmp / "two", 1 % (os.cpu_count() or 1), env),
        ]
        for server in servers:
            server.wait_ready()
            server.wait_caught_up()
        with httpx2.Client() as client:  # warm both (the first search loads the model)
            for server in servers:
                call(client, server, token, "search", {"query": "warm up", "k": 5})
        load_before = os.getloadavg()

        rounds = []
        for _ in range(2):
            one = search_phase(servers[:1], token, args.clients, args.phase)
            two = search_phase(servers, token, args.clients, args.phase)
            rounds.append({"one_server": one, "two_servers": two})
        one_rate = statistics.fmean(r["one_server"]["requests_per_s"] for r in rounds)
        two_rate = statistics.fmean(r["two_servers"]["requests_per_s"] for r in rounds)

        mixed, acks, applied = mixed_phase(servers, token, args.clients, args.duration)
        load_after = os.getloadavg()

        # every acknowledged write: in SQL, searchable on both servers, and its lag on each
        engine = create_engine(url)
        with engine.connect() as conn:
            seqs: dict[str, int] = dict(
                conn.execute(
                    text(
                        "SELECT item_id, MIN(seq) FROM change_log WHERE namespace = :ns "
                        "GROUP BY item_id"
                    ),
                    {"ns": NS},
                ).all()
            )
            in_sql = {
                row[0]
                for row in conn.execute(
                    text("SELECT id FROM experiences WHERE namespace = :ns"), {"ns": NS}
                ).all()
            }
        engine.dispose()
        lags: dict[str, list[float]] = {s.name: [] for s in servers}
        missing_sql = [a["id"] for a in acks if a["id"] not in in_sql]
        unsearchable: dict[str, list[str]] = {s.name: [] for s in servers}
        with httpx2.Client() as client:
            for ack in acks:
                seq = int(seqs.get(ack["id"], 10**12))
                for server in servers:
                    seen = next((t for t, s in applied[server.name] if s >= seq), None)
                    lags[server.name].append(
                        max(0.0, seen - ack["at"]) if seen is not None else float("inf")
                    )
                    hits = call(client, server, token, "search", {"query": ack["task"], "k": 10})
                    if ack["id"] not in {h["id"] for h in hits["hits"]}:
                        unsearchable[server.name].append(ack["id"])
        all_lags = [x for values in lags.values() for x in values]
        within = sum(1 for x in all_lags if x <= LAG_BOUND_S)
        import torch

        report: dict[str, Any] = {
            "benchmark": "team",
            "setup": {
                "database": postgres_version() if pg is not None else "PostgreSQL (given URL)",
                "servers": "2 x `python -m mcp_server --http`, own store dir (LanceDB index) each",
                "pinning": "taskset -c 0 / -c 1, OMP_NUM_THREADS=1 (one torch thread)"
                if shutil.which("taskset")
                else "none (taskset missing)",
                "clients": args.clients,
                "seeded_experiences": seeded,
                "follow_interval_s": float(os.environ.get("KB_FOLLOW_INTERVAL", 0.25)),
                "lag_poll_s": POLL_S,
            },
            "throughput": {
                "phase_s": args.phase,
                "rounds": rounds,
                "one_server_rps": round(one_rate, 2),
                "two_servers_rps": round(two_rate, 2),
                "ratio": round(two_rate / one_rate, 3) if one_rate else None,
                "target_ratio": 1.6,
            },
            "mixed": {
                **mixed,
                "duration_s": args.duration,
                "writes_acknowledged": len(acks),
                "writes_missing_in_sql": len(missing_sql),
                "writes_unsearchable": {k: len(v) for k, v in unsearchable.items()},
                "lag_s": {
                    name: {
                        "p50": round(nearest_rank(v, 0.5), 3),
                        "p95": round(nearest_rank(v, 0.95), 3),
                        "max": round(max(v), 3) if v else 0.0,
                    }
                    for name, v in lags.items()
                },
                "lag_s_all": {
                    "p50": round(nearest_rank(all_lags, 0.5), 3),
                    "p95": round(nearest_rank(all_lags, 0.95), 3),
                    "max": round(max(all_lags), 3) if all_lags else 0.0,
                },
                "within_2s": f"{within}/{len(all_lags)}",
            },
            "contention": {
                "cpus": os.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in load_after],
                "note": "other engineers' jobs share these 2 cores: each phase's `cpu` says what "
                "fraction of the cores' capacity the two servers, PostgreSQL, this client and "
                "everything else (others_fraction) used",
            },
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "torch": torch.__version__,
            },
        }
        report["ok"] = {
            "zero_errors": mixed["errors"] == 0
            and all(r[k]["errors"] == 0 for r in rounds for k in r),
            "all_writes_in_sql": not missing_sql,
            "all_writes_searchable_on_both": not any(unsearchable.values()),
            "all_within_2s": within == len(all_lags),
            "ratio_at_least_1_6": bool(one_rate and two_rate / one_rate >= 1.6),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(
            json.dumps(
                {
                    "throughput": report["throughput"] | {"rounds": "..."},
                    "mixed": report["mixed"],
                    "ok": report["ok"],
                    "contention": report["contention"],
                },
                indent=1,
            )
        )
        return report
    finally:
        for server in servers:
            server.stop()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(result["ok"].values()) else 1)
