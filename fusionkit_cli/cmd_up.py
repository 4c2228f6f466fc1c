"""`fusionkit up`, `fusionkit status` and `fusionkit down`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click
import httpx2

from fusionkit_cli.common import load_config_or_exit
from fusionkit_cli.up.child import stop_processes
from fusionkit_cli.up.state import is_ours, read_state, remove_state
from fusionkit_cli.up.supervisor import Supervisor, UpOptions

__all__ = ["down", "status", "up"]


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--port", type=int, help="Router port (default: server.port).")
@click.option("--host", default=None, help="Router bind address (default: server.host).")
@click.option("--log-dir", type=click.Path(file_okay=False), default=".fusionkit/logs", show_default=True)
@click.option("--no-color", is_flag=True, help="No colours in the prefixed output.")
@click.option(
    "--ready-timeout", type=float, default=30.0, show_default=True, help="Seconds each child has to become healthy."
)
def up(
    config_path: str, port: int | None, host: str | None, log_dir: str, no_color: bool, ready_timeout: float
) -> None:
    """Start one bridge per endpoint of CONFIG and the fusion router; supervise until Ctrl-C."""
    config = load_config_or_exit(config_path)
    running = read_state()
    if running is not None and is_ours(running.supervisor):
        raise click.ClickException(
            f"fusionkit up is already running here (pid {running.supervisor.pid}); "
            "use `fusionkit status` or `fusionkit down`"
        )
    options = UpOptions(
        host=host or config.server.host,
        port=port,
        log_dir=Path(log_dir),
        colour=False if no_color else None,
        ready_timeout_s=ready_timeout,
    )
    sys.exit(Supervisor(config, config_path, options).run())


@click.command()
def status() -> None:
    """Each process of the running `fusionkit up`: pid, port, live health, restarts, uptime."""
    state = read_state()
    if state is None:
        click.echo("fusionkit up is not running here (no .fusionkit/up.json)")
        sys.exit(1)
    supervisor = is_ours(state.supervisor)
    click.echo(f"config: {state.config}")
    click.echo(f"router: {state.base_url}/v1")
    click.echo(f"supervisor: pid {state.supervisor.pid} {'running' if supervisor else 'NOT RUNNING (stale state)'}")
    click.echo(f"\n{'NAME':<14} {'KIND':<7} {'PID':>7} {'PORT':>6}  {'HEALTH':<8} {'RESTARTS':>8}  UPTIME")
    for entry in state.children:
        proc = is_ours(entry)
        health = "down"
        if proc is not None and entry.url:
            try:
                health = "healthy" if httpx2.get(entry.url + "/health", timeout=1).status_code == 200 else "unhealthy"
            except httpx2.HTTPError:
                health = "starting" if proc.is_running() else "down"
        uptime = f"{time.time() - entry.create_time:.0f}s" if proc is not None else "-"
        click.echo(
            f"{entry.name:<14} {entry.kind:<7} {entry.pid:>7} {entry.port or '-':>6}  {health:<8} "
            f"{entry.restarts:>8}  {uptime}"
        )
    if supervisor is None:
        sys.exit(1)


@click.command()
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds to wait for a graceful stop.")
def down(timeout: float) -> None:
    """Stop the `fusionkit up` running from this directory (or what it left behind)."""
    state = read_state()
    if state is None:
        click.echo("fusionkit up is not running here")
        return
    supervisor = is_ours(state.supervisor)
    if supervisor is not None:
        os.kill(supervisor.pid, signal.SIGTERM)
        # Poll rather than wait(): the supervisor is not our child, and a zombie counts as stopped.
        deadline = time.monotonic() + timeout
        while is_ours(state.supervisor) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_ours(state.supervisor) is None:
            click.echo(f"stopped fusionkit up (pid {state.supervisor.pid})")
        else:
            click.echo(f"supervisor {state.supervisor.pid} did not stop within {timeout:.0f}s; killing its children")
    leftovers = [entry.pid for entry in state.children if is_ours(entry) is not None]
    if leftovers:
        stop_processes(leftovers)
        click.echo(f"stopped {len(leftovers)} leftover processes")
    if supervisor is not None and is_ours(state.supervisor) is not None:
        stop_processes([state.supervisor.pid])
    remove_state()
