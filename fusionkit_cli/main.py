"""The `fusionkit` command group. Each command lives in its own module; this file only lists them.

Commands are imported when they run, not when the group is built: a bridge process started by
`fusionkit up` loads the bridge's modules only, which keeps its start-up and memory small.

The garbage collector is off while a command starts: start-up allocates a great many objects that
live as long as the process (modules, classes, pydantic schemas), and collecting among them finds
nothing to free, yet costs about a tenth of a server's start. It is on again before a command
runs, and for the servers once their app is built, before they serve (`run_server`).
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click

__all__ = ["cli"]

# name -> "module:attribute", in the order `fusionkit --help` lists them.
COMMANDS = {
    "up": "fusionkit_cli.cmd_up:up",
    "status": "fusionkit_cli.cmd_up:status",
    "down": "fusionkit_cli.cmd_up:down",
    "serve": "fusionkit_cli.cmd_serve:serve",
    "serve-endpoint": "fusionkit_cli.cmd_bridge:serve_endpoint",
    "fuse": "fusionkit_cli.cmd_fuse:fuse",
    "runs": "fusionkit_cli.cmd_runs:runs",
    "validate": "fusionkit_cli.cmd_validate:validate",
    "eval": "fusionkit_cli.eval.command:eval_command",
    "deploy": "fusionkit_cli.cmd_deploy:deploy",
    "prompts": "fusionkit_cli.cmd_prompts:prompts",
}


# Commands whose start goes on after their module is imported (building the app): `run_server`
# turns the collector on for them.
SERVERS = {"serve", "serve-endpoint"}


class LazyGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return super().main(*args, **kwargs)
        finally:
            (gc.enable if enabled else gc.disable)()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        if cmd_name not in SERVERS:
            gc.enable()
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionkit")
def cli() -> None:
    """FusionKit: answer one chat request with several models and return one fused answer."""


if __name__ == "__main__":
    cli()
