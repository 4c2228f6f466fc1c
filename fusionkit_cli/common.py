"""What every command shares: config errors with exit status 2, logging set-up, running a server."""

from __future__ import annotations

import gc
import ipaddress
from pathlib import Path
from typing import Any

import click

from bridge.auth import MissingKeyError, key_from_env
from fusionkit_cli.config_loader import ConfigError, load_config
from server.config import PanelConfig, ServerConfig

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "BadInput",
    "bearer_key_or_exit",
    "is_loopback",
    "load_config_or_exit",
    "log_format_option",
    "refuse_open_bind",
    "run_server",
]


DEFAULT_HEADER_TIMEOUT_S = ServerConfig.model_fields["header_timeout_s"].default


class BadInput(click.ClickException):
    """Bad input from the user (config, flags, files): printed without a traceback, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def bearer_key_or_exit(variable: str | None, where: str) -> str | None:
    """The bearer key held by `variable` (None when none is named); named but unset or empty: exit 2.

    `where` says who named the variable (`panel.yaml: server.api_key_env`, `--auth-key-env`).
    """
    try:
        return key_from_env(variable)
    except MissingKeyError as exc:
        raise BadInput(
            f"{where}: {exc}; refusing to start without the auth it asks for (set the variable, or name none)"
        ) from None


def refuse_open_bind(host: str, key: str | None, insecure_no_auth: bool, how: str) -> None:
    """A server on a non-loopback address needs a bearer key, or an explicit opt-out; `how` says how to set one."""
    if not is_loopback(host) and key is None and not insecure_no_auth:
        raise BadInput(f"refusing to bind {host} without auth: {how}, or pass --insecure-no-auth")


def load_config_or_exit(path: str | Path) -> PanelConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


log_format_option = click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log line format."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(app: Any, host: str, port: int, *, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> None:
    """Serve an ASGI app until SIGINT/SIGTERM (uvicorn handles both and shuts down gracefully).

    A connection that has not sent a complete request head within `header_timeout_s` is closed
    (`fusionkit_cli.header_deadline`): slow clients cannot hold the server's descriptors.
    """
    import uvicorn

    from fusionkit_cli.header_deadline import header_deadline_protocol
    from fusionkit_cli.up.watchdog import start_watchdog

    start_watchdog()  # a no-op unless started by `fusionkit up`
    # A bounded graceful stop: an open stream must not hold SIGTERM up until the supervisor SIGKILLs.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
        http=header_deadline_protocol(header_timeout_s),
        ws="none",  # neither server speaks WebSocket: uvicorn then does not import a WebSocket library at start
    )
    server = uvicorn.Server(config)
    # The collector was off while the server started (fusionkit_cli/main.py). What the start built (modules,
    # the app, its models; ~90,000 objects) lives as long as the process, so it is frozen out of the
    # collector's sight: a full collection then scans only what serving made, instead of everything, every
    # time (docs/benchmarks.md, "Observability"). Not collected first: that would take ~50 ms of the start
    # to free well under 1 MB of the start's garbage.
    gc.freeze()
    gc.enable()
    server.run()
    if not server.started:
        raise click.ClickException(f"could not start the server on {host}:{port} (is the port in use?)")
