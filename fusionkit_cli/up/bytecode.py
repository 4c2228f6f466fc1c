"""Compile the project's own modules once, before `up` spawns its children.

Every child is a fresh Python process importing the bridge's or the router's modules. Where
bytecode is not written (`PYTHONDONTWRITEBYTECODE`, set on many CI machines and in containers),
each of them would compile every project module it imports from source on every start, the
router's some sixty of them. Installed packages were compiled when they were installed (`make
setup` syncs with `--compile-bytecode`; pip compiles by default), an editable checkout's sources
were not: so `up` writes their bytecode once, explicitly, and every child loads it.

    precompile()   # when nothing changed: one stat per module
"""

from __future__ import annotations

import compileall
import importlib.util

__all__ = ["PACKAGES", "precompile"]

PACKAGES = ("fusionkit_cli", "server", "bridge")


def precompile(packages: tuple[str, ...] = PACKAGES) -> None:
    """Write missing or stale bytecode for `packages`; a directory that cannot be written is left as it is."""
    for name in packages:
        spec = importlib.util.find_spec(name)
        for directory in (spec.submodule_search_locations or []) if spec is not None else []:
            compileall.compile_dir(directory, quiet=2, workers=1)
