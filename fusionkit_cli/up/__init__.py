"""`fusionkit up`: a small supervisor for one router and its bridges.

Shaped like honcho: `supervisor.Supervisor` owns the loop; each `child.Child` runs one process
and hands its output lines to the `printer.Printer`; time, signals, spawning, probes and kills go
through an `env.Env`, so tests drive start-up, crashes, back-off and signals on a fake clock.
`procs` stops whole process trees, `watchdog` runs inside each child, `state` is `up.json`.
"""
