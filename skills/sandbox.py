"""Run untrusted skill programs in an isolated, limited Python process.

Isolation is bubblewrap's (``bwrap``, the Debian/Fedora package ``bubblewrap``): each run gets new
user, PID, network, IPC, UTS and cgroup namespaces, an empty root file system that holds only
read-only views of what the interpreter needs (``/usr`` and the system library folders, the
Python prefix, the environment's ``site-packages``) and is then remounted read-only, a fresh
``/proc`` that shows only the sandbox's own processes, a minimal ``/dev``, and one writable place:
a size-capped tmpfs at ``/scratch`` (its cwd, ``HOME`` and, through ``/tmp``, ``TMPDIR``). The
program runs as uid/gid 65534 with every capability dropped, in a fixed environment, and dies
with its parent. The store, the home folder and the server's files are simply not there.

Limits, each named in the error of a run it stops (``RunResult.killed_by``):

==============  ==================================================================================
``timeout``     wall clock: the host kills the whole sandbox
``cpu``         ``RLIMIT_CPU``
``memory``      ``RLIMIT_AS`` (a ``MemoryError`` or a kill)
``processes``   a cgroup ``pids.max`` (v2 or v1; holds for root too) where the host lets us create
                one, else ``RLIMIT_NPROC`` inside the sandbox's user namespace (binds a non-root
                host user only: as root without a cgroup, isolation is refused)
``disk``        the tmpfs size caps (``/scratch``; ``/dev/shm`` gets an eighth) and
                ``RLIMIT_FSIZE``
``output``      stdout + stderr together, read by the host with a cap
``result_size`` the JSON result, sent back on its own pipe with a cap
==============  ==================================================================================

Fail closed: when bubblewrap is missing or cannot start (``isolation()`` says why), ``run_program``
raises ``IsolationUnavailable`` naming what to install. Only an operator's explicit
``RunLimits(unsafe_no_isolation=True)`` runs the program anyway, as a plain subprocess of the same
user with the resource limits above (except the process cap) and a host scratch folder: no file
system, process or network boundary (sockets are refused in Python only, which is no boundary).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skills.errors import IsolationUnavailable, ParamError, SandboxError, SkillError

__all__ = [
    "Isolation",
    "RunLimits",
    "RunResult",
    "isolation",
    "run_program",
    "validate_params",
    "validate_result",
]

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # "nobody" on Debian, Fedora and Alpine
SCRATCH = "/scratch"
TMP = Path("/tmp")
PROGRAM_PATH = "/skill/program.py"
_READ_CHUNK = 1 << 16
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap; see docs/SECURITY.md)"
)

_BOOTSTRAP = r"""
import errno, json, os, resource, sys, traceback
program_path, result_fd, limits = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
def _limit(which, soft, hard=None):
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
_limit(resource.RLIMIT_FSIZE, limits["disk_bytes"])
_limit(resource.RLIMIT_AS, limits["memory_mb"] * 1024 * 1024)
if limits["processes"]:
    _limit(resource.RLIMIT_NPROC, limits["processes"])
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
        "errno": getattr(exc, "errno", None) if isinstance(exc, OSError) else None,
        "traceback": "".join(traceback.format_exception(type(exc), exc, _user_frames(exc))),
    })
sys.stdout.flush()
sys.stderr.flush()
data = envelope.encode()
while data:
    data = data[os.write(result_fd, data):]
os.close(result_fd)
"""


@dataclass
class RunLimits:
    """Limits of one sandboxed run (seconds, MiB, bytes, a count).

    ``unsafe_no_isolation`` is an operator's explicit choice to run where bubblewrap is missing:
    no file-system, process or network boundary. Never set it for code an agent can reach.
    """

    timeout: float = 10.0
    memory_mb: int = 512
    cpu_seconds: int = 10
    output_bytes: int = 1_000_000
    result_bytes: int = 1_000_000
    disk_mb: int = 64
    processes: int = 32
    network: bool = False
    unsafe_no_isolation: bool = False


@dataclass
class RunResult:
    """How a sandboxed run ended.

    ``killed_by`` names the limit that stopped it: ``"timeout"``, ``"cpu"``, ``"memory"``,
    ``"processes"``, ``"disk"``, ``"output"``, ``"result_size"``, or None.
    ``isolated`` says whether the run was inside bubblewrap; ``network_isolated`` whether it had
    no network.
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
    isolated: bool = False
    network_isolated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


