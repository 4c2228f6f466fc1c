"""`fusionkit eval --replay DIR`: judge and synthesize an earlier eval's recorded candidates again.

    summary = await replay(ReplayOptions(source=Path("out"), judge="careful", synthesizer="fast", out=Path("out/r1")))

Each fused run of the earlier eval is rejudged by its router (`POST /v1/fusion/runs/{id}/rejudge`):
the router reads the run's candidates from its store and calls only the judge and the synthesizer,
never the panel. The new answers are scored against the same tasks, so the report compares the
original and the replayed judge/synthesizer on the same candidates, paired (McNemar), beside the
members' original results (best single, oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionkit_cli.eval.progress import Progress
from fusionkit_cli.eval.report import ReportMeta, load_report, write_report
from fusionkit_cli.eval.results import Arm, Outcome
from fusionkit_cli.eval.routers import Router, RouterClient, RouterSource, open_routers
from fusionkit_cli.eval.runner import Job, grader_for, now_text, record_of, run_jobs
from fusionkit_cli.eval.sandbox import Sandbox
from fusionkit_cli.eval.scorers import Scoring
from fusionkit_cli.eval.summary import Summary
from fusionkit_cli.eval.tasks import load_tasks

__all__ = ["ReplayOptions", "replay"]

# Modes whose runs have candidates to judge again (a single-mode run has one, already the answer).
REJUDGED_MODES = ("panel", "self", "router")


@dataclass
class ReplayOptions:
    source: Path
    out: Path
    judge: str | None = None
    synthesizer: str | None = None
    concurrency: int = 4
    grader: str | None = None


def _sources(report: dict[str, Any], source: Path) -> list[RouterSource]:
    sources = []
    for r in report["routers"]:
        store = str(source / r["store"]) if r.get("store") else None
        sources.append(RouterSource(r["name"], r.get("config_path"), r.get("url"), store))
    return sources


def _replayed(arm: Arm, router: Router, judge: str | None, synthesizer: str | None) -> Arm:
    return Arm(
        arm.config,
        "fused",
        arm.name,
        judge or router.judge or "default",
        synthesizer or router.synthesizer or "default",
    )


async def replay(options: ReplayOptions) -> Summary:
    report = load_report(options.source)
    tasks = {t.id: t for t in load_tasks(options.source / "tasks.jsonl")}
    arms = [Arm.from_json(a) for a in report["arms"]]
    earlier = [Outcome.from_json(o) for o in report["outcomes"]]
    options.out.mkdir(parents=True, exist_ok=True)
    async with RouterClient() as client, open_routers(_sources(report, options.source), client) as routers:
        by_name = {r.name: r for r in routers}
        new_arm = {
            a.label: _replayed(a, by_name[a.config], options.judge, options.synthesizer)
            for a in arms
            if a.kind == "fused" and a.name in REJUDGED_MODES and not a.judge
        }
        jobs, unreplayable = [], []
        for outcome in earlier:
            arm = new_arm.get(outcome.arm)
            if arm is None or outcome.task_id not in tasks:
                continue
            if outcome.run_id is None:
                reason = f"no recorded run to rejudge (the original answer failed: {outcome.error or outcome.reason})"
                unreplayable.append(
                    Outcome(outcome.task_id, arm.label, False, reason, outcome.category, outcome.repeat, error=reason)
                )
                continue
            router = by_name[arm.config]
            jobs.append(Job(tasks[outcome.task_id], outcome.repeat, arm, router, rejudge_of=outcome.run_id))
        if not jobs:
            raise ValueError(f"{options.source}: no fused runs ({', '.join(REJUDGED_MODES)} modes) to replay")
        scoring = Scoring(Sandbox(), grader_for(list(tasks.values()), routers, client, options.grader))
        progress = Progress(tasks=len({j.trial for j in jobs}), answers=len(jobs), label="replay")
        result = await run_jobs(
            jobs, client, scoring, concurrency=options.concurrency, max_cost=None, progress=progress
        )
        progress.close()
        meta = ReportMeta(
            title=f"FusionKit eval replay: {report['title']}",
            created_at=now_text(),
            tasks_file=str(options.source / "tasks.jsonl"),
            task_count=int(report["task_count"]),
            repeat=int(report["repeat"]),
            modes=list(report["modes"]),
            routers=[record_of(r, options.out) for r in routers],
            stopped=result.stopped,  # how this replay ended (a Ctrl-C exits 130); the original's stop is a note
            replay_of=str(options.source),
        )
        if report.get("stopped"):
            meta.notes.append(
                f"the replayed eval had stopped early ({report['stopped']}): its arms cover what it answered"
            )
    all_arms = [*arms, *new_arm.values()]
    return write_report(options.out, meta, all_arms, [*earlier, *unreplayable, *result.outcomes])
