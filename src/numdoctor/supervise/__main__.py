"""`python -m numdoctor.supervise CONFIG.json`: the supervisor process of `numdoctor.isolate()`.

It is the parent and subreaper of the function's process, exactly like `numdoctor run`, so
the calling process needs no special powers and keeps its own signal handling. The report
goes to the JSON file named in the configuration; the exit status is `numdoctor run`'s.
If the calling process dies, this one gets SIGTERM and takes the whole tree down with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fh:
        config = json.load(fh)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != config["parent"]:
        return 1  # the caller is already gone
    from numdoctor.core.tree import CommandNotFound
    from numdoctor.supervise.supervisor import Options, supervise

    options = Options(command=config["command"], hang_timeout=config.get("hang_timeout"),
                      spin_timeout=config.get("spin_timeout"), timeout=config.get("timeout"),
                      first_stop_kills=True, report_always=False)
    try:
        outcome = supervise(options)
    except CommandNotFound as exc:
        print(f"numdoctor.isolate: {exc}", file=sys.stderr)
        return exc.exit_code
    if outcome.report is not None:
        data = outcome.report.to_dict()
    else:  # a success: the caller only needs the status (the result is in its own file)
        data = {"kind": "run", "findings": [], "outcome": {"status": outcome.status,
                                                             "exit_code": outcome.exit_code}}
    tmp = config["report"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, config["report"])
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
