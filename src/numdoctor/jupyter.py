"""numdoctor in IPython and Jupyter: `%load_ext numdoctor`.

    %numdoctor                     check this kernel: its BLAS/OpenMP libraries, thread pools,
                                   environment; the report renders as HTML, Markdown or text
    %numdoctor torch sklearn       import those modules in a fresh subprocess and check that
                                   (a hang or crash there becomes a finding, not a dead kernel)

    %%numdoctor_isolate [--timeout S] [--hang-timeout S] [--vars a,b]
    <cell>                         run the cell in a fresh interpreter under numdoctor's
                                   supervisor; a segfault, an abort or a hang shows a report
                                   (signal, stacks, culprit, findings) and the kernel lives on

The isolated cell sees only the variables named in --vars (pickled in) and sends their values
back (when they can be pickled). Its output is relayed as it comes.

Nothing here imports IPython at module level: the isolated cell's process imports this module
to run the cell and must start fast.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import pickle
import re
import sys
import types
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


class IsolatedCellError(RuntimeError):
    """The isolated cell did not finish: its process crashed or hung (report shown above)."""


def display_report(report) -> None:
    """Show a Report with every rich format a front end may pick (HTML, Markdown, text)."""
    from IPython.display import display

    from numdoctor.render import render

    display({"text/plain": render(report, "text"), "text/html": render(report, "html"),
             "text/markdown": render(report, "markdown")}, raw=True)


# -- the isolated cell's side ------------------------------------------------------------------

def _dumps(value: Any) -> bytes:
    """cloudpickle when it is installed: it pickles functions and classes defined in a
    notebook by value, which plain pickle cannot."""
    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def run_cell(source: str, filename: str, variables: bytes, names: list[str]) -> dict[str, Any]:
    """Execute a cell as a fresh `__main__` (in the isolated process) and return what goes
    back: the pickled values of `names`, why some could not be pickled, and the repr of the
    cell's last expression."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    main.__dict__.update(pickle.loads(variables))
    sys.modules["__main__"] = main
    # Tracebacks and faulthandler name the cell; linecache lets them show its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), main.__dict__)
    shown = None
    if last is not None:
        assert isinstance(last, ast.Expr)
        value = eval(compile(ast.Expression(last.value), filename, "eval"), main.__dict__)
        if value is not None:
            shown = repr(value)
    values: dict[str, bytes] = {}
    unpicklable: dict[str, str] = {}
    for name in names:
        if name not in main.__dict__:
            continue
        try:
            values[name] = _dumps(main.__dict__[name])
        except Exception as exc:
            unpicklable[name] = f"{type(exc).__name__}: {exc}"
    return {"values": values, "unpicklable": unpicklable, "shown": shown}


# -- the kernel's side -------------------------------------------------------------------------

def _parse_vars(text: str | None) -> list[str]:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    bad = [name for name in names if not _IDENTIFIER.match(name)]
    if bad:
        from IPython.core.error import UsageError

        raise UsageError(f"%%numdoctor_isolate --vars: {', '.join(map(repr, bad))} is not a "
                         "variable name (give names separated by commas: --vars a,b)")
    return names


def _pack(namespace: dict[str, Any], names: list[str]) -> bytes:
    from IPython.core.error import UsageError

    present = {name: namespace[name] for name in names if name in namespace}
    for name, value in present.items():
        try:
            _dumps(value)
        except Exception as exc:
            raise UsageError(f"%%numdoctor_isolate --vars: {name} ({type(value).__name__}) "
                             f"cannot be pickled into the isolated process: "
                             f"{type(exc).__name__}: {exc}") from None
    return _dumps(present)


_OWN_FRAMES = re.compile(r'^  File "[^"]*[\\/]numdoctor[\\/](?:jupyter\.py|supervise[\\/])')


def cell_traceback(text: str) -> str:
    """The isolated process's traceback without numdoctor's frames around the cell."""
    lines, skipping = [], False
    for line in text.splitlines():
        if line.startswith('  File "'):
            skipping = bool(_OWN_FRAMES.match(line))
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            lines.append(line)
    return "\n".join(lines)


