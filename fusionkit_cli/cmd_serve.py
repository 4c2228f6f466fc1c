"""`fusionkit serve --config FILE`: the fusion router."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fusionkit_cli.common import (
    BadInput,
    load_config_or_exit,
    log_format_option,
    refuse_open_bind,
    run_server,
)
from fusionkit_cli.logs import setup_logging

__all__ = ["serve"]


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Panel config (YAML).")
@click.option("--host", help="Bind address (default: server.host from the config).")
@click.option("--port", type=int, help="Port (default: server.port from the config).")
@click.option(
    "--bridges",
    "bridges_path",
    type=click.Path(dir_okay=False),
    help="JSON file mapping endpoint ids to bridge URLs (written by `fusionkit up`).",
)
@click.option("--insecure-no-auth", is_flag=True, help="Allow a non-loopback bind without server.api_key_env.")
@log_format_option
def serve(
    config_path: str,
    host: str | None,
    port: int | None,
    bridges_path: str | None,
    insecure_no_auth: bool,
    log_format: str,
) -> None:
    """Run the fusion router (OpenAI-compatible) for the panel in CONFIG."""
    config = load_config_or_exit(config_path)
    host = host or config.server.host
    refuse_open_bind(host, config, insecure_no_auth)
    bridges = _read_bridges(bridges_path, [e.id for e in config.endpoints]) if bridges_path else None
    setup_logging(log_format)
    from server.app import create_app

    run_server(create_app(config, bridges=bridges), host, port or config.server.port)


def _read_bridges(path: str, endpoint_ids: list[str]) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the bridges file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BadInput(f"{path}: must be a JSON object mapping endpoint ids to URLs")
    unknown = sorted(set(data) - set(endpoint_ids))
    if unknown:
        raise BadInput(f"{path}: unknown endpoint ids {unknown}; allowed: {', '.join(endpoint_ids)}")
    return {str(k): str(v) for k, v in data.items()}
