"""Running an answer's Python against unit tests, in a subprocess that cannot reach the network.

    sandbox = Sandbox(parallel=2)
    result = await sandbox.run(code, tests, timeout_s=10, memory_mb=512)
    result.passed, result.reason, result.stdout

The child is a fresh `python -I` in a new temporary directory (its working directory and HOME),
with a minimal environment, in its own session. Before the answer's code runs it:
- limits its address space (`memory_mb`), CPU seconds and file sizes (`resource.setrlimit`);
- moves into a network namespace of its own where Linux allows it (a new user and network
  namespace, which needs no privilege where user namespaces are enabled): no interface but a
  downed loopback, so no connection leaves, whatever the code does;
- and in any case installs an audit hook (PEP 578) that refuses Internet sockets, name lookups,
  new processes, `ctypes` and signals to other processes, so ordinary code fails at once with a
  PermissionError where no namespace could be made.
The parent kills the child's whole process group at `timeout_s` (wall clock), and the child dies
with the parent (`PR_SET_PDEATHSIG`) however the parent ends. What the code prints
is captured (the first 4000 characters of each stream).

This stops accidents (a runaway loop, a memory blow-up, a test that calls out to a service), not an
adversary: code written to fool its scorer can still read files the user can, or forge the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Sandbox", "SandboxResult", "extract_code"]

OUTPUT_CHARS = 4000
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)

# The child's harness. argv[1]: a JSON object with the limits and the result file's name.
_HARNESS = r"""
import json, os, resource, socket, sys, traceback, types

settings = json.loads(sys.argv[1])
mb = settings["memory_mb"] * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (mb, mb))
cpu = settings["cpu_s"]
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024,) * 2)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

network = "audit hook"
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_PDEATHSIG: die with the eval, even when it is killed outright (this child has its own session).
    libc.prctl(1, 9)
    if os.getppid() != settings["parent"]:
        os._exit(1)
    # CLONE_NEWUSER | CLONE_NEWNET (no privilege needed where user namespaces are on), else CLONE_NEWNET.
    for flags in (0x10000000 | 0x40000000, 0x40000000):
        if libc.unshare(flags) == 0:
            network = "network namespace and audit hook"
            break
except Exception:
    pass

OWN_PID = os.getpid()
REFUSED_PREFIXES = ("subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "ctypes.", "pty.")
REFUSED = {"os.system", "os.startfile"}
LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
           "socket.sethostname"}
NO_NETWORK = "the python scorer's sandbox has no network: "

def guard(event, args):
    if event == "socket.__new__":
        if args[1] != socket.AF_UNIX:
            raise PermissionError(NO_NETWORK + "Internet sockets are refused")
    elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        if not isinstance(args[1], (str, bytes)):
            raise PermissionError(NO_NETWORK + event + " is refused")
    elif event in LOOKUPS:
        raise PermissionError(NO_NETWORK + event + " is refused")
    elif event in REFUSED or event.startswith(REFUSED_PREFIXES):
        raise PermissionError("the python scorer's sandbox refuses " + event)
    elif event in ("os.kill", "os.killpg") and args[0] not in (OWN_PID, 0):
        raise PermissionError("the python scorer's sandbox refuses signals to other processes")

sys.addaudithook(guard)
result = {"network": network, "tests": [], "error": None}
solution = types.ModuleType("solution")
sys.modules["solution"] = solution
try:
    exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), solution.__dict__)
except BaseException as exc:
    result["error"] = "the answer's code failed: " + "".join(traceback.format_exception_only(exc)).strip()
else:
    try:
        exec(compile(open("tests.py", encoding="utf-8").read(), "tests.py", "exec"), solution.__dict__)
        result["tests"].append({"name": "tests.py", "error": None})
    except BaseException as exc:
        result["tests"].append({"name": "tests.py", "error": "".join(traceback.format_exception_only(exc)).strip()})
    for name, value in list(solution.__dict__.items()):
        code = getattr(value, "__code__", None)
        if name.startswith("test_") and callable(value) and code is not None and code.co_filename == "tests.py":
            try:
                value()
                result["tests"].append({"name": name, "error": None})
            except BaseException as exc:
                result["tests"].append({"name": name, "error": "".join(traceback.format_exception_only(exc)).strip()})
sys.stdout.flush()
with open(settings["result"], "w", encoding="utf-8") as out:
    json.dump(result, out)
"""


@dataclass
class SandboxResult:
    passed: bool
    reason: str
    stdout: str = ""
    stderr: str = ""
    tests: list[dict[str, str | None]] = field(default_factory=list)
    network: str | None = None


def extract_code(answer: str) -> str:
    """The answer's Python: its first ```python block, else its first unlabelled block, else all of it."""
    blocks = _FENCE.findall(answer)
    for language, body in blocks:
        if language.lower() in ("python", "py", "python3"):
            return str(body)
    for language, body in blocks:
        if not language:
            return str(body)
    return answer


def _clip(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= OUTPUT_CHARS else text[:OUTPUT_CHARS] + f"\n[... {len(text) - OUTPUT_CHARS} more]"


def _ended_by(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed)", "SIGSEGV": " (crashed)"}.get(name, "")
        return f"the process ended by {name}{hint}"
    return f"the process exited with status {returncode} before reporting"


class Sandbox:
    """Runs answers' code against tests, at most `parallel` at a time."""

    def __init__(self, parallel: int | None = None) -> None:
        self._slots = asyncio.Semaphore(parallel or os.cpu_count() or 1)

    async def run(self, code: str, tests: str, *, timeout_s: float, memory_mb: int) -> SandboxResult:
        async with self._slots:
            with tempfile.TemporaryDirectory(prefix="fusionkit-eval-") as tmp:
                return await self._run_in(Path(tmp), code, tests, timeout_s, memory_mb)

    async def _run_in(self, tmp: Path, code: str, tests: str, timeout_s: float, memory_mb: int) -> SandboxResult:
        (tmp / "solution.py").write_text(code, encoding="utf-8")
        (tmp / "tests.py").write_text(tests, encoding="utf-8")
        result_file = tmp / ".result.json"
        settings = {
            "memory_mb": memory_mb,
            "cpu_s": max(1, int(timeout_s) + 1),
            "result": str(result_file),
            "parent": os.getpid(),
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _HARNESS,
            json.dumps(settings),
            cwd=tmp,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            timed_out = True
            stdout, stderr = b"", b""
        finally:
            if proc.returncode is None:
                # The whole group: whatever the code started goes too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        out, err = _clip(stdout), _clip(stderr)
        if timed_out:
            return SandboxResult(False, f"timed out after {timeout_s:g} s", out, err)
        try:
            report = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return SandboxResult(False, _ended_by(proc.returncode), out, err)
        tests_run = report.get("tests") or []
        failed = [t for t in tests_run if t.get("error")]
        network = report.get("network")
        if report.get("error"):
            return SandboxResult(False, str(report["error"]), out, err, tests_run, network)
        if failed:
            first = failed[0]
            reason = f"{len(failed)} of {len(tests_run)} tests failed; {first['name']}: {first['error']}"
            return SandboxResult(False, reason, out, err, tests_run, network)
        return SandboxResult(True, f"{len(tests_run)} of {len(tests_run)} tests passed", out, err, tests_run, network)
