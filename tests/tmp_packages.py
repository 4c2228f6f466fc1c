"""A Python package written into a test's tmp dir, importable for the rest of the test.

    package = write_package(tmp_path, "pkgx", {"__init__.py": "", "mod.py": "ANSWER = 1\n"}, monkeypatch)
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["write_package"]


def write_package(root: Path, name: str, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    package = root / name
    package.mkdir()
    for filename, text in files.items():
        (package / filename).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    return package