# -- schemas --------------------------------------------------------------------------------------
def _violations(schema: dict[str, Any], instance: Any, root: str) -> list[str]:
    if not schema:
        return []
    from jsonschema import Draft202012Validator  # on first use: ~0.1 s to import
    from jsonschema.exceptions import SchemaError

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


# -- the process cap ------------------------------------------------------------------------------
class _PidsCgroup:
    """A parent cgroup with the ``pids`` controller under which each run gets its own child."""

    def __init__(self, base: Path, version: int) -> None:
        self.base = base
        self.version = version

    @classmethod
    def find(cls) -> _PidsCgroup | None:
        """A usable pids cgroup (v2 unified root, then v1 ``pids`` hierarchy), or None."""
        root = Path("/sys/fs/cgroup")
        candidates: list[tuple[Path, int]] = []
        if "pids" in _read(root / "cgroup.controllers").split():
            candidates.append((root, 2))
        if (root / "pids" / "cgroup.procs").exists():
            candidates.append((root / "pids", 1))
        for parent, version in candidates:
            base = parent / "kb-sandbox"
            try:
                base.mkdir(exist_ok=True)
                if version == 2:
                    for level in (parent, base):
                        if "pids" not in _read(level / "cgroup.subtree_control").split():
                            (level / "cgroup.subtree_control").write_text("+pids")
                cgroup = cls(base, version)
                with cgroup.run(4):
                    pass
                return cgroup
            except OSError as exc:
                log.info("sandbox: cgroup %s unusable: %s", parent, exc)
        return None

    @contextlib.contextmanager
    def run(self, limit: int) -> Iterator[Path]:
        """A fresh child cgroup capped at ``limit`` processes; every process left in it is
        killed and the cgroup removed on exit."""
        group = self.base / f"run-{uuid.uuid4().hex[:12]}"
        group.mkdir()
        try:
            (group / "pids.max").write_text(str(max(1, limit)))
            yield group
        finally:
            _kill_cgroup(group)

    @staticmethod
    def hit(group: Path) -> bool:
        """Whether a fork was refused for the cap (``pids.events`` counts them)."""
        for line in _read(group / "pids.events").splitlines():
            key, _, count = line.partition(" ")
            if key == "max" and count.strip() not in {"", "0"}:
                return True
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _kill_cgroup(group: Path) -> None:
    kill = group / "cgroup.kill"
    for _ in range(100):
        pids = [int(p) for p in _read(group / "cgroup.procs").split()]
        if not pids:
            break
        if kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    for _ in range(100):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    log.warning("sandbox: could not remove cgroup %s", group)


# -- isolation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Isolation:
    """What this machine offers for running skill code.

    ``available`` is False with a ``reason`` (what is missing, and how to install it) when
    executable skills cannot run isolated here; ``process_cap`` is ``"cgroup v2"``,
    ``"cgroup v1"`` or ``"rlimit"``.
    """

    available: bool
    tool: str | None = None
    process_cap: str | None = None
    reason: str | None = None


@functools.cache
def _detect() -> tuple[Isolation, _PidsCgroup | None]:
    if not sys.platform.startswith("linux"):
        return Isolation(
            False, reason=f"skill isolation needs Linux (this is {sys.platform})"
        ), None
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation(
            False, reason=f"bubblewrap (bwrap) is not installed: {_INSTALL_HINT}"
        ), None
    cgroup = _PidsCgroup.find()
    if cgroup is not None:
        cap = f"cgroup v{cgroup.version}"
    elif os.geteuid() != 0:
        cap = "rlimit"
    else:
        return Isolation(
            False,
            tool=bwrap,
            reason="running as root with no writable cgroup 'pids' controller, so no process "
            "cap would hold: run the server as an unprivileged user, or give it a cgroup "
            "(see docs/SECURITY.md)",
        ), None
    found = Isolation(True, tool=bwrap, process_cap=cap)
    try:
        probe = _execute(found, cgroup, "def run():\n    return 1\n", {}, RunLimits(timeout=30))
    except OSError as exc:
        return Isolation(False, tool=bwrap, reason=f"bubblewrap could not start: {exc}"), None
    if probe.ok:
        return found, cgroup
    detail = (probe.stderr or probe.error or "").strip().splitlines()
    reason = f"bubblewrap could not start a sandbox: {detail[-1] if detail else probe.error}"
    if "namespace" in reason.lower() or "permission" in reason.lower():
        reason += (
            " (unprivileged user namespaces may be disabled: see docs/SECURITY.md for "
            "kernel.unprivileged_userns_clone and AppArmor's restrict_unprivileged_userns)"
        )
    return Isolation(False, tool=bwrap, reason=reason), None


