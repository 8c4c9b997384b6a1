# numdoctor probe's fork server: one interpreter per scenario group (import order and
# threading environment) that imports the group's modules once and then forks, for each
# scenario, a `numdoctor run` supervisor together with the scenario's program.
#
# Why: every scenario of `probe --import torch --fork` used to be a fresh interpreter that
# spent a second importing torch before its operation ran; twenty-odd scenarios paid that
# twenty-odd times. A process forked from here starts with the modules imported and no
# thread pool started (importing starts no OpenMP or BLAS pool; the first operation does), so
# the scenario's own operation, fork and start method behave as in a fresh interpreter.
#
# The process layout for one scenario, all on this machine:
#
#     probe --connect--> zygote --fork--> supervisor (numdoctor run, in-process)
#                                             \--fork--> program (the scenario script)
#
# The program is forked from the supervisor *before* the supervisor imports numdoctor, so the
# program's interpreter holds exactly the group's modules, as a fresh one would. It waits for
# the supervisor's "go" (its environment with the run directory, its output streams), then
# arms itself as the injected sitecustomize would at start-up and runs the script as
# __main__.
#
# This file runs as a script (python _zygote.py ADDRESS MODULE...), not as a module of the
# numdoctor package, whose imports would sit in every scenario's process; so: standard
# library only, until the supervisor has forked the program.

import json
import os
import select
import signal
import socket
import sys


def main(argv):
    address, modules = argv[0], argv[1:]
    del sys.path[0]  # this file's directory; the program gets its script's directory
    import time  # noqa: F401  (the scenario scripts' own first line: import os, sys, time)

    for name in modules:
        __import__(name)
    server = socket.socket(socket.AF_UNIX)
    server.bind(address)
    server.listen(64)
    # The kernel reaps the supervisors: their exit status reaches the probe on the
    # connection, and a zygote that waits for nothing never blocks its accept loop.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    threads = len(os.listdir("/proc/self/task"))
    sys.stdout.write(json.dumps({"ready": True, "threads": threads}) + "\n")
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([server, 0], [], [])
        if 0 in ready and not os.read(0, 1):
            return 0  # the probe has gone (or closed our stdin to stop us)
        if server in ready:
            conn, _ = server.accept()
            pid = os.fork()
            if pid == 0:
                code = 70
                try:
                    code = _supervisor(server, conn)
                finally:
                    os._exit(code)
            conn.close()


def _supervisor(server, conn):
    """In the forked supervisor: read the request, fork the program, supervise it."""
    server.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request = json.loads(_read_line(conn))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    os.chdir(request["cwd"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    program = os.fork()
    if program == 0:
        code = 70
        try:
            ours.close()
            conn.close()
            code = _program(theirs)
        except BaseException:
            pass
        finally:
            os._exit(code)
    theirs.close()
    conn.sendall(json.dumps({"pid": os.getpid(), "program": program}).encode() + b"\n")
    # numdoctor may not be on the zygote's path (run from a source tree): this file lives in
    # <root>/numdoctor/probe/.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from numdoctor.probe.forked_run import supervise_forked

    code = supervise_forked(request["argv"], program, ours)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
    return code


def _read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("the probe closed the connection")
        data += chunk
    return data


def _program(go):
    """In the forked program: wait for the supervisor's go, then be `python SCRIPT`."""
    message, fds, _, _ = socket.recv_fds(go, 1 << 20, 2)
    if not message:
        return 70  # the supervisor gave up before starting us
    start = json.loads(message)
    for fd, received in zip((1, 2), fds, strict=True):
        os.dup2(received, fd)
        os.close(received)
    os.setsid()  # the supervisor signals and kills the program by its session, as spawned
    _die_with_parent()
    os.environ.clear()
    os.environ.update(start["env"])
    os.chdir(start["cwd"])
    go.send(b"ok")
    go.close()
    script = start["argv"][0]
    sys.argv = list(start["argv"])
    sys.orig_argv = [sys.executable, *start["argv"]]
    _arm(start["inject"])
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    import runpy

    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    return _shut_down(code)


def _die_with_parent():
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _arm(inject_dir):
    """What numdoctor's sitecustomize does when an interpreter of the tree starts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_numdoctor_sitecustomize", os.path.join(inject_dir, "sitecustomize.py"))
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.arm_this_process()


def _exit_status(code):
    """What the interpreter makes of SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def _shut_down(code):
    """The interpreter's way out: join non-daemon threads, run atexit, flush."""
    threading = sys.modules.get("threading")
    if threading is not None and hasattr(threading, "_shutdown"):
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit

    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120  # as the interpreter does when it cannot flush
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
