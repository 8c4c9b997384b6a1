"""What the source around a Python frame says: the lock it is taking, the locks it holds.

A plain `threading.Lock` records no owner, and nothing outside the process can ask it. But a
frame's source can: the `with X:` or `X.acquire()` at the frame's line is the lock being
taken, and the `with` blocks enclosing that line (and earlier `X.acquire()` calls of the same
function not yet released) are locks held. Files are parsed once and cached by path, size and
modification time.
"""

from __future__ import annotations

import ast
import io
import os
import tokenize
from collections import OrderedDict
from dataclasses import dataclass

from numdoctor.core.waits.model import FrameContext, LockSite

_CACHE_SIZE = 256
_MAX_BYTES = 4 * 2**20  # a generated file this large is not where a lock is taken
_TEXT_LIMIT = 200


@dataclass
class _Parsed:
    tree: ast.Module
    lines: list[str]
    scopes: list[ast.AST]  # every function (and the module), for finding a frame's scope


_parsed: OrderedDict[tuple[str, int, int], _Parsed | None] = OrderedDict()


def _parse(path: str) -> _Parsed | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    key = (path, info.st_size, info.st_mtime_ns)
    if key in _parsed:
        _parsed.move_to_end(key)
        return _parsed[key]
    result: _Parsed | None = None
    if info.st_size <= _MAX_BYTES:
        try:
            with open(path, "rb") as fh:
                source = fh.read().decode("utf-8", "replace")
            tree = ast.parse(source, filename=path)
            scopes: list[ast.AST] = [tree]
            scopes += [n for n in ast.walk(tree)
                       if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
            result = _Parsed(tree, source.splitlines(), scopes)
        except (SyntaxError, ValueError, RecursionError):
            result = None
    _parsed[key] = result
    while len(_parsed) > _CACHE_SIZE:
        _parsed.popitem(last=False)
    return result


def _span(node: ast.AST) -> tuple[int, int]:
    start = getattr(node, "lineno", 0)
    return start, getattr(node, "end_lineno", None) or start


def _scope(parsed: _Parsed, line: int, function: str) -> ast.AST:
    """The innermost function containing `line` (preferring one named like the frame)."""
    name = function.rsplit(".", 1)[-1]
    best: ast.AST = parsed.tree
    best_size = None
    for scope in parsed.scopes[1:]:
        start, end = _span(scope)
        if not start <= line <= end:
            continue
        decorators = getattr(scope, "decorator_list", [])
        if decorators:
            start = min([start] + [d.lineno for d in decorators])
        size = end - start
        named = getattr(scope, "name", "<lambda>") == name
        if best_size is None or size < best_size or (size == best_size and named):
            best, best_size = scope, size
    return best


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """Nodes of `scope` without descending into nested functions or classes."""
    found: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:_TEXT_LIMIT]
    except (ValueError, RecursionError):  # pragma: no cover - unparse of a valid tree
        return "?"


def _acquire_untimed(call: ast.Call) -> bool:
    """`X.acquire()` / `X.acquire(True)` block without a timeout; a timeout or
    `blocking=False` does not."""
    if any(k.arg == "timeout" for k in call.keywords):
        return False
    for keyword in call.keywords:
        if keyword.arg == "blocking":
            return isinstance(keyword.value, ast.Constant) and bool(keyword.value.value)
    if len(call.args) >= 2:
        return False
    if call.args:
        first = call.args[0]
        return isinstance(first, ast.Constant) and bool(first.value)
    return True


def _is_acquire(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "acquire")


def _is_release_of(node: ast.AST, expression: str) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "release" and _text(node.func.value) == expression)


def _callee(call: ast.Call) -> str:
    return _text(call.func)


def context(path: str, line: int | None, function: str, *, shown_file: str = "") -> (
        FrameContext | None):
    """The FrameContext of a frame at `path`:`line` in `function`, or None when the source
    cannot be read (a frozen module, a file that changed or vanished)."""
    if line is None or not path:
        return None
    parsed = _parse(path)
    shown = shown_file or path
    if parsed is None or not 0 < line <= len(parsed.lines):
        return None
    scope = _scope(parsed, line, function)
    nodes = _own_nodes(scope)
    result = FrameContext(file=shown, line=line, function=function,
                          text=_without_comment(parsed.lines[line - 1])[:_TEXT_LIMIT])
    name = getattr(scope, "name", "<module>")
    # Calls on this line, outermost first: what the frame is doing ("q.get", "time.sleep").
    here = [n for n in nodes if isinstance(n, ast.Call) and _span(n)[0] <= line <= _span(n)[1]]
    here.sort(key=lambda n: (_span(n)[0], -_span(n)[1], getattr(n, "col_offset", 0)))
    result.calls = [_callee(n) for n in here][:6]
    # Being taken: a `with` item at this line, or an acquire() call at it.
    withs = [n for n in nodes if isinstance(n, (ast.With, ast.AsyncWith))]
    for block in withs:
        for item in block.items:
            start, end = _span(item.context_expr)
            if start <= line <= end and not isinstance(item.context_expr, ast.Call):
                result.acquiring = LockSite(_text(item.context_expr), shown, block.lineno,
                                            name, untimed=True, kind="with")
    if result.acquiring is None:
        for call in here:
            if _is_acquire(call):
                assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                result.acquiring = LockSite(_text(call.func.value), shown, call.lineno, name,
                                            untimed=_acquire_untimed(call), kind="acquire")
                break
    # Held: enclosing `with` blocks (this line in their body), outermost first.
    held: list[LockSite] = []
    for block in sorted(withs, key=lambda b: b.lineno):
        if not block.body:
            continue
        body_start, end = block.body[0].lineno, _span(block)[1]
        if body_start <= line <= end:
            for item in block.items:
                if not isinstance(item.context_expr, ast.Call):
                    held.append(LockSite(_text(item.context_expr), shown, block.lineno, name,
                                         kind="with"))
    # Held: acquire() calls earlier in the function, not released before this line.
    acquires = sorted((n for n in nodes if _is_acquire(n) and _span(n)[1] < line),
                      key=lambda n: _span(n)[0])
    for earlier in acquires:
        assert isinstance(earlier, ast.Call) and isinstance(earlier.func, ast.Attribute)
        expression = _text(earlier.func.value)
        released = any(_is_release_of(n, expression) and earlier.lineno < _span(n)[0] < line
                       for n in nodes)
        if not released:
            held.append(LockSite(expression, shown, earlier.lineno, name, kind="acquire"))
    result.holding = sorted(held, key=lambda s: s.line)
    return result


def _without_comment(line: str) -> str:
    """The source line as code: stripped, without a trailing comment."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return line.strip()
    for token in tokens:
        if token.type == tokenize.COMMENT:
            return line.strip()[:token.start[1]].rstrip()
    return line.strip()


def clear_cache() -> None:
    _parsed.clear()
