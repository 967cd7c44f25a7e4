"""Run untrusted skill programs in a separate, limited Python process.

Each run gets a fresh scratch folder (its cwd, ``HOME`` and ``TMPDIR``), a scrubbed environment
(``PATH``, ``LANG`` and single-thread settings for numeric libraries only), and
``sys.executable -I`` (isolated mode: no user site, no ``PYTHON*`` variables). A small bootstrap
applies resource limits (``RLIMIT_AS`` for memory, ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` = the output
cap, ``RLIMIT_CORE`` = 0), reads the parameters as JSON from stdin, imports the program as a
module, calls ``run(**params)`` and writes a JSON envelope (value, or error type, message and
traceback) to a result file. The host reads stdout and stderr with a cap, kills the whole process
group on the wall-clock timeout or when output passes the cap, and deletes the scratch folder.

Isolation with namespaces: where ``unshare`` works (detected once per process and cached; as
root ``unshare --net --pid --fork --kill-child``, otherwise the same with ``--map-root-user``),
the program runs in a new network namespace (no interfaces but a down loopback: every connection
fails, 127.0.0.1 included) and a new PID namespace (it cannot see or signal host processes, and
every process it started dies with it). ``RunLimits(network=True)`` keeps the PID namespace but
not the network one. Where namespaces are unavailable the run still proceeds: the bootstrap
replaces ``socket.socket`` with one that refuses internet and unix sockets, which stops ordinary
code but is not a security boundary, and the result says ``network_isolated=False``.
``RLIMIT_NPROC`` is not set: it counts every process of the user, host included, and root
ignores it; the PID namespace and the process-group kill bound forked children instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from skills.errors import ParamError, SandboxError, SkillError

__all__ = [
    "RunLimits",
    "RunResult",
    "isolation",
    "run_program",
    "validate_params",
    "validate_result",
]

log = logging.getLogger(__name__)

PROGRAM_FILE = "skill_program.py"
RESULT_FILE = ".skill_result.json"
_READ_CHUNK = 1 << 16

_BOOTSTRAP = r"""
import json, os, resource, signal, sys, traceback
program_path, result_path, raw_limits = sys.argv[1], sys.argv[2], sys.argv[3]
limits = json.loads(raw_limits)
if os.getpid() == 1:
    # init of a fresh PID namespace ignores default-action signals (SIGXCPU, SIGTERM...), so
    # run the program in a child and report how it ended through the exit status.
    child = os.fork()
    if child:
        while True:
            pid, status = os.wait()
            if pid == child:
                break
        os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
