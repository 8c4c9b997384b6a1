"""The run directory: the contract between a supervised tree and its supervisor.

One private (0700) directory per supervision. The supervisor names it in the environment of
the tree; every Python process of the tree (armed by the injected sitecustomize, or by
`arm_this_process` in a process numdoctor forked itself) writes there:

- `fh-<pid>.txt`: faulthandler's output, on a fatal signal and on the dump signal;
- `py-<pid>.info`: a Python literal saying that pid is an armed Python process, how it came
  to be (argv, parent, forked from whom and with how many threads), its site-packages;
- `fates-<pid>.txt`: "<child pid> <wait status> <monotonic time>" for each child it reaped;
- `heartbeat`: touched by `numdoctor.heartbeat()`, read as progress.
"""

from __future__ import annotations

import os
import signal

from numdoctor.core.procfs import yama_ptrace_scope

# This module is on the start-up path of `numdoctor run` (before the program starts): the
# parsers, pathlib and typing are imported where they are used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from numdoctor.core.stacks.model import ThreadStack

INJECT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inject")

# Environment variables the injected sitecustomize and numdoctor.heartbeat() read.
ENV_RUN_DIR = "NUMDOCTOR_RUN_DIR"
ENV_DUMP_SIGNAL = "NUMDOCTOR_DUMP_SIGNAL"
ENV_HEARTBEAT = "NUMDOCTOR_HEARTBEAT"
ENV_HANG_TIMEOUT = "NUMDOCTOR_HANG_TIMEOUT"
ENV_SUPERVISOR = "NUMDOCTOR_SUPERVISOR_PID"
ENV_PTRACER = "NUMDOCTOR_SET_PTRACER"
ENV_INJECT_DIR = "NUMDOCTOR_INJECT_DIR"


def default_dump_signal() -> int:
    """A real-time signal for on-demand dumps: programs and libraries rarely use these (unlike
    SIGUSR1/SIGUSR2), so our handler is neither replaced nor mistaken for theirs."""
    override = os.environ.get(ENV_DUMP_SIGNAL)
    if override and override.isdigit():
        return int(override)
    return signal.SIGRTMAX - 5


def private_directory(prefix: str = "numdoctor-run-") -> str:
    """A fresh 0700 directory (tempfile.mkdtemp without its imports)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"{prefix}{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot create a private directory in {base}")


class RunDir:
    def __init__(self, path: str | None = None, *, dump_signal: int | None = None) -> None:
        self.path = path or private_directory()
        self.dump_signal = default_dump_signal() if dump_signal is None else dump_signal
        self.heartbeat = os.path.join(self.path, "heartbeat")
        with open(self.heartbeat, "a"):
            pass

    def remove(self) -> None:
        # The directory is flat (files only, see above): unlinking them spares `check`, which
        # removes one after every run, the import of shutil and its compression modules on
        # the way to its report. Anything unexpected (a subdirectory, a file written
        # meanwhile) goes to shutil.rmtree.
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
            os.rmdir(self.path)
        except FileNotFoundError:
            pass  # already gone
        except OSError:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)

    def fh_path(self, pid: int) -> str:
        return os.path.join(self.path, f"fh-{pid}.txt")

    def environment(self, base: Mapping[str, str], *,
                    hang_timeout: float | None = None) -> dict[str, str]:
        """`base` plus what arms every Python interpreter the tree starts."""
        env = dict(base)
        # The injected directory goes first so our sitecustomize wins; it chains to the
        # user's own one further along sys.path.
        previous = env.get("PYTHONPATH")
        env["PYTHONPATH"] = INJECT_DIR + (os.pathsep + previous if previous else "")
        env[ENV_INJECT_DIR] = INJECT_DIR
        env[ENV_RUN_DIR] = self.path
        env[ENV_DUMP_SIGNAL] = str(self.dump_signal)
        env[ENV_HEARTBEAT] = self.heartbeat
        env[ENV_SUPERVISOR] = str(os.getpid())
        if hang_timeout:
            env[ENV_HANG_TIMEOUT] = f"{hang_timeout:g}"
        # Under Yama ptrace_scope 1 only ancestors may attach; py-spy is our child, not the
        # program's ancestor, so each Python process names us (and our children) as allowed.
        if yama_ptrace_scope() == 1:
            env[ENV_PTRACER] = "1"
        return env

    def arm_this_process(self) -> None:
        """Arm a process numdoctor forked itself (it runs no sitecustomize): faulthandler
        into `fh-<pid>.txt` for fatal signals and the dump signal, its info file, and the
        record of the children it reaps."""
        from numdoctor.core.inject import sitecustomize

        # Its parent (the supervisor) and the parent's tools may attach under Yama scope 1.
        supervisor = os.getppid() if yama_ptrace_scope() == 1 else None
        sitecustomize.arm_this_process(  # type: ignore[no-untyped-call]
            self.path, self.dump_signal, take_fatal=True, supervisor=supervisor)

    # -- what the tree wrote -----------------------------------------------------------------
    def infos(self) -> dict[int, dict[str, Any]]:
        """{pid: info} from the py-<pid>.info files."""
        import ast

        infos = {}
        for path in self._files("py-", ".info"):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    data = ast.literal_eval(fh.read())
            except (OSError, ValueError, SyntaxError):
                continue
            if isinstance(data, dict) and isinstance(data.get("pid"), int):
                infos[data["pid"]] = data
        return infos

    def fatal_dumps(self) -> dict[int, tuple[str, list[ThreadStack], str]]:
        """Fatal-error dumps left by processes of the tree: {pid: (error, threads, text)}."""
        found = {}
        for path in self._files("fh-", ".txt"):
            pid = int(os.path.basename(path)[3:-4])
            fatal, threads, chunk = self.fatal_dump(pid)
            if chunk:
                found[pid] = (fatal, threads, chunk)
        return found

    def fatal_dump(self, pid: int) -> tuple[str, list[ThreadStack], str]:
        """The fatal-error dump of one process: (error, threads, text), "" and [] if none."""
        try:
            with open(self.fh_path(pid), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            return "", [], ""
        if "Fatal Python error: " not in text:
            return "", [], ""  # the usual case: the parsers are imported only for a crash
        from numdoctor.core.stacks.faulthandler import last_dump, parse_faulthandler

        chunk = last_dump(text)
        fatal, threads = parse_faulthandler(chunk)
        return fatal, threads, chunk

    def reaped(self) -> list[tuple[int, int, int, float]]:
        """(reaper pid, child pid, wait status, monotonic time) for every child a process of
        the tree reaped."""
        records = []
        for path in self._files("fates-", ".txt"):
            try:
                reaper = int(os.path.basename(path)[6:-4])
                with open(path, encoding="ascii", errors="replace") as fh:
                    lines = fh.read().splitlines()
            except (OSError, ValueError):
                continue
            for line in lines:
                parts = line.split()
                try:
                    records.append((reaper, int(parts[0]), int(parts[1]), float(parts[2])))
                except (IndexError, ValueError):
                    continue  # a line cut short by a crash
        return sorted(records, key=lambda r: r[3])

    def _files(self, prefix: str, suffix: str) -> list[str]:
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        return [os.path.join(self.path, n) for n in names
                if n.startswith(prefix) and n.endswith(suffix)
                and n[len(prefix):-len(suffix)].isdigit()]
