"""What every command shares: config errors with exit status 2, logging set-up, running a server."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import click

from fusionkit_cli.config_loader import ConfigError, load_config
from server.config import PanelConfig

__all__ = [
    "BadInput",
    "is_loopback",
    "load_config_or_exit",
    "log_format_option",
    "refuse_open_bind",
    "run_server",
]


class BadInput(click.ClickException):
    """Bad input from the user (config, flags, files): printed without a traceback, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def refuse_open_bind(host: str, config: PanelConfig, insecure_no_auth: bool) -> None:
    """A router on a non-loopback address needs a key (server.api_key_env) or an explicit opt-out."""
    if not is_loopback(host) and not config.server.api_key_env and not insecure_no_auth:
        raise BadInput(f"refusing to bind {host} without auth: set server.api_key_env, or pass --insecure-no-auth")


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


def run_server(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app until SIGINT/SIGTERM (uvicorn handles both and shuts down gracefully)."""
    import uvicorn

    from fusionkit_cli.up.watchdog import start_watchdog

    start_watchdog()  # a no-op unless started by `fusionkit up`
    # A bounded graceful stop: an open stream must not hold SIGTERM up until the supervisor SIGKILLs.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise click.ClickException(f"could not start the server on {host}:{port} (is the port in use?)")