def _cell_words(summary: str) -> str:
    """The supervisor says "the program ..."; here the program is the cell."""
    return summary.removeprefix("the program ")


def _make_magics():
    from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
    from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

    @magics_class
    class NumdoctorMagics(Magics):
        @magic_arguments()
        @argument("modules", nargs="*",
                  help="import these modules, in this order, in a fresh subprocess and check "
                       "that process instead of this kernel")
        @argument("--timeout", type=float, default=120.0,
                  help="seconds each import may take in the subprocess (default 120)")
        @line_magic
        def numdoctor(self, line: str) -> None:
            """Check this kernel's numerical stack (or, with modules, a fresh subprocess)."""
            import numdoctor

            args = parse_argstring(self.numdoctor, line)
            if args.modules:
                report = numdoctor.check(args.modules, timeout=args.timeout)
            else:
                report = numdoctor.check()
            display_report(report)

        @magic_arguments()
        @argument("--timeout", type=float, default=None,
                  help="stop the cell after this many seconds (wall clock), with the stacks "
                       "of all its threads")
        @argument("--hang-timeout", type=float, default=None,
                  help="stop the cell when it makes no progress (no output, no "
                       "numdoctor.heartbeat(), no CPU) for this many seconds")
        @argument("--vars", default=None,
                  help="comma-separated variables to pickle into the cell; their values "
                       "after the cell are pickled back")
        @cell_magic
        def numdoctor_isolate(self, line: str, cell: str) -> None:
            """Run this cell in a fresh interpreter: a crash or hang shows a report instead
            of killing the kernel."""
            __tracebackhide__ = True
            args = parse_argstring(self.numdoctor_isolate, line)
            for option, value in (("--timeout", args.timeout),
                                  ("--hang-timeout", args.hang_timeout)):
                if value is not None and not value > 0:
                    from IPython.core.error import UsageError

                    raise UsageError(f"%%numdoctor_isolate {option}: must be a positive "
                                     f"number of seconds, not {value:g}")
            names = _parse_vars(args.vars)
            shell = self.shell
            assert shell is not None  # a magic runs in a shell
            namespace = shell.user_ns
            variables = _pack(namespace, names)
            filename = f"<numdoctor_isolate cell {shell.execution_count}>"
            result = self._run(cell, filename, variables, names, args)
            if isinstance(result, BaseException):
                raise result from None
            for name, blob in result["values"].items():
                try:
                    namespace[name] = pickle.loads(blob)
                except Exception as exc:
                    result["unpicklable"][name] = f"{type(exc).__name__}: {exc}"
            for name, why in result["unpicklable"].items():
                print(f"numdoctor: {name} stays unchanged in this kernel: its value could not "
                      f"be pickled back ({why})", file=sys.stderr)
            if result["shown"] is not None:
                print(result["shown"])

        def _run(self, cell: str, filename: str, variables: bytes, names: list[str],
                 args) -> dict[str, Any] | BaseException:
            """The cell's result, or the exception the magic raises (raised there, so the
            traceback the notebook shows ends in the magic, not deep in numdoctor)."""
            import numdoctor

            try:
                return numdoctor.isolate(run_cell, cell, filename, variables, names,
                                         timeout=args.timeout, hang_timeout=args.hang_timeout)
            except (numdoctor.CrashError, numdoctor.HangError) as exc:
                display_report(exc.report)
                summary = exc.summary.removeprefix("numdoctor.isolate: ")
                return IsolatedCellError(f"the isolated cell {_cell_words(summary)} (report "
                                         "above; this kernel is unaffected)")
            except Exception as exc:
                remote = getattr(exc.__cause__, "text", None)
                if remote is None:
                    raise
                # The cell's own exception: its traceback as the cell saw it, then the
                # exception itself, as if the cell had run here.
                print(cell_traceback(remote), file=sys.stderr, end="")
                return exc.with_traceback(None)

    return NumdoctorMagics


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(_make_magics())
