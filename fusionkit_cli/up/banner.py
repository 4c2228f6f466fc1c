"""The ready banner `fusionkit up` prints once the router answers: where to point a client, and how.

print(ready_banner("http://127.0.0.1:8080", config, Path(".fusionkit/logs")))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from server.config import PanelConfig

__all__ = ["READY_LINE", "ready_banner"]

READY_LINE = "FusionKit is ready at"
# server.protocol.FUSION_MODELS, panel first; not imported, as that module costs the supervisor ~0.1 s of start-up.
FUSION_MODELS = ("fusionkit/panel", "fusionkit/router", "fusionkit/self", "fusionkit/single")


def ready_banner(base_url: str, config: PanelConfig, log_dir: Path, bridges: Mapping[str, str] | None = None) -> str:
    """The banner; `bridges` maps each endpoint id to its bridge's URL (where its /metrics is)."""
    models = [*FUSION_MODELS, *(e.id for e in config.endpoints)]
    mocks = [e.id for e in config.endpoints if e.is_mock]
    key = f"os.environ[{config.server.api_key_env!r}]" if config.server.api_key_env else '"unused"'
    auth = f' -H "Authorization: Bearer ${config.server.api_key_env}"' if config.server.api_key_env else ""
    lines = ["", f"{READY_LINE} {base_url}/v1", f"  models: {', '.join(models)}"]
    if mocks:
        lines.append(f"  note: {', '.join(mocks)} are OFFLINE MOCK models (provider 'mock')")
    lines += [
        "",
        "  curl:",
        f"    curl -s {base_url}/v1/chat/completions -H 'Content-Type: application/json'{auth} \\",
        '      -d \'{"model": "fusionkit/panel", "messages": [{"role": "user", "content": "Hello"}]}\'',
        "",
        "  python:",
        *(["    import os"] if config.server.api_key_env else []),
        "    from openai import OpenAI",
        f'    client = OpenAI(base_url="{base_url}/v1", api_key={key})',
        '    reply = client.chat.completions.create(model="fusionkit/panel", '
        'messages=[{"role": "user", "content": "Hello"}])',
        "    print(reply.choices[0].message.content)",
        "",
        f"  runs: {base_url}/ui" + ("  (the page asks for the key once)" if config.server.api_key_env else ""),
        *_metrics_lines(base_url, config, bridges or {}),
        f"  logs: {log_dir}/<name>.log    status: fusionkit status    stop: Ctrl-C or fusionkit down",
        "",
    ]
    return "\n".join(lines)


def _metrics_lines(base_url: str, config: PanelConfig, bridges: Mapping[str, str]) -> list[str]:
    """Where Prometheus scrapes each process, and with which key."""
    server = config.server
    if not server.metrics:
        return ["  metrics: off (server.metrics)", ""]
    guarded = server.metrics_auth and server.api_key_env
    lines = ["  metrics (Prometheus)" + (f", with Authorization: Bearer ${server.api_key_env}:" if guarded else ":")]
    width = max(len(name) for name in ["router", *bridges])
    lines.append(f"    {'router':<{width}}  {base_url}/metrics")
    lines += [f"    {name:<{width}}  {url}/metrics" for name, url in bridges.items()]
    return [*lines, ""]
