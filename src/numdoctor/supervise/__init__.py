"""Supervise a program: relay its output, watch its process tree, and explain hangs and crashes.

`numdoctor run` and `numdoctor.isolate()` are thin front ends over `supervisor.supervise()`.
The parts, each in its own module:

- `launcher`: start the program in its own session, as our child, with the injected
  `sitecustomize` on its PYTHONPATH; find and kill every process of its tree.
- `output`: relay stdout/stderr byte for byte (or leave them untouched where possible) and keep
  a bounded tail plus a stream scan for the message knowledge base.
- `monitor`: sample CPU, RSS, cgroup OOM counters and GPUs; decide when the program hangs.
- `stacks`: the dump ladder (faulthandler, py-spy, gdb, a /proc stack scan).
- `classify`, `diagnose`, `messages`: from exit statuses, stacks and stderr to findings.
- `facts`: a snapshot of the program's process taken from the outside while it runs.
- `report`: the `Report` and the short summary printed on failure.

Importing this package is cheap: `numdoctor.heartbeat()` lives here and must stay so.
"""
