"""`fusionkit up`, `fusionkit status` and `fusionkit down`: thin commands over `fusionkit_cli.up`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click

from fusionkit_cli.common import BadInput, bearer_key_or_exit, load_config_or_exit, refuse_open_bind
from fusionkit_cli.keys import missing_provider_keys
from fusionkit_cli.up.env import DOWN_SIGNAL, probe_health
from fusionkit_cli.up.policy import RestartPolicy
from fusionkit_cli.up.printer import use_colour
from fusionkit_cli.up.state import UpState, is_ours, read_state, remove_state, stop_leftovers
from fusionkit_cli.up.supervisor import Supervisor, UpOptions

__all__ = ["down", "status", "up"]


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--port", type=click.IntRange(1, 65535), help="Router port (default: server.port).")
@click.option("--host", default=None, help="Router bind address (default: server.host).")
@click.option("--log-dir", type=click.Path(file_okay=False), default=".fusionkit/logs", show_default=True)
@click.option("--no-color", is_flag=True, help="No colours in the prefixed output (NO_COLOR works too).")
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds each process has to answer /health after it starts.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=RestartPolicy.max_restarts,
    show_default=True,
    help=f"Restarts of one process allowed in any {RestartPolicy.window_s:g}s before up gives up on it.",
)
@click.option("--insecure-no-auth", is_flag=True, help="Let the router bind a non-loopback host without a key.")
@click.option(
    "--allow-missing-keys",
    is_flag=True,
    help="Start endpoints whose provider key variable is unset or empty (their calls will fail).",
)
def up(
    config_path: str,
    port: int | None,
    host: str | None,
    log_dir: str,
    no_color: bool,
    ready_timeout: float,
    max_restarts: int,
    insecure_no_auth: bool,
    allow_missing_keys: bool,
) -> None:
    """Start one bridge per endpoint of CONFIG and the fusion router; supervise until Ctrl-C."""
    config = load_config_or_exit(config_path)
    host = host or config.server.host
    # The router would refuse too, but only after every bridge had started: say it before anything does.
    key = bearer_key_or_exit(config.server.api_key_env, f"{config_path}: server.api_key_env")
    refuse_open_bind(host, key, insecure_no_auth, "set server.api_key_env")
    missing = [] if allow_missing_keys else missing_provider_keys(config)
    if missing:
        problems = "".join(f"\n  {config_path}: {m}" for m in missing)
        raise BadInput(f"refusing to start endpoints without their API keys (or pass --allow-missing-keys):{problems}")
    logs = Path(log_dir)
    try:  # made before anything starts: a child's log file is opened as it starts
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--log-dir: {log_dir}: cannot be made a directory ({exc.strerror or exc})") from None
    _clear_previous(read_state())
    options = UpOptions(
        host=host,
        port=port,
        log_dir=logs,
        colour=use_colour(sys.stdout, no_color),
        ready_timeout_s=ready_timeout,
        insecure_no_auth=insecure_no_auth,
        restart_policy=lambda: RestartPolicy(max_restarts=max_restarts),
    )
    sys.exit(Supervisor(config, config_path, options).run())


def _clear_previous(state: UpState | None) -> None:
    """Refuse to start beside a running `up`; stop what a killed one left behind."""
    if state is None:
        return
    if is_ours(state.supervisor) is not None:
        raise click.ClickException(
            f"fusionkit up is already running here (pid {state.supervisor.pid}); "
            "see `fusionkit status`, stop it with `fusionkit down`"
        )
    stopped = stop_leftovers(state)
    if stopped:
        click.echo(f"stopped {', '.join(stopped)}, left running by a previous fusionkit up")
    remove_state()


@click.command()
def status() -> None:
    """Each process of the `fusionkit up` running here: pid, port, live health, restarts, uptime."""
    state = read_state()
    if state is None:
        click.echo("fusionkit up is not running here (no .fusionkit/up.json)")
        sys.exit(1)
    supervisor = is_ours(state.supervisor)
    now = time.time()
    click.echo(f"config:     {state.config}")
    click.echo(f"router:     {state.base_url}/v1")
    click.echo(f"logs:       {state.log_dir}")
    if supervisor is None:
        click.echo(f"supervisor: pid {state.supervisor.pid} NOT RUNNING (stale state; `fusionkit down` cleans up)")
    else:
        click.echo(f"supervisor: pid {state.supervisor.pid}, up {_duration(now - state.started_at)}")
    click.echo(f"\n{'NAME':<14} {'KIND':<7} {'PID':>7} {'PORT':>6}  {'HEALTH':<9} {'RESTARTS':>8}  UPTIME")
    for entry in state.children:
        alive = is_ours(entry) is not None
        # Health from a live probe, never from the pid: a live process may not be serving.
        health = ("healthy" if probe_health(entry.url, 1.0) else "unhealthy") if alive and entry.url else "down"
        if entry.given_up:
            health = "gave-up"  # past its restart limit: `up` serves on without it
        uptime = _duration(now - entry.create_time) if alive else "-"
        click.echo(
            f"{entry.name:<14} {entry.kind:<7} {entry.pid:>7} {entry.port or '-':>6}  {health:<9} "
            f"{entry.restarts:>8}  {uptime}"
        )
    if supervisor is None:
        sys.exit(1)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


@click.command()
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds to wait for a graceful stop.")
def down(timeout: float) -> None:
    """Stop the `fusionkit up` running from this directory (or what it left behind); it exits 0."""
    state = read_state()
    if state is None:
        click.echo("fusionkit up is not running here")
        return
    if is_ours(state.supervisor) is not None:
        # Not SIGTERM: `up` exits 143 after a SIGTERM from anyone, and 0 after a stop asked for with `down`.
        os.kill(state.supervisor.pid, DOWN_SIGNAL)
        # Poll: the supervisor is not our child, and a zombie counts as stopped.
        deadline = time.monotonic() + timeout
        while is_ours(state.supervisor) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_ours(state.supervisor) is None:
            click.echo(f"stopped fusionkit up (pid {state.supervisor.pid})")
        else:
            click.echo(f"fusionkit up (pid {state.supervisor.pid}) did not stop within {timeout:g}s; killing it")
            os.kill(state.supervisor.pid, signal.SIGKILL)
    stopped = stop_leftovers(state)
    if stopped:
        click.echo(f"stopped leftover processes: {', '.join(stopped)}")
    remove_state()