def isolation() -> Isolation:
    """What isolation this machine offers (probed once per process)."""
    return _detect()[0]


def _read_only_mounts() -> tuple[list[str], list[Path]]:
    """bwrap arguments for a read-only view of the system and the interpreter with its packages,
    and the folders they expose."""
    args = ["--ro-bind", "/usr", "/usr"]
    bound: list[Path] = [Path("/usr")]

    def covered(path: Path) -> bool:
        return any(path == b or b in path.parents for b in bound)

    def ro_bind(path: Path) -> None:
        if path.exists() and not covered(path):
            args.extend(["--ro-bind", str(path), _inside(path)])
            bound.append(path)

    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args.extend(["--symlink", os.readlink(path), str(path)])
        elif path.is_dir():
            ro_bind(path)
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime"):
        args.extend(["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"])
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        ro_bind(Path(prefix).resolve())
    if sys.prefix != sys.base_prefix:  # a virtual environment
        venv = Path(sys.prefix)
        ro_bind(venv / "pyvenv.cfg")
        for folder in site.getsitepackages():
            ro_bind(Path(folder))
        exe = Path(sys.executable)
        if not covered(exe):
            args.extend(["--symlink", os.path.realpath(exe), _inside(exe)])
    return args, bound


def _inside(path: Path) -> str:
    """Where a host path is mounted in the sandbox: at the same path, except below ``/tmp``,
    which in the sandbox is a link into the scratch space (an interpreter or virtual environment
    installed below ``/tmp`` is mounted there, read-only, and found through the link)."""
    if path == TMP or TMP in path.parents:
        return f"{SCRATCH}{path}"
    return str(path)


