# numdoctor's hook in every Python process of a program run under `numdoctor run` or
# `numdoctor.isolate()`. The supervisor puts this directory first on PYTHONPATH, so every
# interpreter the program starts (subprocesses, multiprocessing "spawn"/"forkserver" workers,
# DataLoader workers) imports this file at startup; os.register_at_fork covers forked ones.
#
# What it does, in well under a millisecond:
# 1. faulthandler for fatal signals (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE) into a per-pid
#    file in $NUMDOCTOR_RUN_DIR, unless the program enabled faulthandler itself;
# 2. faulthandler.register() on the supervisor's dump signal: all-thread Python stacks on
#    demand, written by C code, so it works while C code holds the GIL;
# 3. a small "py-<pid>.info" file (a Python literal) telling the supervisor that this pid is a
#    Python process that can be asked for a dump, and where it came from;
# 4. a record of every child this process reaps (os.waitpid and friends): a grandchild's exit
#    status goes to its parent only, so a pool or DataLoader worker killed by a signal would
#    otherwise just vanish from the supervisor's view ("fates-<pid>.txt": pid, wait status,
#    monotonic time per line);
# 5. then the user's own sitecustomize further along sys.path, if there is one, exactly as
#    site.py would have run it.
#
# It must run under whatever Python the program uses, so: standard library only, no
# numdoctor import, syntax that Python 3.7 accepts, and no exception may escape from our part.

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_state = {"file": None, "ours": False, "pid": None, "threads_at_fork": None,
          "run_dir": None, "signal": None, "supervisor": None}  # type: dict


def _write_info(run_dir, info):
    path = os.path.join(run_dir, "py-{}.info".format(info["pid"]))
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(repr(info))
    os.replace(tmp, path)


def _arm(forked_from=None):
    import faulthandler

    run_dir = _state["run_dir"] or os.environ.get("NUMDOCTOR_RUN_DIR")
    if not run_dir or not os.path.isdir(run_dir):
        return
    _state["run_dir"] = run_dir
    pid = os.getpid()
    dump = open(os.path.join(run_dir, f"fh-{pid}.txt"), "ab", buffering=0)
    previous = _state["file"]
    _state["file"] = dump
    _state["pid"] = pid
    fatal = "numdoctor"
    if faulthandler.is_enabled() and not _state["ours"]:
        fatal = "program"  # the program enabled it (PYTHONFAULTHANDLER, -X faulthandler)
    else:
        faulthandler.enable(file=dump, all_threads=True)
        _state["ours"] = True
    signum = _state["signal"] or int(os.environ.get("NUMDOCTOR_DUMP_SIGNAL", "0") or 0)
    dumps = False
    if signum:
        try:
            faulthandler.register(signum, file=dump, all_threads=True, chain=False)
            dumps = True
        except (RuntimeError, ValueError, OSError):
            pass
    if previous is not None and previous is not dump:
        try:
            previous.close()  # the parent's file, inherited through fork
        except OSError:
            pass
    if _state["supervisor"] or os.environ.get("NUMDOCTOR_SET_PTRACER") == "1":
        _allow_supervisor_ptrace()
    info = {
        "pid": pid,
        "ppid": os.getppid(),
        "executable": sys.executable,
        "argv": list(getattr(sys, "orig_argv", None) or sys.argv or []),
        "version": ".".join(str(n) for n in sys.version_info[:3]),
        "fatal": fatal,
        "dumps": dumps,
        "dump_signal": signum,
        "forked_from": forked_from,
        "threads_at_fork": _state["threads_at_fork"] if forked_from else None,
        "site_dirs": [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))],
    }
    _write_info(run_dir, info)


def _record_reaped(pid, status):
    run_dir = _state["run_dir"]
    if not run_dir or pid <= 0:
        return
    import time

    line = f"{pid} {status} {time.monotonic():.3f}\n"
    fd = os.open(os.path.join(run_dir, f"fates-{os.getpid()}.txt"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


def _watch_reaping():
    # Wrapped once per interpreter (forked children inherit the wrappers). Whatever happens
    # in the recording, the program gets the real call's result.
    def wrap(name, pid_status):
        real = getattr(os, name, None)
        if real is None or getattr(real, "_numdoctor", False):
            return

        def waiting(*args, **kwargs):
            result = real(*args, **kwargs)
            try:
                pid, status = pid_status(result)
                if pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                    _record_reaped(pid, status)
            except Exception:
                pass
            return result

        for attribute, value in (("_numdoctor", True), ("__wrapped__", real),
                                 ("__name__", real.__name__), ("__doc__", real.__doc__)):
            setattr(waiting, attribute, value)
        setattr(os, name, waiting)

    for name in ("waitpid", "wait", "wait3", "wait4"):
        wrap(name, lambda result: (result[0], result[1]))


def _allow_supervisor_ptrace():
    # Yama ptrace_scope 1: only ancestors may attach. Name the supervisor (and so its py-spy
    # child) as an allowed tracer: PR_SET_PTRACER = 0x59616d61.
    try:
        import ctypes

        supervisor = _state["supervisor"] or int(os.environ.get("NUMDOCTOR_SUPERVISOR_PID", "0"))
        if supervisor:
            ctypes.CDLL(None).prctl(0x59616D61, supervisor, 0, 0, 0)
    except Exception:
        pass


def _before_fork():
    try:
        _state["threads_at_fork"] = len(os.listdir("/proc/self/task"))
    except OSError:
        _state["threads_at_fork"] = None


def _after_fork_in_child():
    try:
        _arm(forked_from=_state["pid"])
    except Exception:
        pass


def _chain_to_user_sitecustomize():
    import importlib.machinery

    here = os.path.normcase(_HERE)
    rest = [p for p in sys.path if os.path.normcase(os.path.abspath(p or os.curdir)) != here]
    # Take ourselves off sys.path: the program should see the path it would have had.
    sys.path[:] = [p for p in sys.path
                   if os.path.normcase(os.path.abspath(p or os.curdir)) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    import importlib.util

    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    # An exception here propagates to site.py, which reports it as it would have without us
    # ("Error in sitecustomize; set PYTHONVERBOSE for traceback: ...").
    spec.loader.exec_module(module)


def arm_this_process(run_dir=None, dump_signal=None, take_fatal=False, supervisor=None):
    """Everything but the chaining: also used by processes numdoctor forks itself (a pytest
    worker, check's collector), which never run a sitecustomize and pass the run directory
    and signal instead of reading them from the environment. `take_fatal`: fatal-signal
    tracebacks go to our file even when the process enabled faulthandler itself (pytest
    does, onto its terminal). `supervisor`: the pid to allow ptrace from (Yama scope 1)."""
    _state["run_dir"] = run_dir
    _state["supervisor"] = supervisor
    _state["signal"] = dump_signal
    if take_fatal:
        _state["ours"] = True
    try:
        _arm()
        _watch_reaping()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    except Exception:
        pass


# Imported as numdoctor.core.inject.sitecustomize (to call arm_this_process) it does nothing.
if __name__ == "sitecustomize":
    arm_this_process()
    _chain_to_user_sitecustomize()
