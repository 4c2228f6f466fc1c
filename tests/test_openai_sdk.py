"""The openai SDK imported lean (bridge/adapters/openai_sdk.py): still the SDK, far less of it.

Each check runs in a fresh interpreter, because this test process imported all of `openai`
long ago. If an openai release moves the client or its errors so that the lean path fails,
the adapter still works (it imports the whole package), and `test_the_lean_path_is_taken`
fails so that someone notices the bridges starting slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters import openai_sdk
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState
from tests.tmp_packages import write_package

ROOT = Path(__file__).resolve().parent.parent

# Imported, then reported as JSON: what the lean path loaded, and the adapter calling a real server.
_PROBE = """
import asyncio, json, sys
from bridge.adapters.openai_adapter import OpenAIAdapter
from bridge.adapters.openai_sdk import LEAN
from bridge.adapters.base import CallContext
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError
from bridge.protocol import ChatRequest

loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("openai", "aiohttp"))
request = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})
adapter = OpenAIAdapter(EndpointConfig(id="m", provider="openai-compatible", model="m", base_url=sys.argv[1]))
failing = OpenAIAdapter(EndpointConfig(id="f", provider="openai-compatible", model="m", base_url=sys.argv[2]))

async def calls():
    answer = await adapter.complete(request, CallContext())
    chunks = [chunk async for chunk in adapter.stream(request, CallContext())]
    try:
        await failing.complete(request, CallContext())
        error = None
    except APIError as exc:
        error = {"status": exc.status, "message": exc.message, "retry_after": exc.retry_after}
    await adapter.aclose()
    await failing.aclose()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return answer.choices[0].message.content, text, error

answer, streamed, error = asyncio.run(calls())
report = {"lean": LEAN, "loaded": loaded, "answer": answer, "streamed": streamed, "error": error}
if sys.argv[3] == "then-all":
    import openai
    from openai import OpenAI, RateLimitError
    from openai._exceptions import APIStatusError
    from openai.types.chat import ChatCompletion
    from bridge.adapters import openai_sdk

    async def aiohttp_client():
        client = openai.DefaultAioHttpClient()  # the SDK's opt-in aiohttp transport still works
        await client.aclose()
        return type(client._transport).__name__

    report["whole"] = {
        "aiohttp_transport": asyncio.run(aiohttp_client()),
        "same_client": openai.AsyncOpenAI is openai_sdk.openai.AsyncOpenAI,
        "same_errors": openai.APIStatusError is APIStatusError and issubclass(RateLimitError, APIStatusError),
        "version": openai.__version__,
        "sync_client": OpenAI.__name__,
        "types": ChatCompletion.__name__,
        "all": "OpenAI" in openai.__all__,
    }
print(json.dumps(report))
"""


def _probe(live_server: Any, then: str = "") -> dict[str, Any]:
    """Run the probe against two stand-ins: one that answers, one whose next answer is a 429."""
    answering = live_server(create_openai_standin(StandinState()))
    failing_state = StandinState()
    failing_state.fail_next(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": "7"})
    failing = live_server(create_openai_standin(failing_state))
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, f"{answering.url}/v1", f"{failing.url}/v1", then],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_the_lean_path_is_taken_and_still_speaks_through_the_sdk(live_server: Any) -> None:
    report = _probe(live_server)
    assert report["lean"] is True, "the lean import of the openai SDK no longer works with this openai release"
    loaded = set(report["loaded"])
    assert {"openai._client", "openai._streaming", "openai._exceptions"} <= loaded
    # The package __init__ files would have loaded these (every API's models, the helpers, aiohttp
    # for a transport the adapter does not use).
    assert not loaded & {"openai.types.responses", "openai.types.chat", "openai.resources", "openai.lib._tools"}
    assert "aiohttp" not in loaded
    assert report["answer"] == "echo: hello there"
    assert report["streamed"] == "echo: hello there"
    # The SDK's own error classes, mapped as before: status, message and Retry-After kept.
    error = report["error"]
    assert (error["status"], error["retry_after"]) == (429, "7")
    assert error["message"].endswith("answered 429: slow down")


def test_the_whole_sdk_is_there_after_the_lean_import(live_server: Any) -> None:
    report = _probe(live_server, then="then-all")
    assert report["lean"] is True
    whole = report["whole"]
    assert whole.pop("version")
    assert whole == {
        "aiohttp_transport": "AiohttpTransport",
        "same_client": True,
        "same_errors": True,
        "sync_client": "OpenAI",
        "types": "ChatCompletion",
        "all": True,
    }


def test_a_deferred_package_runs_its_init_only_for_a_name_it_does_not_merely_reexport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = (
        "import os\n"
        "from .a import A\n"
        "from .a import TWICE\n"
        "from .b import TWICE\n"  # bound twice: which one wins is the __init__'s business
        "os.environ['LAZYPKG_INIT_RAN'] = '1'\n"
        "OWN = 'defined here'\n"
    )
    files = {"a.py": "A = 'from a'\nTWICE = 'from a'\n", "b.py": "TWICE = 'from b'\n", "__init__.py": init}
    write_package(tmp_path, "lazypkg", files, monkeypatch)
    monkeypatch.delenv("LAZYPKG_INIT_RAN", raising=False)
    try:
        openai_sdk._defer("lazypkg")
        lazypkg = sys.modules["lazypkg"]
        assert lazypkg.A == "from a" and "lazypkg.a" in sys.modules
        assert "LAZYPKG_INIT_RAN" not in os.environ  # a re-export: taken from its submodule alone
        assert lazypkg.TWICE == "from b" and os.environ["LAZYPKG_INIT_RAN"] == "1"
        assert lazypkg.OWN == "defined here"
        with pytest.raises(AttributeError):
            _ = lazypkg.MISSING
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "lazypkg"]:
            del sys.modules[name]
