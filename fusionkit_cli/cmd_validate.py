"""`fusionkit validate CONFIG`: check a panel config and print a one-screen summary."""

from __future__ import annotations

import click

from bridge.auth import MissingKeyError, key_from_env
from fusionkit_cli.common import load_config_or_exit
from fusionkit_cli.keys import missing_provider_keys
from server.config import PanelConfig

__all__ = ["key_warnings", "summary", "validate"]


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
def validate(config_path: str) -> None:
    """Check CONFIG; print its summary, or its errors with exit status 2.

    Keys the environment lacks are warnings (on stderr, exit 0): the file is valid, but `serve`
    and `up` will refuse to start until they are set.
    """
    config = load_config_or_exit(config_path)
    click.echo(summary(config, config_path))
    for warning in key_warnings(config):
        click.echo(f"warning: {config_path}: {warning}", err=True)


def key_warnings(config: PanelConfig) -> list[str]:
    """What would stop this config from running in the current environment."""
    found = []
    try:
        key_from_env(config.server.api_key_env)
    except MissingKeyError as exc:
        found.append(f"server.api_key_env: {exc}; `fusionkit serve` and `fusionkit up` refuse to start without it")
    found += [
        f"{missing}; `fusionkit up` refuses to start it (unless --allow-missing-keys)"
        for missing in missing_provider_keys(config)
    ]
    return found


def summary(config: PanelConfig, path: str) -> str:
    lines = [f"{path}: valid", "", "endpoints:"]
    width = max(len(e.id) for e in config.endpoints)
    model_width = max(len(f"{e.provider}/{e.model}") for e in config.endpoints)
    for e in config.endpoints:
        port = str(e.port) if e.port else "auto"
        mock = "  (offline mock)" if e.is_mock else ""
        key = f"  key from ${e.api_key_env}" if e.api_key_env else ""
        lines.append(f"  {e.id:<{width}}  {e.provider + '/' + e.model:<{model_width}}  port {port:<5}{key}{mock}")
    lines += [
        "",
        f"default mode:  {config.default_mode}",
        f"default model: {config.default_endpoint}",
        f"judge:         {config.judge}",
        f"synthesizer:   {config.synthesizer}",
        f"panel:         {', '.join(config.panel_members)} (min_successful {config.panel.min_successful})",
        f"router:        http://{config.server.host}:{config.server.port}/v1",
    ]
    return "\n".join(lines)
