"""`fusionkit runs list | show | prune`: past runs for people, from the store or a running router."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click
import httpx2

from bridge.endpoint import EndpointConfig
from fusionkit_cli.common import BadInput, load_config_or_exit
from fusionkit_cli.eval.command import rejudge_command
from fusionkit_cli.run_store import DEFAULT_STORE, ChosenStore, choose_store, open_chosen
from server.run_views import read_run, run_summary
from server.store import is_valid_run_id
from server.store.upkeep import prune_in_batches

__all__ = ["runs"]

def _get(url: str, path: str, **params: Any) -> Any:
    headers = {}
    if key := os.environ.get("FUSIONKIT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = httpx2.get(url.rstrip("/") + path, params=params, headers=headers, timeout=30)
    except httpx2.HTTPError as exc:
        raise click.ClickException(f"cannot reach the router at {url}: {exc}") from None
    if response.status_code == 404:
        raise BadInput(response.json().get("error", {}).get("message", "not found"))
    if response.status_code != 200:
        raise click.ClickException(f"router answered {response.status_code}: {response.text[:300]}")
    return response.json()


source_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Use this config's run store."),
    click.option("--store", help=f"Run store path or postgresql:// URL (default {DEFAULT_STORE})."),
    click.option("--url", help="Ask a running router instead (e.g. http://127.0.0.1:8080)."),
]


def with_source(func: Any) -> Any:
    for option in reversed(source_options):
        func = option(func)
    return func


@click.group()
def runs() -> None:
    """Inspect past runs: what each model said and why the answer is what it is."""


@runs.command("list")
@with_source
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def list_runs(config_path: str | None, store: str | None, url: str | None, limit: int) -> None:
    """The most recent runs: id, mode, state, models, latency, cost."""
    if url:
        rows = _get(url, "/v1/fusion/runs", limit=limit)["data"]
    else:
        rows = asyncio.run(_list_local(choose_store(config_path, store), limit))
    if not rows:
        click.echo("no runs yet")
        return
    click.echo(f"{'RUN ID':<29} {'CREATED':<20} {'MODE':<7} {'STATE':<15} {'LATENCY':>9} {'COST':>10}  MODELS")
    for row in rows:
        extra = row.get("fusionkit") or {}
        latency = (extra.get("latency_ms") or {}).get("total")
        cost = (extra.get("cost_estimate") or {}).get("amount")
        click.echo(
            f"{row['run_id']:<29} {str(extra.get('created_at'))[:19]:<20} {extra.get('mode') or '-':<7} "
            f"{row['state']:<15} {f'{latency:.0f} ms' if latency is not None else '-':>9} "
            f"{f'{cost:.6f}' if cost is not None else '-':>10}  {', '.join(extra.get('models') or [])}"
        )


async def _list_local(chosen: ChosenStore, limit: int) -> list[dict[str, Any]]:
    store = open_chosen(chosen)
    try:
        records = await store.list_runs(limit=limit)
        cursors = await store.event_cursors([r.run_id for r in records])
        return [run_summary(r, cursors.get(r.run_id, 0)).wire() for r in records]
    finally:
        await store.close()


@runs.command("show")
@click.argument("run_id")
@with_source
@click.option("--json", "as_json", is_flag=True, help="Print the whole inspection as JSON.")
def show_run(run_id: str, config_path: str | None, store: str | None, url: str | None, as_json: bool) -> None:
    """One run, readable: each candidate, the judge's analysis, the decision, the answer, timings."""
    if not is_valid_run_id(run_id):
        raise BadInput(f"'{run_id[:80]}' is not a run id (they look like run_0123...)")
    if url:
        data = _get(url, f"/v1/fusion/runs/{run_id}/inspect")
    else:
        endpoints = {e.id: e for e in load_config_or_exit(config_path).endpoints} if config_path else {}
        data = asyncio.run(_inspect_local(choose_store(config_path, store), run_id, endpoints))
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(render_inspection(data))


async def _inspect_local(chosen: ChosenStore, run_id: str, endpoints: dict[str, EndpointConfig]) -> dict[str, Any]:
    store = open_chosen(chosen)
    try:
        record = await store.get_run(run_id)
        if record is None:
            raise BadInput(f"no run '{run_id}' in {chosen.shown}")
        return (await (await read_run(store, record, endpoints)).inspection(store)).wire()
    finally:
        await store.close()


