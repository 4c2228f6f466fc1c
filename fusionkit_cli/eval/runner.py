"""Running an eval: every task through every (config, mode) and every member alone, scored, reported.

    report = await evaluate(EvalOptions(tasks_path="tiny.jsonl", sources=[...], modes=["panel"], out=Path("out")))

Work goes task by task (all arms of a task before the next task), `concurrency` answers at a time,
so an eval that `--max-cost` stops leaves whole tasks to compare. Once the cost so far reaches the
limit no new question is asked; those in flight finish (they are being paid for already).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import signal
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionkit_cli.eval.answers import Answer
from fusionkit_cli.eval.progress import Progress
from fusionkit_cli.eval.report import ReportMeta, write_report
from fusionkit_cli.eval.results import Arm, Outcome, RouterRecord
from fusionkit_cli.eval.routers import Router, RouterClient, RouterSource, open_routers
from fusionkit_cli.eval.sandbox import Sandbox
from fusionkit_cli.eval.scorers import Grader, Scoring
from fusionkit_cli.eval.summary import Summary
from fusionkit_cli.eval.tasks import JudgeScorer, Task, load_tasks

__all__ = ["INTERRUPTS", "EvalOptions", "Job", "JobsResult", "evaluate", "record_of", "run_jobs"]

# Ctrl-C and `kill`: stop asking, and report what was answered.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Job:
    """One question: a task (one repetition) for one arm, asked of its router, or a recorded run rejudged."""

    task: Task
    repeat: int
    arm: Arm
    router: Router
    seed: int | None = None
    rejudge_of: str | None = None

    @property
    def trial(self) -> tuple[str, int]:
        return (self.task.id, self.repeat)


@dataclass
class JobsResult:
    outcomes: list[Outcome]
    stopped: str | None
    cost: float


@dataclass
class EvalOptions:
    tasks_path: str
    sources: list[RouterSource]
    out: Path
    modes: list[str] = field(default_factory=lambda: ["panel"])
    repeat: int = 1
    concurrency: int = 4
    max_cost: float | None = None
    grader: str | None = None
    members: list[str] | None = None  # the members measured alone (default: each config's panel, or every endpoint)


async def _ask(client: RouterClient, job: Job) -> Answer:
    if job.rejudge_of is not None:
        return await client.rejudge(job.router, job.rejudge_of, judge=job.arm.judge, synthesizer=job.arm.synthesizer)
    body = job.task.request_body(job.arm.model)
    if job.seed is not None:
        body["seed"] = job.seed
    return await client.chat(job.router, body)


async def _outcome(client: RouterClient, scoring: Scoring, job: Job) -> Outcome:
    answer = await _ask(client, job)
    score = await scoring.score(job.task, answer)
    return Outcome(
        task_id=job.task.id,
        arm=job.arm.label,
        passed=score.passed,
        reason=score.reason,
        category=job.task.category,
        repeat=job.repeat,
        run_id=answer.run_id,
        cost=answer.cost,
        cost_complete=answer.cost_complete,
        grading_cost=score.cost,
        latency_ms=round(answer.latency_ms, 1),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        answer=answer.shown(),
        error=answer.error,
        details=_details(score.details, answer),
    )


def _details(scored: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """What the scorer found, and how the router reached the answer (its decision, members it dropped)."""
    details = dict(scored)
    if answer.decision:
        details["decision"] = answer.decision
    if answer.failed_members:
        details["failed_members"] = answer.failed_members
    return details


async def run_jobs(
    jobs: list[Job],
    client: RouterClient,
    scoring: Scoring,
    *,
    concurrency: int,
    max_cost: float | None,
    progress: Progress,
) -> JobsResult:
    """Ask and score every job, `concurrency` at a time, in order, until done, the cost limit is reached,
    or SIGINT / SIGTERM: then the answers so far are the result, and what was in flight is abandoned."""
    queue = deque(jobs)
    left = Counter(job.trial for job in jobs)
    result = JobsResult([], None, 0.0)

    async def worker() -> None:
        while queue and result.stopped is None:
            job = queue.popleft()
            outcome = await _outcome(client, scoring, job)
            result.outcomes.append(outcome)
            result.cost += outcome.cost + outcome.grading_cost
            left[job.trial] -= 1
            progress.answered(cost=outcome.cost + outcome.grading_cost, task_finished=left[job.trial] == 0)
            if max_cost is not None and result.cost >= max_cost and result.stopped is None:
                result.stopped = f"--max-cost {max_cost:g} USD reached (${result.cost:.4f} spent)"
                progress.note(f"eval: {result.stopped}; finishing the answers in flight, asking nothing more")

    work = asyncio.gather(*(worker() for _ in range(max(1, concurrency))))

    def interrupt(name: str) -> None:
        result.stopped = f"interrupted by {name}"
        work.cancel()

    loop = asyncio.get_running_loop()
    for signum in INTERRUPTS:
        loop.add_signal_handler(signum, interrupt, signum.name)
    try:
        await work
    except asyncio.CancelledError:
        if not (result.stopped or "").startswith("interrupted"):
            raise  # cancelled from outside, not by a signal: not ours to swallow
        progress.note(f"eval: {result.stopped}; writing the report of what was answered")
    finally:
        for signum in INTERRUPTS:
            loop.remove_signal_handler(signum)
    return result


def record_of(router: Router, out: Path) -> RouterRecord:
    """Where a router's runs are, its run store named relative to the report's directory."""
    source = router.source
    return RouterRecord(
        name=router.name,
        config_path=source.config_path,
        url=source.url,
        store=os.path.relpath(source.store, out) if source.store else None,
        members=router.members,
        judge=router.judge,
        synthesizer=router.synthesizer,
    )


def plan(
    tasks: list[Task], routers: list[Router], modes: list[str], repeat: int, members: list[str] | None = None
) -> tuple[list[Arm], list[Job]]:
    """The arms (each config's modes, then its members alone) and the jobs, task by task."""
    for router in routers:
        if members is not None:
            unknown = [m for m in members if m not in router.endpoints]
            if unknown:
                allowed = ", ".join(router.endpoints)
                raise ValueError(
                    f"--members: {', '.join(unknown)} not an endpoint of {router.name}; allowed: {allowed}"
                )
            router.members = list(members)
    arms_of = {
        r.name: [Arm(r.name, "fused", m) for m in modes] + [Arm(r.name, "member", e) for e in r.members]
        for r in routers
    }
    jobs = [
        Job(task, i, arm, router, seed=i if repeat > 1 else None)
        for task in tasks
        for i in range(repeat)
        for router in routers
        for arm in arms_of[router.name]
    ]
    return [arm for router in routers for arm in arms_of[router.name]], jobs


def grader_for(tasks: list[Task], routers: list[Router], client: RouterClient, grader: str | None) -> Grader | None:
    """The grader of judge tasks: `grader` (an endpoint of the first config), else that config's judge."""
    router = routers[0]
    endpoint = grader or router.judge
    if endpoint is None:
        if any(isinstance(t.scorer, JudgeScorer) for t in tasks):
            raise ValueError("judge tasks need a grader model: give --grader ENDPOINT (an endpoint id of the router)")
        return None

    async def grade(body: dict[str, Any]) -> Answer:
        return await client.chat(router, {**body, "model": endpoint})

    return grade


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def evaluate(options: EvalOptions, *, progress_factory: Callable[..., Progress] = Progress) -> Summary:
    """Run the whole eval and write its report into `options.out`."""
    tasks = load_tasks(options.tasks_path)
    options.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(options.tasks_path, options.out / "tasks.jsonl")
    async with RouterClient() as client, open_routers(options.sources, client) as routers:
        arms, jobs = plan(tasks, routers, options.modes, options.repeat, options.members)
        scoring = Scoring(Sandbox(), grader_for(tasks, routers, client, options.grader))
        progress = progress_factory(tasks=len(tasks) * options.repeat, answers=len(jobs))
        result = await run_jobs(
            jobs, client, scoring, concurrency=options.concurrency, max_cost=options.max_cost, progress=progress
        )
        progress.close()
        meta = ReportMeta(
            title=f"FusionKit eval: {Path(options.tasks_path).name}",
            created_at=now_text(),
            tasks_file=options.tasks_path,
            task_count=len(tasks),
            repeat=options.repeat,
            modes=options.modes,
            routers=[record_of(r, options.out) for r in routers],
            max_cost=options.max_cost,
            stopped=result.stopped,
        )
    return write_report(options.out, meta, arms, result.outcomes)
