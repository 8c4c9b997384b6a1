"""The collector subprocess: import modules in order, then collect a Snapshot.

Run as `python -m numdoctor.snapshot._child ARGS_JSON`, or called in a forked clean copy of
`numdoctor check`. Progress goes to an inherited pipe as JSON lines so the parent can tell
which import is running if we hang or die; the last line carries the live facts
(numdoctor.snapshot.live), from which the parent assembles the snapshot. Nothing but the
standard library is imported before the user's modules, so the import order under test is
exactly the requested one.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time


def main() -> int:
    return run(json.loads(sys.argv[1]))


def run(args: dict) -> int:
    """Import, collect, report. Called in a spawned interpreter or in a forked clean one."""
    events = os.fdopen(args["events_fd"], "w", buffering=1, encoding="utf-8")
    # Armed like every process numdoctor watches: fatal signals print the traceback of every
    # thread into the run directory, and the dump signal asks for one on demand (where the
    # parent cannot attach py-spy to a hung import). Both work while C code holds the GIL.
    from numdoctor.core.rundir import RunDir

    RunDir(args["run_dir"], dump_signal=args["dump_signal"]).arm_this_process()

    def emit(**event: object) -> None:
        events.write(json.dumps(event) + "\n")

    # The cyclic garbage collector stays off: this process exits once it has answered, and
    # no fact it reports depends on a collection. Collections during the imports traverse
    # every object the frameworks create and free next to nothing: measured here, importing
    # numpy, scipy, sklearn, torch and tensorflow took 3.7 s without them against 5.2 s with
    # them, and the peak memory differed by 3 MiB.
    gc.disable()

    attempts = []
    for module in args["imports"]:
        emit(event="import", module=module)
        environ_before = dict(os.environ)
        start = time.perf_counter()
        status, detail, tb = "ok", "", ""
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            import traceback

            if exc.name == module or module.startswith(f"{exc.name}."):
                status, detail = "missing", str(exc)
            else:
                status, detail, tb = "error", f"{type(exc).__name__}: {exc}", \
                    traceback.format_exc()
        except BaseException as exc:  # SystemExit from a module is a failure too
            import traceback

            status, detail, tb = "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()
        seconds = time.perf_counter() - start
        # Names only: which variables this import set (scikit-learn sets KMP_DUPLICATE_LIB_OK,
        # for one). Values stay out of the record; the environment facts hold those that
        # matter.
        environment_set = sorted(name for name, value in os.environ.items()
                                 if environ_before.get(name) != value)
        if len(tb) > 4000:
            from numdoctor.redact import clip_tail  # a cut must not halve a token

            tb = clip_tail(tb, 4000)
        attempts.append({"module": module, "status": status, "seconds": round(seconds, 3),
                         "detail": detail, "traceback": tb,
                         "environment_set": environment_set})
        emit(event="imported", module=module, status=status, seconds=seconds, detail=detail)

    emit(event="collect")
    from numdoctor.snapshot.live import live_facts

    facts = live_facts()
    # default=str: a framework may report a value JSON has no type for; say it, don't fail.
    events.write(json.dumps({"event": "done", "facts": facts, "attempts": attempts},
                            default=str) + "\n")
    events.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
