"""`fusionkit eval` and `fusionkit runs rejudge`: thin commands over the eval package (docs/eval.md).

    fusionkit eval TASKS.jsonl --config panel.yaml [--config other.yaml] [--url URL] [--modes panel,self]
                   [--repeat N] [--concurrency N] [--max-cost USD] [--out DIR] [--grader ENDPOINT]
    fusionkit eval --replay DIR [--judge ID] [--synthesizer ID] [--out DIR2]
    fusionkit runs rejudge RUN_ID [--judge ID] [--synthesizer ID] (--config FILE [--store PATH] | --url URL)

Bad input (task file, configs, flags) is reported with the file, line and key, exit status 2; a
router that cannot be reached exits 1. The work is imported when a command runs, not before.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import click

from fusionkit_cli.common import BadInput, load_config_or_exit
from server.protocol import MODES

if TYPE_CHECKING:
    from fusionkit_cli.eval.answers import Answer
    from fusionkit_cli.eval.routers import RouterSource
    from fusionkit_cli.eval.runner import EvalOptions
    from fusionkit_cli.eval.summary import Summary

__all__ = ["eval_command", "rejudge_command"]

def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise BadInput(f"--modes: found {text!r}; allowed: a comma-separated list of {', '.join(MODES)}")
    return list(dict.fromkeys(modes))


def _sources(configs: tuple[str, ...], urls: tuple[str, ...], out: Path) -> list[RouterSource]:
    from fusionkit_cli.eval.routers import RouterSource

    sources, taken = [], set()

    def unique(name: str) -> str:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate)
        return candidate

    for path in configs:
        load_config_or_exit(path)  # bad configs fail here, before anything starts
        name = unique(Path(path).stem)
        sources.append(RouterSource(name, config_path=path, store=str(out / "runs" / f"{name}.sqlite3")))
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadInput(f"--url: found {url!r}; allowed: a router's base URL such as http://127.0.0.1:8080")
        sources.append(RouterSource(unique(parsed.netloc), url=url))
    return sources


def _print_summary(summary: Summary, out: Path) -> None:
    width = max((len(s.arm.label) for s in summary.arms), default=10)
    click.echo(f"{'ARM':<{width}}  {'ACCURACY':>8}  {'95 % INTERVAL':>15}  {'COST/TASK':>11}  {'P50':>8}")
    for s in summary.arms:
        interval = f"{100 * s.interval.low:.0f}-{100 * s.interval.high:.0f} %"
        p50 = "-" if s.latency_p50 is None else f"{s.latency_p50:.0f} ms"
        click.echo(
            f"{s.arm.label:<{width}}  {100 * s.accuracy:>7.1f}%  {interval:>15}  ${s.mean_cost:>10.6f}  {p50:>8}"
        )
    click.echo(f"report: {out / 'report.md'}")


@click.command("eval")
@click.argument("tasks_path", metavar="TASKS.jsonl", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A panel config, run in-process (repeatable).",
)
@click.option("--url", "urls", multiple=True, help="A running router's base URL (repeatable).")
@click.option("--modes", default="panel", show_default=True, help="Fused modes to measure: single,self,panel,router.")
@click.option("--repeat", type=click.IntRange(1, 1000), default=1, show_default=True, help="Ask each task N times.")
@click.option("--concurrency", type=click.IntRange(1, 512), default=4, show_default=True, help="Answers in flight.")
@click.option(
    "--max-cost", type=click.FloatRange(min=0, min_open=True), help="Stop asking once this many USD are spent."
)
@click.option("--out", type=click.Path(file_okay=False), help="Report directory (default .fusionkit/eval/<time>).")
@click.option("--grader", help="Endpoint id that grades judge tasks (default: the first config's judge).")
@click.option(
    "--members", help="Endpoint ids to measure alone (default: each config's panel; with --url every endpoint)."
)
@click.option("--replay", type=click.Path(file_okay=False), help="Rejudge an earlier eval's recorded candidates.")
@click.option("--judge", help="With --replay: the judge endpoint (default: each config's).")
@click.option("--synthesizer", help="With --replay: the synthesizer endpoint (default: each config's).")
def eval_command(
    tasks_path: str | None,
    configs: tuple[str, ...],
    urls: tuple[str, ...],
    modes: str,
    repeat: int,
    concurrency: int,
    max_cost: float | None,
    out: str | None,
    grader: str | None,
    members: str | None,
    replay: str | None,
    judge: str | None,
    synthesizer: str | None,
) -> None:
    """Measure whether fusion pays: quality, cost and latency of each config against its members."""
    from fusionkit_cli.eval.routers import RouterUnreachable
    from fusionkit_cli.eval.tasks import TaskFileError

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        if replay is not None:
            if tasks_path or configs or urls:
                raise BadInput("--replay DIR takes no TASKS file, --config or --url: they are those of DIR's eval")
            summary, out_dir = _replay(Path(replay), out, judge, synthesizer, concurrency, grader, stamp)
        else:
            if judge or synthesizer:
                raise BadInput("--judge and --synthesizer go with --replay DIR (or use `fusionkit runs rejudge`)")
            if not tasks_path:
                raise BadInput("give the task file: fusionkit eval TASKS.jsonl --config FILE (or --url URL)")
            if not configs and not urls:
                raise BadInput("give at least one --config FILE (run in-process) or --url URL (a running router)")
            out_dir = Path(out) if out else Path(".fusionkit") / "eval" / stamp
            options = _options(tasks_path, configs, urls, _modes(modes), repeat, concurrency, max_cost, out_dir)
            options.grader = grader
            options.members = [m.strip() for m in members.split(",") if m.strip()] if members else None
            summary = _evaluate(options)
    except TaskFileError as exc:
        raise BadInput(str(exc)) from None
    except RouterUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    _print_summary(summary, out_dir)
    if summary.stopped and summary.stopped.startswith("interrupted"):
        # The shell's convention for a command ended by a signal: 128 + its number.
        sys.exit(143 if summary.stopped.endswith("SIGTERM") else 130)


def _options(
    tasks_path: str,
    configs: tuple[str, ...],
    urls: tuple[str, ...],
    modes: list[str],
    repeat: int,
    concurrency: int,
    max_cost: float | None,
    out: Path,
) -> EvalOptions:
    from fusionkit_cli.eval.runner import EvalOptions
    from fusionkit_cli.eval.tasks import load_tasks

    load_tasks(tasks_path)  # a bad task file fails before any router starts
    sources = _sources(configs, urls, out)
    return EvalOptions(tasks_path, sources, out, modes, repeat, concurrency, max_cost)


def _evaluate(options: EvalOptions) -> Summary:
    from fusionkit_cli.eval.runner import evaluate

    return asyncio.run(evaluate(options))


def _replay(
    source: Path,
    out: str | None,
    judge: str | None,
    synthesizer: str | None,
    concurrency: int,
    grader: str | None,
    stamp: str,
) -> tuple[Summary, Path]:
    from fusionkit_cli.eval.replay import ReplayOptions, replay

    out_dir = Path(out) if out else source / f"replay-{stamp}"
    options = ReplayOptions(source, out_dir, judge, synthesizer, concurrency, grader)
    return asyncio.run(replay(options)), out_dir


@click.command("rejudge")
@click.argument("run_id")
@click.option("--judge", help="The judge endpoint (default: the config's judge).")
@click.option("--synthesizer", help="The synthesizer endpoint (default: the config's synthesizer).")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Run the router in-process from this config."
)
@click.option(
    "--store",
    help="With --config: the run store, a path or postgresql:// URL (default: FUSIONKIT_RUN_STORE, else the config's).",
)
@click.option("--url", help="Ask a running router instead (e.g. http://127.0.0.1:8080).")
@click.option("--json", "as_json", is_flag=True, help="Print the new run's answer and metadata as JSON.")
def rejudge_command(
    run_id: str,
    judge: str | None,
    synthesizer: str | None,
    config_path: str | None,
    store: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Judge and synthesize a recorded run's candidates again, without asking the panel."""
    from fusionkit_cli.eval.routers import RouterClient, RouterSource, RouterUnreachable, open_routers
    from fusionkit_cli.run_store import choose_store, require_existing
    from server.store import StoreError

    if bool(config_path) == bool(url):
        raise BadInput("give exactly one of --config FILE (in-process, with its run store) or --url URL")
    chosen = None
    if config_path:
        chosen = choose_store(config_path, store)  # as `runs list` chooses: --store, FUSIONKIT_RUN_STORE, the config
        require_existing(chosen)
        store = chosen.location
    source = RouterSource("rejudge", config_path=config_path, url=url, store=store)

    async def ask() -> Answer:
        async with RouterClient() as client, open_routers([source], client) as routers:
            return await client.rejudge(routers[0], run_id, judge=judge, synthesizer=synthesizer)

    try:
        answer = asyncio.run(ask())
    except RouterUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:  # the in-process router could not open the store: a schema too new, say
        if chosen is None:
            raise
        raise chosen.refused(exc) from None
    if answer.error is not None:
        if answer.status in (400, 404, 409):
            raise BadInput(answer.error)
        raise click.ClickException(answer.error)
    if as_json:
        click.echo(json.dumps(answer.__dict__, default=lambda o: o.__dict__, indent=2))
        return
    click.echo(f"run {answer.run_id}: {run_id} judged again ({answer.decision}), cost ${answer.cost:.6f}", err=True)
    click.echo(answer.shown(limit=100_000))
