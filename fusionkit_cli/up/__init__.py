"""`fusionkit up`: a small supervisor for one router and its bridges.

Shaped like honcho: `Supervisor` owns the loop; each `Child` runs one process and reports its
output lines to the `Printer`; time goes through a `Clock` so tests can drive the restart policy.
"""
