"""Where PYTHONDONTWRITEBYTECODE is set, `up` compiles the project's modules once
(fusionkit_cli/up/bytecode.py), so its children load bytecode instead of compiling on every start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fusionkit_cli.up import supervisor as supervisor_module
from fusionkit_cli.up.bytecode import PACKAGES, precompile
from tests.test_up_supervisor import FakeEnv, make_supervisor
from tests.tmp_packages import write_package

# Reports which source files the interpreter compiled while importing `pkgx.mod`.
_IMPORT_AND_REPORT = """
import importlib._bootstrap_external as external, json
compiled = []
original = external.SourceLoader.source_to_code
def spy(self, data, path, *, _optimize=-1):
    compiled.append(path)
    return original(self, data, path, _optimize=_optimize)
external.SourceLoader.source_to_code = spy
import pkgx.mod
print(json.dumps(compiled))
"""


def compiled_by_a_fresh_process(root: Path) -> list[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_AND_REPORT], cwd=root, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return [Path(p).name for p in json.loads(done.stdout)]


def test_a_child_loads_the_bytecode_written_once_instead_of_compiling_every_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_package(tmp_path, "pkgx", {"__init__.py": "", "mod.py": "ANSWER = 1\n"}, monkeypatch) / "mod.py"

    # Without it, every start compiles again: nothing is kept.
    assert compiled_by_a_fresh_process(tmp_path) == ["__init__.py", "mod.py"]
    assert compiled_by_a_fresh_process(tmp_path) == ["__init__.py", "mod.py"]

    precompile(("pkgx",))
    assert compiled_by_a_fresh_process(tmp_path) == []
    # An edited module is compiled again by the next precompile, not by every child.
    module.write_text("ANSWER = 2  # edited\n")
    os.utime(module, (module.stat().st_atime, module.stat().st_mtime + 5))
    precompile(("pkgx",))
    assert compiled_by_a_fresh_process(tmp_path) == []


def test_every_package_the_project_installs_is_precompiled() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    installed = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(PACKAGES) == installed


@pytest.mark.parametrize("dont_write", [True, False])
def test_up_precompiles_only_where_its_children_would_not_keep_bytecode(
    dont_write: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(supervisor_module, "precompile", lambda: calls.append("precompile"))
    monkeypatch.setattr(sys, "dont_write_bytecode", dont_write)
    env = FakeEnv()
    supervisor, _ = make_supervisor(env)
    # Compiled before any child was spawned, so none of them compiles.
    env.at(1000.01, lambda: calls.append(f"spawned {len(env.procs)}"))
    env.at(1002, env.signal(signal.SIGTERM))
    assert supervisor.run() == 143
    assert calls == (["precompile", "spawned 4"] if dont_write else ["spawned 4"])
