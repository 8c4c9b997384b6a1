"""`python -m numdoctor.supervise._worker PAYLOAD RESULT`: run one function for isolate().

The payload holds multiprocessing's own "spawn" preparation data (sys.path, the working
directory, the main module to re-import as `__mp_main__`) and the pickled call. So a function
defined in the caller's main script or in a test module is found exactly as a
`multiprocessing` spawn worker would find it. The outcome (value, exception with its
traceback, or why the value could not be pickled) is written to RESULT.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def _write(path: str, record: tuple) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(record, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def main() -> None:
    payload_path, result_path = sys.argv[1], sys.argv[2]
    with open(payload_path, "rb") as fh:
        preparation, call = pickle.load(fh)
    import multiprocessing.spawn

    sys.argv = list(preparation.get("sys_argv", sys.argv))
    multiprocessing.spawn.prepare(preparation)
    try:
        fn, args, kwargs = pickle.loads(call)
    except BaseException as exc:
        _write(result_path, ("unpickle-failed", f"{type(exc).__name__}: {exc}",
                             traceback.format_exc()))
        _exit(0)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        text = traceback.format_exc()
        try:
            _write(result_path, ("raised", exc, text))
        except Exception:
            _write(result_path, ("raised-unpicklable", f"{type(exc).__name__}: {exc}", text))
        _exit(0)
    try:
        _write(result_path, ("returned", value))
    except Exception as exc:
        _write(result_path, ("result-unpicklable", f"{type(exc).__name__}: {exc}",
                             type(value).__qualname__))
    _exit(0)


def _exit(code: int) -> None:
    # Like a multiprocessing worker: the result is written; threads the function left
    # behind must not keep the process (and the caller) waiting.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