def _bwrap_command(
    tool: str, limits: RunLimits, program_fd: int, hidden: Sequence[str | os.PathLike[str]]
) -> list[str]:
    disk = max(1, int(limits.disk_mb)) * 1024 * 1024
    command = [
        tool,
        "--unshare-all",
        "--unshare-user",
        *(["--share-net"] if limits.network else []),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
    ]
    command += [  # the scratch space first: mounts below /tmp land in it (see _inside)
        "--size",
        str(disk),
        "--tmpfs",
        SCRATCH,
        "--perms",
        "1777",
        "--dir",
        f"{SCRATCH}/tmp",
        "--symlink",
        f"{SCRATCH}/tmp",
        "/tmp",
    ]
    mounts, bound = _read_only_mounts()
    command += mounts
    for path in hidden:  # defence in depth: a store below a bound folder stays invisible
        target = Path(path).resolve()
        if not any(target == b or b in target.parents for b in bound):
            continue
        if target.is_dir():
            command.extend(["--tmpfs", _inside(target)])
        elif target.exists():
            command.extend(["--ro-bind", "/dev/null", _inside(target)])
    command += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(max(1024 * 1024, disk // 8)),
        "--tmpfs",
        "/dev/shm",
        "--ro-bind-data",
        str(program_fd),
        PROGRAM_PATH,
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        SCRATCH,
        "--clearenv",
    ]
    for key, value in _environment(SCRATCH).items():
        command.extend(["--setenv", key, value])
    return [*command, "--"]


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": f"{home}/tmp",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# -- running --------------------------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _pump(
    proc: subprocess.Popen[bytes],
    result_fd: int,
    stdin_data: bytes,
    limits: RunLimits,
    deadline: float,
) -> tuple[bytes, bytes, bytes, str | None]:
    """Feed stdin, collect stdout/stderr and the result up to their caps.

    Returns (stdout, stderr, result, killed_by).
    """
    assert proc.stdin and proc.stdout and proc.stderr
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray(), result_fd: bytearray()}
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
            if len(buffers[out_fd]) + len(buffers[err_fd]) > limits.output_bytes:
                killed_by = "output"
            elif len(buffers[result_fd]) > limits.result_bytes:
                killed_by = "result_size"
            if killed_by:
                break
    if killed_by:
        _kill_group(proc)
    out, err = (bytes(buffers[fd][: limits.output_bytes]) for fd in (out_fd, err_fd))
    return out, err, bytes(buffers[result_fd]), killed_by


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
    hidden: Sequence[str | os.PathLike[str]] = (),
) -> RunResult:
    """Run ``program``'s ``run(**params)`` in the sandbox.

    Args:
        program: Python source defining ``run(**params)``; the result must be JSON-serialisable.
        params: keyword arguments, JSON-serialisable.
        parameters: JSON Schema the params must satisfy (checked before running).
        returns: JSON Schema the value must satisfy (a violation gives ``ok=False``).
        limits: the limits (``RunLimits()`` by default).
        hidden: paths to mask inside the sandbox should they lie below a folder it can read
            (the store's folder, say).

    Returns:
        A ``RunResult``; errors raised by the program are reported in it, never re-raised.

    Raises:
        ParamError: the params break ``parameters`` or are not JSON-serialisable.
        IsolationUnavailable: bubblewrap cannot run here and ``limits.unsafe_no_isolation`` is
            not set; the message says what to install.
        SandboxError: the sandbox could not be started.
    """
    limits = limits or RunLimits()
    problems = validate_params(parameters or {}, params)
    if problems:
        raise ParamError(problems)
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParamError([f"params: not JSON-serialisable ({exc})"]) from exc
    if limits.unsafe_no_isolation:
        return _execute(None, None, program, params, limits, returns=returns)
    found, cgroup = _detect()
    if not found.available:
        raise IsolationUnavailable(
            f"executable skills do not run without isolation: {found.reason}; an operator may "
            "run them unisolated with --unsafe-no-isolation (never over MCP)"
        )
    try:
        return _execute(found, cgroup, program, params, limits, hidden, returns)
    except OSError as exc:
        raise SandboxError(f"could not start the sandbox: {exc}") from exc


def _execute(
    found: Isolation | None,
    cgroup: _PidsCgroup | None,
    program: str,
    params: dict[str, Any],
    limits: RunLimits,
    hidden: Sequence[str | os.PathLike[str]] = (),
    returns: dict[str, Any] | None = None,
) -> RunResult:
    """One run: inside bubblewrap when ``found`` is given, else as a plain subprocess."""
    isolated = found is not None
    boot_limits = {
        "cpu_seconds": max(1, int(limits.cpu_seconds)),
        "disk_bytes": max(1, int(limits.disk_mb)) * 1024 * 1024,
        "memory_mb": max(16, int(limits.memory_mb)),
        "processes": max(1, int(limits.processes)) if isolated and cgroup is None else 0,
        "soft_block_network": not limits.network and not isolated,
    }
    with contextlib.ExitStack() as stack:
        group: Path | None = None
        if found is not None:
            program_file = stack.enter_context(tempfile.TemporaryFile())
            program_file.write(program.encode("utf-8"))
            program_file.flush()
            program_file.seek(0)
            program_path, home, cwd = PROGRAM_PATH, SCRATCH, None
            prefix = _bwrap_command(str(found.tool), limits, program_file.fileno(), hidden)
            extra_fds: tuple[int, ...] = (program_file.fileno(),)
            if cgroup is not None:
                group = stack.enter_context(
                    cgroup.run(limits.processes + 2)
                )  # + bwrap and its init
                # join the cgroup before bwrap starts, so nothing it forks escapes the cap
                enter = 'echo $$ > "$0" && exec "$@"'
                prefix = ["/bin/sh", "-c", enter, str(group / "cgroup.procs"), *prefix]
        else:
            scratch = Path(tempfile.mkdtemp(prefix="skill-run-"))
            stack.callback(_rmtree, scratch)
            (scratch / "tmp").mkdir()
            program_path, home, cwd = str(scratch / "skill_program.py"), str(scratch), scratch
            Path(program_path).write_text(program, encoding="utf-8")
            prefix, extra_fds = [], ()
        read_end, write_end = os.pipe()
        stack.callback(os.close, read_end)
        command = [
            *prefix,
            sys.executable,
            "-I",
            "-X",
            "utf8",
            "-c",
            _BOOTSTRAP,
            program_path,
            str(write_end),
            json.dumps(boot_limits),
        ]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=_environment(home),
                start_new_session=True,
                pass_fds=(write_end, *extra_fds),
            )
        finally:
            os.close(write_end)  # the child holds its copy; EOF comes when it exits
        stdin_data = json.dumps(params, allow_nan=False).encode()
        with proc:
            try:
                out, err, result, killed_by = _pump(
                    proc, read_end, stdin_data, limits, start + limits.timeout
                )
                try:
                    proc.wait(timeout=max(0.0, start + limits.timeout - time.monotonic()))
                except subprocess.TimeoutExpired:
                    killed_by = killed_by or "timeout"
            finally:
                _kill_group(proc)
                proc.wait()
        duration = time.monotonic() - start
        capped = group is not None and _PidsCgroup.hit(group)
    return _finish(
        proc.returncode,
        result,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
        duration,
        killed_by,
        capped,
        isolated and not limits.network,
        isolated,
        limits,
        returns,
    )