def _limit(which, soft, hard=None):
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
_limit(resource.RLIMIT_FSIZE, limits["output_bytes"])
_limit(resource.RLIMIT_AS, limits["memory_mb"] * 1024 * 1024)
if limits["soft_block_network"]:
    import socket
    _Socket = socket.socket
    class _NoNetwork(_Socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
                raise PermissionError("network access is disabled in the skill sandbox")
            super().__init__(family, type, proto, fileno)
    socket.socket = _NoNetwork
def _user_frames(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    return tb
def _write(envelope):
    with open(result_path, "w", encoding="utf-8") as fh:
        fh.write(envelope)
try:
    params = json.loads(sys.stdin.read())
    import importlib.util
    spec = importlib.util.spec_from_file_location("skill_program", program_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["skill_program"] = module
    spec.loader.exec_module(module)
    run = getattr(module, "run", None)
    if not callable(run):
        raise AttributeError("the program defines no function run(**params)")
    value = run(**params)
    try:
        envelope = json.dumps({"ok": True, "value": value}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run() returned a value that is not JSON-serialisable: {exc}") from None
except BaseException as exc:
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        exc = RuntimeError("the program called sys.exit() instead of returning a value")
    envelope = json.dumps({
        "ok": False,
        "error_type": type(exc).__name__,
        "error": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, _user_frames(exc))),
    })
sys.stdout.flush()
sys.stderr.flush()
_write(envelope)
"""


@dataclass
class RunLimits:
    """Limits of one sandboxed run (seconds, MiB, bytes)."""

    timeout: float = 10.0
    memory_mb: int = 512
    cpu_seconds: int = 10
    output_bytes: int = 1_000_000
    network: bool = False


@dataclass
class RunResult:
    """How a sandboxed run ended.

    ``killed_by`` is ``"timeout"``, ``"memory"``, ``"cpu"``, ``"output"`` or None.
    ``network_isolated`` says whether the run was inside a network namespace.
    """

    ok: bool
    value: Any
    error: str | None
    error_type: str | None
    traceback: str | None
    stdout: str
    stderr: str
    duration: float
    killed_by: str | None
    network_isolated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


# -- schemas --------------------------------------------------------------------------------------
def _violations(schema: dict[str, Any], instance: Any, root: str) -> list[str]:
    if not schema:
        return []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SkillError(f"the {root} schema is not valid JSON Schema: {exc.message}") from exc
    messages = []
    errors = Draft202012Validator(schema).iter_errors(instance)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = root
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        messages.append(f"{path}: {error.message}")
    return messages


def validate_params(schema: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Check parameters against a JSON Schema (Draft 2020-12).

    Returns:
        One message per violation, naming the parameter path (``params.items[0]: ...``);
        empty when valid. Raises ``SkillError`` when the schema itself is invalid.
    """
    return _violations(schema, params, "params")


def validate_result(schema: dict[str, Any], value: Any) -> list[str]:
    """Check a program's result against its ``returns`` JSON Schema; messages as above."""
    return _violations(schema, value, "result")


# -- isolation ------------------------------------------------------------------------------------
@functools.cache
def _unshare_prefix(network: bool) -> tuple[str, ...] | None:
    """The working ``unshare`` command prefix for this machine, or None (probed once)."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return None
    flags = ["--pid", "--fork", "--kill-child"] + ([] if network else ["--net"])
    candidates = [[exe, *flags]]
    if os.geteuid() != 0:
        candidates = [[exe, "--map-root-user", *flags]]
    for prefix in candidates:
        try:
            probe = subprocess.run(
                [*prefix, "--", sys.executable, "-I", "-c", "pass"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("sandbox: %s unavailable: %s", prefix, exc)
            continue
        if probe.returncode == 0:
            return (*prefix, "--")
        log.info("sandbox: %s failed: %s", prefix, probe.stderr.decode(errors="replace").strip())
    return None


def isolation() -> dict[str, bool]:
    """What this machine offers: ``{"network_namespace": bool, "pid_namespace": bool}``."""
    return {
        "network_namespace": _unshare_prefix(False) is not None,
        "pid_namespace": _unshare_prefix(True) is not None,
    }


# -- running --------------------------------------------------------------------------------------
def _environment(scratch: Path) -> dict[str, str]:
    tmp = scratch / "tmp"
    tmp.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(scratch),
        "TMPDIR": str(tmp),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _pump(
    proc: subprocess.Popen[bytes], stdin_data: bytes, limits: RunLimits, deadline: float
) -> tuple[bytes, bytes, str | None]:
    """Feed stdin, collect stdout/stderr up to the cap; return (out, err, killed_by)."""
    assert proc.stdin and proc.stdout and proc.stderr
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    killed_by = None
    pending = memoryview(stdin_data)
    stdin_fd = proc.stdin.fileno()
    with selectors.DefaultSelector() as sel:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                killed_by = "timeout"
                break
            exited = proc.poll() is not None
            events = sel.select(0 if exited else min(remaining, 0.2))
            if exited and not events:
                break  # the program is gone; a straggler may hold the pipes open
            for key, _ in events:
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(fd)
                    continue
                buffers[fd] += chunk
            if sum(len(b) for b in buffers.values()) > limits.output_bytes:
                killed_by = "output"
                break
    if killed_by:
        _kill_group(proc)
    out, err = (bytes(b[: limits.output_bytes]) for b in buffers.values())
    return out, err, killed_by


def _rmtree(path: Path) -> None:
    def retry(func: Any, target: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(target), 0o700)
        func(target)

    try:
        shutil.rmtree(path, onerror=retry)
    except OSError as exc:
        log.warning("sandbox: could not remove scratch folder %s: %s", path, exc)


def run_program(
    program: str,
    params: dict[str, Any],
    *,
    parameters: dict[str, Any] | None = None,
    returns: dict[str, Any] | None = None,
    limits: RunLimits | None = None,
) -> RunResult:
    """Run ``program``'s ``run(**params)`` in a sandboxed subprocess.

    Args:
        program: Python source defining ``run(**params)``; the result must be JSON-serialisable.
        params: keyword arguments, JSON-serialisable.
        parameters: JSON Schema the params must satisfy (checked before running).
        returns: JSON Schema the value must satisfy (a violation gives ``ok=False``).
        limits: time, memory, CPU, output and network limits (``RunLimits()`` by default).

    Returns:
        A ``RunResult``; errors raised by the program are reported in it, never re-raised.

    Raises:
        ParamError: the params break ``parameters`` or are not JSON-serialisable.
        SandboxError: the interpreter could not be started.
    """
    limits = limits or RunLimits()
    problems = validate_params(parameters or {}, params)
    if problems:
        raise ParamError(problems)
    try:
        stdin_data = json.dumps(params, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ParamError([f"params: not JSON-serialisable ({exc})"]) from exc

    prefix = _unshare_prefix(limits.network)
    isolated = prefix is not None and not limits.network
    boot_limits = {
        "cpu_seconds": max(1, int(limits.cpu_seconds)),
        "output_bytes": max(1, int(limits.output_bytes)),
        "memory_mb": max(16, int(limits.memory_mb)),
        "soft_block_network": not limits.network and not isolated,
    }
    scratch = Path(tempfile.mkdtemp(prefix="skill-run-"))
    try:
        program_path = scratch / PROGRAM_FILE
        result_path = scratch / RESULT_FILE
        program_path.write_text(program, encoding="utf-8")
        command = [
            *(prefix or ()),
            sys.executable,
            "-I",
            "-X",
            "utf8",
            "-c",
            _BOOTSTRAP,
            str(program_path),
            str(result_path),
            json.dumps(boot_limits),
        ]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=scratch,
                env=_environment(scratch),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(f"could not start the sandbox interpreter: {exc}") from exc
        with proc:
            try:
                out, err, killed_by = _pump(proc, stdin_data, limits, start + limits.timeout)
                try:
                    proc.wait(timeout=max(0.0, start + limits.timeout - time.monotonic()))
                except subprocess.TimeoutExpired:
                    killed_by = killed_by or "timeout"
            finally:
                _kill_group(proc)
                proc.wait()
        duration = time.monotonic() - start
        return _finish(
            proc.returncode,
            result_path,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
            duration,
            killed_by,
            isolated,
            prefix is not None,
            limits,
            returns,
        )
    finally:
        _rmtree(scratch)


_SIGNAL_CAUSE = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "output", signal.SIGKILL: "memory"}


def _finish(
    returncode: int,
    result_path: Path,
    stdout: str,
    stderr: str,
    duration: float,
    killed_by: str | None,
    isolated: bool,
    in_pid_namespace: bool,
    limits: RunLimits,
    returns: dict[str, Any] | None,
) -> RunResult:
    """Turn the exit status and the result file into a ``RunResult``."""
    base: dict[str, Any] = {
        "stdout": stdout,
        "stderr": stderr,
        "duration": duration,
        "network_isolated": isolated,
    }
    envelope: dict[str, Any] | None = None
    if killed_by is None and result_path.is_file():
        if result_path.stat().st_size <= limits.output_bytes:
            try:
                loaded = json.loads(result_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                loaded = None
            envelope = loaded if isinstance(loaded, dict) else None
        else:
            killed_by = "output"
    sig = -returncode if returncode < 0 else None
    if in_pid_namespace and returncode > 128:
        sig = returncode - 128
    if envelope is None:
        if killed_by is None and sig is not None:
            killed_by = (
                _SIGNAL_CAUSE.get(signal.Signals(sig)) if sig in signal.valid_signals() else None
            )
        messages = {
            "timeout": f"stopped after the {limits.timeout:g} s time limit",
            "memory": f"killed, probably for passing the {limits.memory_mb} MiB memory limit",
            "cpu": f"stopped after the {limits.cpu_seconds} s CPU limit",
            "output": f"stopped for writing more than {limits.output_bytes} bytes of output",
        }
        if killed_by:
            error = messages[killed_by]
        elif sig is not None:
            error = f"the program died from signal {sig}"
        else:
            error = f"the program exited with status {returncode} without a result"
        return RunResult(
            False,
            None,
            error,
            "SandboxKilled" if killed_by else "SandboxCrash",
            None,
            killed_by=killed_by,
            **base,
        )
    if not envelope.get("ok"):
        error_type = str(envelope.get("error_type") or "Error")
        error = str(envelope.get("error"))
        if error_type == "MemoryError":
            error = f"out of memory (the limit is {limits.memory_mb} MiB)"
        return RunResult(
            False,
            None,
            error,
            error_type,
            envelope.get("traceback"),
            killed_by="memory" if error_type == "MemoryError" else None,
            **base,
        )
    value = envelope.get("value")
    problems = validate_result(returns or {}, value)
    if problems:
        error = "the result does not match the returns schema: " + "; ".join(problems)
        return RunResult(False, value, error, "ResultError", None, killed_by=None, **base)
    return RunResult(True, value, None, None, None, killed_by=None, **base)
