"""`fusionkit serve --config FILE`: the fusion router."""

from __future__ import annotations

import click

from bridge.logs import setup_logging
from fusionkit_cli.common import (
    BadInput,
    bearer_key_or_exit,
    load_config_or_exit,
    log_format_option,
    refuse_open_bind,
    run_server,
)

__all__ = ["serve"]


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Panel config (YAML).")
@click.option("--host", help="Bind address (default: server.host from the config).")
@click.option("--port", type=int, help="Port (default: server.port from the config).")
@click.option(
    "--bridges",
    "bridges_path",
    type=click.Path(dir_okay=False),
    help="JSON file: endpoint id -> bridge URL (null while starting); written by `fusionkit up`, re-read on change.",
)
@click.option(
    "--bridge-key-env",
    metavar="NAME",
    help="With --bridges: the variable holding the bearer token the bridges require (set by `fusionkit up`).",
)
@click.option("--insecure-no-auth", is_flag=True, help="Allow a non-loopback bind without server.api_key_env.")
@log_format_option
def serve(
    config_path: str,
    host: str | None,
    port: int | None,
    bridges_path: str | None,
    bridge_key_env: str | None,
    insecure_no_auth: bool,
    log_format: str,
) -> None:
    """Run the fusion router (OpenAI-compatible) for the panel in CONFIG."""
    config = load_config_or_exit(config_path)
    host = host or config.server.host
    key = bearer_key_or_exit(config.server.api_key_env, f"{config_path}: server.api_key_env")
    refuse_open_bind(host, key, insecure_no_auth, "set server.api_key_env")
    bridge_key = bearer_key_or_exit(bridge_key_env, "--bridge-key-env")
    from server.bridges_file import BridgesFile, BridgesFileError

    try:
        bridges = BridgesFile(bridges_path, [e.id for e in config.endpoints]) if bridges_path else None
    except BridgesFileError as exc:
        raise BadInput(str(exc)) from None
    from fusionkit_cli.run_store import choose_store

    chosen = choose_store(config_path, None)  # a malformed FUSIONKIT_RUN_STORE fails the start, as a bad key would
    setup_logging(log_format)
    from server.app import create_app
    from server.clients import build_clients
    from server.store import StoreError

    clients = build_clients(config, bridges, bridge_key=bridge_key)
    try:
        app = create_app(config, clients=clients, store_path=chosen.location)
    except StoreError as exc:  # only opening the store raises one: a schema too new, a path where no file can be
        raise chosen.refused(exc) from None
    run_server(app, host, port or config.server.port, header_timeout_s=config.server.header_timeout_s)

