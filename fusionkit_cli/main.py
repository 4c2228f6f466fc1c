"""The `fusionkit` command group. Each command lives in its own module; this file only lists them."""

from __future__ import annotations

import click

from fusionkit_cli.cmd_bridge import serve_endpoint
from fusionkit_cli.cmd_fuse import fuse
from fusionkit_cli.cmd_runs import runs
from fusionkit_cli.cmd_serve import serve
from fusionkit_cli.cmd_up import down, status, up
from fusionkit_cli.cmd_validate import validate

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionkit")
def cli() -> None:
    """FusionKit: answer one chat request with several models and return one fused answer."""


cli.add_command(validate)
cli.add_command(serve_endpoint)
cli.add_command(serve)
cli.add_command(runs)
cli.add_command(fuse)
cli.add_command(up)
cli.add_command(status)
cli.add_command(down)

if __name__ == "__main__":
    cli()
