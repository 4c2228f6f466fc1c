"""The openai SDK as the openai adapter uses it: the client, its stream and its errors, imported lean.

    from bridge.adapters.openai_sdk import openai   # instead of `import openai`
    client = openai.AsyncOpenAI(api_key=..., base_url=..., max_retries=0)

`import openai` runs the package's `__init__`, which imports every module of `openai.types` (the
models of every API the SDK covers) and `openai.lib`'s helpers: most of the time and memory an
openai bridge spends starting, for names it never uses. What the adapter uses lives in
`openai._client` (`AsyncOpenAI`, `AsyncStream`, `RequestOptions`) and `openai._exceptions`, so
those are imported with the packages on their way (`DEFERRED`) registered but their `__init__`
deferred. Asked for a name it does not have, a deferred package imports it from the submodule
its `__init__` would have taken it from, when that is all the `__init__` does with it
(`openai.OpenAI`, `from openai.types import Batch`), and runs its whole `__init__` otherwise
(`openai.__all__`). So other code in the same process, an in-process router or the tests, sees
the whole SDK as usual, with the very same classes.

The SDK's wire handling is unchanged: the same client, SSE reader and error types. If an openai
release moves things so that this path fails, the whole package is imported as before (slower,
never wrong) and `LEAN` is False; tests/test_openai_sdk.py fails then, so that someone notices.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["LEAN", "openai"]

log = logging.getLogger("fusionkit.bridge")

# Packages on the path to what the adapter needs, whose `__init__` imports far more than that.
# The last: `openai._base_client` subclasses its `Httpx2AiohttpClient` (from `.client`, which needs
# no aiohttp), but the package's `__init__` also imports `.transport`, which imports aiohttp.
DEFERRED = ("openai", "openai.types", "openai.types.shared", "openai.lib", "openai._vendor.httpx_aiohttp")
# Imported for real: the client with its stream class and request options, and the error types.
NEEDED = ("openai._client", "openai._exceptions")
CLIENT_NAMES = ("AsyncOpenAI", "AsyncStream", "RequestOptions")

_finishing = threading.RLock()


def _defer(name: str) -> None:
    """Register package `name` with its `__init__` not run yet; its first missing name runs it."""
    spec = importlib.util.find_spec(name)  # the parent is registered already: this runs nothing
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not a package here")
    module = importlib.util.module_from_spec(spec)

    def finish(attribute: str) -> object:
        # `from . import _exceptions` inside the SDK asks the package for the name before it imports
        # the module: a submodule is imported, not a reason to run the package's `__init__`.
        if _is_submodule(f"{name}.{attribute}"):
            return importlib.import_module(f"{name}.{attribute}")
        # A name the `__init__` only re-exports (`from .client import Httpx2AiohttpClient`) is taken
        # from that submodule alone.
        source = _reexports(module).get(attribute)
        if source is not None:
            value = getattr(importlib.import_module(f"{name}.{source}"), attribute)
            setattr(module, attribute, value)
            return value
        with _finishing:
            if module.__dict__.get("__getattr__") is finish:
                del module.__dict__["__getattr__"]  # the package's own __getattr__, if any, takes over
                assert module.__spec__ is not None and module.__spec__.loader is not None
                module.__spec__.loader.exec_module(module)
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = finish
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _reexports(package: ModuleType) -> dict[str, str]:
    """Names the package's `__init__` binds once, and only by `from .submodule import name`: name -> submodule."""
    cached: dict[str, str] | None = package.__dict__.get("_lean_reexports")
    if cached is not None:
        return cached
    sources: dict[str, str | None] = {}
    assert package.__file__ is not None
    for node in ast.parse(Path(package.__file__).read_bytes()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                sources[bound] = node.module if alias.name == bound and bound not in sources else None
            continue
        for child in ast.walk(node):  # any other binding, even one nested: the `__init__`'s own doing
            for bound in _bindings(child):
                sources[bound] = None
    found = {bound: source for bound, source in sources.items() if source is not None}
    package.__dict__["_lean_reexports"] = found
    return found


def _bindings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        return [node.id]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.alias):
        return [node.asname or node.name.split(".")[0]]
    return []


def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # not a module name at all ("a.b" asked as one attribute)
        return False


def _import_lean() -> ModuleType:
    for name in DEFERRED:
        _defer(name)
    client, exceptions = (importlib.import_module(name) for name in NEEDED)
    package = sys.modules["openai"]
    for name in CLIENT_NAMES:
        setattr(package, name, getattr(client, name))
    for name in exceptions.__all__:
        setattr(package, name, getattr(exceptions, name))
    setup_logging = getattr(sys.modules.get("openai._utils._logs"), "setup_logging", None)
    if setup_logging is not None:
        setup_logging()  # OPENAI_LOG, as the package's __init__ would have set it up
    return package


def _forget() -> None:
    for name in [n for n in sys.modules if n == "openai" or n.startswith("openai.")]:
        del sys.modules[name]


def _load() -> tuple[ModuleType, bool]:
    """The `openai` package with at least the adapter's names, and whether the lean path gave it."""
    if "openai" in sys.modules:  # imported in full already, or lean by an earlier call
        package = sys.modules["openai"]
        return package, "__version__" not in vars(package)  # vars(): getattr would finish a deferred import
    try:
        return _import_lean(), True
    except Exception as exc:  # a release that moved things: import it the usual way
        _forget()
        log.debug("the lean import of the openai SDK failed (%s: %s); importing all of it", type(exc).__name__, exc)
        return importlib.import_module("openai"), False


if TYPE_CHECKING:
    import openai

    LEAN: bool
else:
    openai, LEAN = _load()