def render_inspection(data: dict[str, Any]) -> str:
    """An inspection (`GET /v1/fusion/runs/{id}/inspect`) for people; the detail is in its `fusionkit` object."""
    extra = data.get("fusionkit") or {}
    door = f"  door={extra['door']}" if extra.get("door") else ""
    out = [f"run {data['run_id']}  mode={extra.get('mode')} route={extra.get('route')}  state={data['state']}{door}"]
    if data.get("terminal_reason") and data["state"] != "completed":
        out.append(f"  reason: {data['terminal_reason']}")
    error = data.get("terminal_error")
    if error and error.get("message"):
        out.append(f"  error: {error['error_code']}: {error['message']}")
    out.append("")
    out.append("CANDIDATES")
    for c in extra.get("candidates") or []:
        rank = f"rank {c['rank']}" if c.get("rank") else "unranked"
        if c["status"] == "dropped":
            out.append(f"  [{c['candidate_id']}] {c['endpoint_id']}: DROPPED: {c.get('reason')}")
            continue
        out.append(f"  [{c['candidate_id']}] {c['endpoint_id']} ({c.get('model')}), {rank}, {c.get('latency_ms')} ms")
        for call in c.get("tool_calls") or []:
            out.append(f"      proposes {call['function']['name']}({call['function']['arguments']})")
        out.extend(f"      {line}" for line in (c.get("text") or "").splitlines())
    judge = extra.get("judge")
    if judge:
        out += ["", f"JUDGE ({judge.get('judge_model_id')})"]
        analysis = judge.get("analysis")
        if analysis:
            for key in ("consensus", "contradictions", "unique_insights", "coverage_gaps", "likely_errors"):
                for item in analysis.get(key) or []:
                    out.append(f"  {key.replace('_', ' ')}: {item}")
            out.append(f"  ranking: {', '.join(analysis.get('ranking') or [])}")
            out.append(f"  rationale: {analysis.get('rationale')}")
        else:
            out.append(f"  analysis could not be parsed ({judge.get('parse_error')}); raw reply:")
            out.extend(f"    {line}" for line in (judge.get("raw") or "").splitlines()[:20])
    decision = extra.get("decision")
    if decision:
        chosen = f", selected {decision['selected_candidate_id']}" if decision.get("selected_candidate_id") else ""
        out += ["", f"DECISION  {decision['type']} ({decision['reason']}{chosen})"]
    final = extra.get("final_message") or {}
    if final:
        out += ["", "FINAL ANSWER"]
        out.extend(f"  {line}" for line in (final.get("content") or "").splitlines())
        for call in final.get("tool_calls") or []:
            out.append(f"  tool call {call['function']['name']}({call['function']['arguments']})")
    timings = extra.get("latency_ms") or {}
    if timings:
        out += ["", "TIMINGS  " + "  ".join(f"{k}={v:.0f}ms" for k, v in timings.items())]
    return "\n".join(out)


@runs.command("prune")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Use this config's store and retention.")
@click.option("--store", help=f"Run store path or postgresql:// URL (default {DEFAULT_STORE}).")
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Remove finished runs older than this (default: server.retention.max_age_days).",
)
def prune_runs(config_path: str | None, store: str | None, older_than_days: float | None) -> None:
    """Remove finished runs past the retention, with their events and unreferenced artifacts.

    The router prunes by server.retention in the background; this does the same once, by hand, in
    transactions of 500 runs (routers on the same store go on writing in between).
    """
    days, keep = older_than_days, None
    if days is None and config_path:
        retention = load_config_or_exit(config_path).server.retention
        days, keep = retention.max_age_days, retention.max_runs
    if days is None and keep is None:
        raise BadInput("give --older-than-days N, or --config FILE with server.retention set")
    removed = asyncio.run(_prune(choose_store(config_path, store), days, keep))
    limits = [f"older than {days:g} days"] if days is not None else []
    limits += [f"beyond the newest {keep}"] if keep is not None else []
    click.echo(f"removed {removed} runs {' or '.join(limits)}")


async def _prune(chosen: ChosenStore, days: float | None, keep: int | None) -> int:
    store = open_chosen(chosen)
    try:
        # In batches, as the router prunes: one long transaction would hold SQLite's write lock past the
        # routers' busy_timeout, and they would refuse runs (503) until it ended.
        return await prune_in_batches(store, days, keep)
    finally:
        await store.close()


runs.add_command(rejudge_command)  # `fusionkit runs rejudge`, from the eval package (docs/eval.md)