_SIGNAL_CAUSE = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "disk", signal.SIGKILL: "memory"}
_ERRNO_CAUSE = {errno.ENOSPC: "disk", errno.EDQUOT: "disk", errno.EFBIG: "disk"}


def _messages(limits: RunLimits) -> dict[str, str]:
    return {
        "timeout": f"stopped at the time limit ({limits.timeout:g} s wall clock)",
        "cpu": f"stopped at the CPU time limit ({limits.cpu_seconds} s)",
        "memory": f"stopped at the memory limit ({limits.memory_mb} MiB)",
        "processes": f"stopped at the processes limit ({limits.processes} processes)",
        "disk": f"stopped at the disk limit ({limits.disk_mb} MiB of scratch space)",
        "output": f"stopped at the output limit ({limits.output_bytes} bytes of stdout+stderr)",
        "result_size": f"stopped at the result size limit ({limits.result_bytes} bytes)",
    }


def _finish(
    returncode: int,
    result: bytes,
    stdout: str,
    stderr: str,
    duration: float,
    killed_by: str | None,
    process_cap_hit: bool,
    network_isolated: bool,
    isolated: bool,
    limits: RunLimits,
    returns: dict[str, Any] | None,
) -> RunResult:
    """Turn the exit status and the result envelope into a ``RunResult``."""
    base: dict[str, Any] = {
        "stdout": stdout,
        "stderr": stderr,
        "duration": duration,
        "isolated": isolated,
        "network_isolated": network_isolated,
    }
    messages = _messages(limits)
    envelope: dict[str, Any] | None = None
    if killed_by is None and result:
        try:
            loaded = json.loads(result.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            loaded = None
        envelope = loaded if isinstance(loaded, dict) else None
    if envelope is not None and envelope.get("ok"):
        value = envelope.get("value")
        problems = validate_result(returns or {}, value)
        if problems:
            error = "the result does not match the returns schema: " + "; ".join(problems)
            return RunResult(False, value, error, "ResultError", None, killed_by=None, **base)
        return RunResult(True, value, None, None, None, killed_by=None, **base)
    if killed_by is None and process_cap_hit:
        killed_by = "processes"
    if envelope is not None:
        error_type = str(envelope.get("error_type") or "Error")
        error = str(envelope.get("error"))
        if killed_by is None and error_type == "MemoryError":
            killed_by = "memory"
        if killed_by is None:
            killed_by = _ERRNO_CAUSE.get(envelope.get("errno") or 0)
        if killed_by:
            error = f"{messages[killed_by]}: {error_type}: {error}"
        return RunResult(
            False, None, error, error_type, envelope.get("traceback"), killed_by=killed_by, **base
        )
    # no envelope: killed, crashed, or exited early
    sig = -returncode if returncode < 0 else None
    if isolated and returncode > 128:
        sig = returncode - 128  # bubblewrap reports a child's death by signal as 128 + signal
    if killed_by is None and sig is not None and sig in signal.valid_signals():
        killed_by = _SIGNAL_CAUSE.get(signal.Signals(sig))
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
