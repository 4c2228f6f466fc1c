"""Writing an eval's report: report.json (every number and every outcome), report.md (for people),
pareto.png (the chart, when matplotlib is installed).

    paths = write_report(out_dir, meta, arms, outcomes)

In report.md every figure links to a section listing the trials it counts, each with its run id;
`fusionkit runs show RUN_ID --store out/runs/NAME.sqlite3` (or `--url`) shows the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionkit_cli.eval.chart import draw_pareto
from fusionkit_cli.eval.results import Arm, Outcome, RouterRecord
from fusionkit_cli.eval.summary import ArmStats, ConfigStats, Summary, summarise

__all__ = ["REPORT_FORMAT", "ReportMeta", "load_report", "write_report"]

REPORT_FORMAT = "fusionkit-eval-report.v1"


@dataclass
class ReportMeta:
    """What the eval was: the task set, the settings, where the runs are, how it ended."""

    title: str
    created_at: str
    tasks_file: str
    task_count: int
    repeat: int
    modes: list[str]
    routers: list[RouterRecord]
    max_cost: float | None = None
    stopped: str | None = None
    replay_of: str | None = None
    notes: list[str] = field(default_factory=list)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _usd(value: float, complete: bool = True) -> str:
    text = f"${value:.6f}" if value < 0.01 else f"${value:.4f}"
    return text if complete else text + " (incomplete)"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _trial(o: Outcome) -> dict[str, Any]:
    return {"task_id": o.task_id, "repeat": o.repeat, "run_id": o.run_id}


def _summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "trials": summary.trials,
        "planned_trials": summary.planned_trials,
        "arms": [
            {
                "label": s.arm.label,
                "config": s.arm.config,
                "kind": s.arm.kind,
                "name": s.arm.name,
                "n": s.n,
                "passed": s.passed,
                "accuracy": s.accuracy,
                "ci95": [s.interval.low, s.interval.high],
                "mean_cost_usd": s.mean_cost,
                "cost_complete": s.cost_complete,
                "latency_ms": {"p50": s.latency_p50, "p95": s.latency_p95},
                "tokens": {"mean_prompt": s.mean_prompt_tokens, "mean_completion": s.mean_completion_tokens},
                "errors": s.errors,
                "by_category": {k: {"passed": p, "n": n} for k, (p, n) in s.by_category.items()},
                "run_ids": [o.run_id for o in s.outcomes],
            }
            for s in summary.arms
        ],
        "configs": [
            {
                "name": c.name,
                "members": c.members,
                "best_member": c.best_member,
                "oracle": {
                    "passed": c.oracle_passed,
                    "n": summary.trials,
                    "accuracy": c.oracle_accuracy,
                    "ci95": [c.oracle_interval.low, c.oracle_interval.high],
                },
                "regret": [
                    {
                        "fused": r.fused,
                        "count": len(r.trials),
                        "rate": len(r.trials) / summary.trials if summary.trials else 0.0,
                        "trials": [
                            {**_trial(f), "right_members": [{"arm": m.arm, "run_id": m.run_id} for m in right]}
                            for f, right in r.trials
                        ],
                    }
                    for r in c.regrets
                ],
                "failure_correlation": [
                    {
                        "a": k.a,
                        "b": k.b,
                        "phi": k.phi,
                        "both_failed": len(k.both_failed),
                        "trials": [{**_trial(x), "other_run_id": y.run_id} for x, y in k.both_failed],
                    }
                    for k in c.correlations
                ],
            }
            for c in summary.configs
        ],
        "comparisons": [
            {
                "a": k.a,
                "b": k.b,
                "a_only": len(k.a_only),
                "b_only": len(k.b_only),
                "p_value": k.p_value,
                "a_only_trials": [{**_trial(x), "b_run_id": y.run_id} for x, y in k.a_only],
                "b_only_trials": [{**_trial(x), "b_run_id": y.run_id} for x, y in k.b_only],
            }
            for k in summary.comparisons
        ],
        "pareto": {"quality_cost": summary.front_cost, "quality_latency": summary.front_latency},
    }


class _Markdown:
    """report.md: the tables up top, then one section per list of trials the figures link to."""

    def __init__(self, meta: ReportMeta, summary: Summary, chart: str | None) -> None:
        self.meta, self.summary, self.chart = meta, summary, chart
        self.sections: list[str] = []
        routers = {r.name: r for r in meta.routers}
        self.router_of = {s.arm.label: routers.get(s.arm.config) for s in summary.arms}

    def _run(self, outcome: Outcome) -> str:
        if outcome.run_id is None:
            return "-"
        router = self.router_of.get(outcome.arm)
        if router is not None and router.url:
            return f"[`{outcome.run_id}`]({router.url}/v1/fusion/runs/{outcome.run_id}/inspect)"
        return f"`{outcome.run_id}`"

    def _link(self, text: str, title: str, rows: list[str], header: str) -> str:
        """`text` linked to a new section `title` holding `rows` (a table under `header`)."""
        anchor = f"list-{len(self.sections) + 1}"
        body = "\n".join(rows) if rows else "(none)"
        table = f"{header}\n{body}" if rows else body
        self.sections.append(f'<a id="{anchor}"></a>\n\n### {title}\n\n{table}\n')
        return f"[{text}](#{anchor})"

    def _outcome_rows(self, outcomes: list[Outcome]) -> list[str]:
        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|")[:160]

        return [
            f"| {o.task_id} | {o.repeat} | {o.category or '-'} | {'pass' if o.passed else 'fail'} | "
            f"{cell(o.reason)} | {self._run(o)} |"
            for o in outcomes
        ]

    _OUTCOME_HEADER = "| task | repeat | category | result | reason | run id |\n| --- | ---: | --- | --- | --- | --- |"

    def _arm_row(self, s: ArmStats) -> str:
        accuracy = self._link(
            _pct(s.accuracy), f"{s.arm.label}: every answer", self._outcome_rows(s.outcomes), self._OUTCOME_HEADER
        )
        errors = f" ({s.errors} failed to answer)" if s.errors else ""
        return (
            f"| {s.arm.label} | {accuracy}{errors} | {_pct(s.interval.low)} - {_pct(s.interval.high)} | "
            f"{s.passed}/{s.n} | {_usd(s.mean_cost, s.cost_complete)} | {_ms(s.latency_p50)} / {_ms(s.latency_p95)} | "
            f"{s.mean_prompt_tokens:.0f} / {s.mean_completion_tokens:.0f} |"
        )

    def render(self) -> str:
        meta, summary = self.meta, self.summary
        out = [f"# {meta.title}", ""]
        ended = "finished"
        if meta.stopped:
            ended = (
                f"**stopped early: {meta.stopped}**; the figures cover the {summary.trials} trials every arm answered"
            )
        out.append(
            f"{meta.task_count} tasks from `{meta.tasks_file}` x {meta.repeat} repetition(s), "
            f"{summary.trials} of {summary.planned_trials} trials answered by every arm; {ended}. {meta.created_at}."
        )
        if meta.replay_of:
            out.append(f"\nA replay of `{meta.replay_of}`: the recorded candidates judged and synthesized again.")
        out += ["", "Runs:"]
        for r in meta.routers:
            if r.url:
                out.append(f"- `{r.name}`: the router at {r.url} (`fusionkit runs show RUN_ID --url {r.url}`)")
            else:
                out.append(
                    f"- `{r.name}`: `{r.config_path}`, run store `{r.store}` (relative to this report) "
                    f"(`fusionkit runs show RUN_ID --store DIR/{r.store}`)"
                )
        out += [f"- {note}" for note in meta.notes]
        if self.chart:
            out += ["", f"![Quality against cost and latency, Pareto fronts marked]({self.chart})"]
        out += [
            "",
            "## Accuracy, cost, latency",
            "",
            "| arm | accuracy | 95 % interval (Wilson) | right | mean cost per task | latency p50 / p95 | "
            "tokens in / out (mean) |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
            *(self._arm_row(s) for s in summary.arms),
        ]
        out += self._categories()
        for config in summary.configs:
            out += self._config(config)
        out += self._comparisons()
        out += [
            "",
            "## Pareto fronts",
            "",
            "Arms no other arm beats on both quality and expense (cheapest first):",
            "",
            f"- quality x cost: {', '.join(summary.front_cost) or '-'}",
            f"- quality x latency (p50): {', '.join(summary.front_latency) or '-'}",
        ]
        out += ["", "## Trials behind each figure", "", *self.sections]
        return "\n".join(out) + "\n"

    def _categories(self) -> list[str]:
        categories = list(dict.fromkeys(k for s in self.summary.arms for k in s.by_category))
        if len(categories) < 2:
            return []
        lines = ["", "## By category", "", "| arm | " + " | ".join(categories) + " |"]
        lines.append("| --- |" + " ---: |" * len(categories))
        for s in self.summary.arms:
            cells = []
            for k in categories:
                passed, n = s.by_category.get(k, (0, 0))
                cells.append(f"{passed}/{n}" if n else "-")
            lines.append(f"| {s.arm.label} | " + " | ".join(cells) + " |")
        return lines

    def _config(self, config: ConfigStats) -> list[str]:
        n = self.summary.trials
        lines = ["", f"## `{config.name}`: fusion against its members", ""]
        if config.best_member:
            best = self.summary.arm(config.best_member)
            lines.append(f"- best single member: {config.best_member}, {_pct(best.accuracy)}")
        oracle_rows = [
            f"| {t[0].task_id} | {t[0].repeat} | " + ", ".join(f"{o.arm} {self._run(o)}" for o in t) + " |"
            for t in config.oracle_outcomes
            if t
        ]
        oracle = self._link(
            _pct(config.oracle_accuracy),
            f"{config.name}: trials some member got right (the oracle)",
            oracle_rows,
            "| task | repeat | members right (run ids) |\n| --- | ---: | --- |",
        )
        lines.append(
            f"- oracle (some member alone right): {oracle} ({config.oracle_passed}/{n}; 95 % "
            f"{_pct(config.oracle_interval.low)} - {_pct(config.oracle_interval.high)})"
        )
        for regret in config.regrets:
            rows = [
                f"| {f.task_id} | {f.repeat} | {self._run(f)} | "
                + ", ".join(f"{m.arm} {self._run(m)}" for m in right)
                + " |"
                for f, right in regret.trials
            ]
            count = self._link(
                str(len(regret.trials)),
                f"{regret.fused}: regret (a member right, the fused answer wrong)",
                rows,
                "| task | repeat | fused run | members right |\n| --- | ---: | --- | --- |",
            )
            rate = len(regret.trials) / n if n else 0.0
            lines.append(
                f"- regret of {regret.fused}: {count} trials a member got right and it got wrong ({_pct(rate)})"
            )
        if config.correlations:
            lines += ["", "Member failure correlation (phi; near 0: independent errors, which fusion can fix):", ""]
            lines += ["| members | phi | both failed |", "| --- | ---: | ---: |"]
            for k in config.correlations:
                rows = [f"| {x.task_id} | {x.repeat} | {self._run(x)} | {self._run(y)} |" for x, y in k.both_failed]
                both = self._link(
                    str(len(k.both_failed)),
                    f"{config.name}: {k.a} and {k.b} both failed",
                    rows,
                    f"| task | repeat | {k.a} run | {k.b} run |\n| --- | ---: | --- | --- |",
                )
                value = "-" if k.phi is None else f"{k.phi:+.2f}"
                lines.append(f"| {k.a} x {k.b} | {value} | {both} |")
        return lines

    def _comparisons(self) -> list[str]:
        if not self.summary.comparisons:
            return []
        lines = [
            "",
            "## Paired comparisons (McNemar, exact)",
            "",
            "| A | B | only A right | only B right | p |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        header = "| task | repeat | A run | B run |\n| --- | ---: | --- | --- |"
        for k in self.summary.comparisons:
            a_only = self._link(
                str(len(k.a_only)),
                f"only {k.a} right (against {k.b})",
                [f"| {x.task_id} | {x.repeat} | {self._run(x)} | {self._run(y)} |" for x, y in k.a_only],
                header,
            )
            b_only = self._link(
                str(len(k.b_only)),
                f"only {k.b} right (against {k.a})",
                [f"| {x.task_id} | {x.repeat} | {self._run(x)} | {self._run(y)} |" for x, y in k.b_only],
                header,
            )
            lines.append(f"| {k.a} | {k.b} | {a_only} | {b_only} | {k.p_value:.3g} |")
        return lines


def write_report(out_dir: Path, meta: ReportMeta, arms: list[Arm], outcomes: list[Outcome]) -> Summary:
    """Write report.json, report.md and (with matplotlib) pareto.png into `out_dir`."""
    planned = meta.task_count * meta.repeat
    summary = summarise(arms, outcomes, planned_trials=planned)
    summary.stopped = meta.stopped
    chart = out_dir / "pareto.png"
    drawn = draw_pareto(summary, chart, title=meta.title)
    if not drawn:
        meta.notes.append("pareto.png was not drawn: matplotlib is not installed (pip install 'fusionkit[eval]')")
    data = {
        "format": REPORT_FORMAT,
        "title": meta.title,
        "created_at": meta.created_at,
        "tasks_file": meta.tasks_file,
        "task_count": meta.task_count,
        "repeat": meta.repeat,
        "modes": meta.modes,
        "max_cost": meta.max_cost,
        "stopped": meta.stopped,
        "replay_of": meta.replay_of,
        "notes": meta.notes,
        "routers": [r.__dict__ for r in meta.routers],
        "arms": [a.to_json() for a in arms],
        "summary": _summary_json(summary),
        "outcomes": [o.to_json() for o in outcomes],
    }
    (out_dir / "report.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    markdown = _Markdown(meta, summary, chart.name if drawn else None).render()
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    return summary


def load_report(out_dir: Path) -> dict[str, Any]:
    """An earlier eval's report.json (for `--replay`), checked to be one."""
    path = out_dir / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found (give the output directory of an earlier `fusionkit eval`)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not a report of `fusionkit eval` (format {REPORT_FORMAT})")
    return data
