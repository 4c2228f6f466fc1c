"""`fusionkit eval`: does fusion pay, for these tasks? Quality, cost and latency per config and mode,
against each panel member alone, with the statistics to tell (docs/eval.md).

One concept per module, in the order the work flows:

- `tasks`: the JSONL task file and its scorer specs;
- `routers`: the routers asked, in-process from a config or at a URL, over their HTTP API;
- `answers`: one answer as the router returns it (the one reader of the `fusionkit` object);
- `scorers` and `sandbox`: pass or fail with a reason; Python answers run against tests, offline;
- `runner`: every task through every arm, `--concurrency` at a time, within `--max-cost`;
- `results`, `stats`, `summary`: arms and outcomes, and the numbers made of them;
- `report` and `chart`: report.json, report.md and pareto.png;
- `replay`: an earlier eval's candidates judged again (`--replay`);
- `command`: the click commands (`fusionkit eval`, `fusionkit runs rejudge`).
"""
