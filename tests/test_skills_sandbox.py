"""The sandbox runs untrusted programs in real subprocesses; the host stays unharmed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skills import ParamError, RunLimits, SkillError, run_program, validate_params

SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": "^#W"},
        "items": {"type": "array", "items": {"type": "integer"}},
        "count": {"type": "integer", "minimum": 1},
    },
    "required": ["order_id", "count"],
    "additionalProperties": False,
}


def test_runs_and_captures_output() -> None:
    result = run_program(
        "def run(a, b=2):\n    print('working')\n    return {'sum': a + b}\n",
        {"a": 1},
        parameters={"type": "object", "properties": {"a": {"type": "integer"}}},
        returns={"type": "object", "required": ["sum"]},
    )
    assert result.ok, result.error
    assert result.value == {"sum": 3}
    assert result.stdout == "working\n"
    assert result.killed_by is None
    assert result.to_dict()["value"] == {"sum": 3}


def test_endless_loop_stopped_by_timeout() -> None:
    start = time.monotonic()
    result = run_program(
        "def run():\n    while True:\n        pass\n", {}, limits=RunLimits(timeout=1)
    )
    assert not result.ok
    assert result.killed_by == "timeout"
    assert "time limit" in (result.error or "")
    assert time.monotonic() - start < 5


def test_timeout_kills_forked_children() -> None:
    program = (
        "import os, time\n"
        "def run():\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(60)\n"
        "    time.sleep(60)\n"
    )
    start = time.monotonic()
    result = run_program(program, {}, limits=RunLimits(timeout=1))
    assert result.killed_by == "timeout"
    assert time.monotonic() - start < 5


def test_cpu_limit() -> None:
    result = run_program(
        "def run():\n    while True:\n        pass\n",
        {},
        limits=RunLimits(timeout=10, cpu_seconds=1),
    )
    assert result.killed_by == "cpu"


@pytest.mark.parametrize(
    "program",
    [
        "def run():\n    return len(bytearray(4 * 1024 ** 3))\n",
        "def run():\n    hog = []\n    while True:\n        hog.append('x' * 10 ** 6)\n",
    ],
)
def test_memory_hog_stopped(program: str) -> None:
    result = run_program(program, {}, limits=RunLimits(memory_mb=256, timeout=10))
    assert not result.ok
    assert result.killed_by == "memory"
    assert result.error_type in {"MemoryError", "SandboxKilled"}


def test_bad_params_list_every_violation() -> None:
    with pytest.raises(ParamError) as info:
        run_program(
            "def run(**kw):\n    return 1\n",
            {"order_id": "123", "items": [1, "two"], "extra": True},
            parameters=SCHEMA,
        )
    violations = info.value.violations
    assert len(violations) == 4
    text = str(info.value)
    for needle in ("params.order_id", "params.items[1]", "'count' is a required", "'extra'"):
        assert needle in text


def test_validate_params_ok_and_bad_schema() -> None:
    assert validate_params(SCHEMA, {"order_id": "#W1", "count": 2}) == []
    with pytest.raises(SkillError, match="not valid JSON Schema"):
        validate_params({"type": "nonsense"}, {})


def test_exception_is_structured_and_host_fine() -> None:
    program = "def helper(x):\n    return 1 / x\n\ndef run(x):\n    return helper(x)\n"
    result = run_program(program, {"x": 0})
    assert not result.ok
    assert result.error_type == "ZeroDivisionError"
    assert result.error == "division by zero"
    assert result.traceback and "helper" in result.traceback
    assert "<string>" not in result.traceback
    assert run_program(program, {"x": 2}).value == 0.5


@pytest.mark.parametrize(
    ("program", "error_type", "needle"),
    [
        ("def run(:\n", "SyntaxError", ""),
        ("x = 1\n", "AttributeError", "no function run"),
        ("def run():\n    return {1, 2}\n", "TypeError", "not JSON-serialisable"),
        ("import sys\ndef run():\n    sys.exit(3)\n", "SystemExit", "3"),
        ("import os\ndef run():\n    os._exit(7)\n", "SandboxCrash", "status 7"),
        ("def run():\n    return 'text'\n", "ResultError", "returns schema"),
    ],
)
def test_program_failures(program: str, error_type: str, needle: str) -> None:
    result = run_program(program, {}, returns={"type": ["integer", "null"]})
    assert not result.ok
    assert result.error_type == error_type
    assert needle in (result.error or "")


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILLS_TEST_SECRET", "hunter2")
    program = (
        "import os\n"
        "def run():\n"
        "    return {'secret': os.environ.get('SKILLS_TEST_SECRET'), 'keys': sorted(os.environ),\n"
        "            'cwd': os.getcwd(), 'home': os.environ['HOME']}\n"
    )
    result = run_program(program, {})
    assert result.ok, result.error
    assert result.value["secret"] is None
    assert set(result.value["keys"]) <= {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "PWD",  # set by bubblewrap's --chdir
    }
    assert result.value["home"] == result.value["cwd"]
    assert result.value["cwd"] == "/scratch"  # a tmpfs inside the sandbox, gone with it


def test_output_cap() -> None:
    result = run_program(
        "def run():\n    while True:\n        print('x' * 1000)\n",
        {},
        limits=RunLimits(output_bytes=10_000, timeout=5),
    )
    assert result.killed_by == "output"
    assert len(result.stdout) <= 10_000


def test_network_blocked() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        program = (
            "import socket\n"
            "def run(port):\n"
            "    socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
            "    return 'connected'\n"
        )
        blocked = run_program(program, {"port": port}, limits=RunLimits(timeout=5))
        assert not blocked.ok
        assert blocked.network_isolated
        assert blocked.error_type in {"OSError", "ConnectionRefusedError", "PermissionError"}
        allowed = run_program(program, {"port": port}, limits=RunLimits(timeout=5, network=True))
        assert allowed.ok and allowed.value == "connected"
        assert not allowed.network_isolated


def test_cannot_signal_host_processes() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        program = (
            "import os, signal\n"
            "def run(pid):\n"
            "    os.kill(pid, signal.SIGKILL)\n"
            "    os.kill(os.getppid() or 1, signal.SIGKILL)\n"
        )
        result = run_program(program, {"pid": victim.pid})
        assert not result.ok
        assert result.error_type == "ProcessLookupError"
        assert victim.poll() is None
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_unsafe_no_isolation_runs_as_plain_subprocess() -> None:
    """The operator's explicit escape hatch: limits still apply, sockets are refused in Python,
    and the result says it was not isolated."""
    unsafe = RunLimits(unsafe_no_isolation=True)
    program = "import socket\ndef run():\n    socket.socket()\n    return 'opened'\n"
    result = run_program(program, {}, limits=unsafe)
    assert not result.ok
    assert result.error_type == "PermissionError"
    assert result.isolated is False and result.network_isolated is False
    assert run_program("def run():\n    return 5\n", {}, limits=unsafe).value == 5
    hog = "def run():\n    return len(bytearray(4 * 1024 ** 3))\n"
    killed = run_program(hog, {}, limits=RunLimits(memory_mb=256, unsafe_no_isolation=True))
    assert killed.killed_by == "memory"


def test_an_interpreter_installed_below_tmp_runs_sandboxed(tmp_path: Path) -> None:
    """A virtual environment below /tmp (a fresh clone's, a CI runner's) is mounted inside the
    scratch space, which /tmp points to in the sandbox; /tmp stays writable."""
    if not str(tmp_path.resolve()).startswith("/tmp/"):
        pytest.skip("the test folder is not below /tmp here")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    here = Path(__file__).resolve().parents[1]
    code = (
        "from skills import run_program\n"
        "r = run_program(\"def run():\\n    open('/tmp/ok', 'w').write('x')\\n"
        "    return open('/tmp/ok').read()\\n\", {})\n"
        "print(r.ok, r.value, r.error)\n"
    )
    paths = [str(here), *[p for p in sys.path if p.endswith("site-packages")]]
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(paths)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "x", "None"]
