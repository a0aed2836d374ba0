"""The sandboxed rendering process: reads JSON requests on stdin, writes JSON answers on stdout.

It runs apart from the app so a hostile or careless template (huge loops, runaway recursion, giant
strings) can be cut off by time (the parent kills it) and memory (an address-space limit set here)
without touching the process that holds the models. It imports nothing but jinja2 and the stdlib.
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
_MAX_POWER = 256


class OutputTooLarge(Exception):
    pass


class _Env(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses arithmetic whose result would be enormous."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, max_chars: int):
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.max_chars = max_chars
        # Globals a prompt has no use for and that only help build state or huge strings.
        for name in ("lipsum", "namespace", "cycler", "joiner"):
            self.globals.pop(name, None)

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_POWER:
            raise SecurityError(f"exponent {right} is larger than {_MAX_POWER}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    if len(seq) * count > self.max_chars:
                        raise OutputTooLarge(f"repetition would make {len(seq) * count:,} items")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's signature
        for value in list(args) + list(kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > __self.max_chars:
                raise OutputTooLarge(f"argument {value:,} is larger than the output limit")
            if isinstance(value, str) and len(value) > __self.max_chars:
                raise OutputTooLarge("an intermediate string passed the output limit")
        return super().call(__context, __obj, *args, **kwargs)


@lru_cache(maxsize=16)
def _env(max_chars: int) -> _Env:
    env = _Env(max_chars)
    for name, func in list(env.filters.items()):
        env.filters[name] = _bounded_filter(func, max_chars)
    return env


def _bounded_filter(func, max_chars):
    # Filters run outside env.call, so their numeric arguments (center(10**9), indent(...)) are
    # checked here, and their results too.
    def wrapper(*args, **kwargs):
        for value in list(args[1:]) + list(kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > max_chars:
                raise OutputTooLarge(f"filter argument {value:,} is larger than the output limit")
        result = func(*args, **kwargs)
        if isinstance(result, str) and len(result) > max_chars:
            raise OutputTooLarge("a filter result passed the output limit")
        return result

    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(wrapper, attr, getattr(func, attr))
    return wrapper


@lru_cache(maxsize=256)
def _compile(source: str, max_chars: int):
    return _env(max_chars).from_string(source)


def _template_line(exc: BaseException) -> int | None:
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_one(source: str, variables: dict, max_chars: int) -> dict:
    """Render one template string; returns {"text": ...} or {"error": kind, "message": ..., "line": n}."""
    try:
        template = _compile(source, max_chars)
        parts, size = [], 0
        for chunk in template.generate(variables):  # a mapping, not keywords: a value named `self` stays a value
            size += len(chunk)
            if size > max_chars:
                raise OutputTooLarge(f"output passed {max_chars:,} characters")
            parts.append(chunk)
        return {"text": "".join(parts)}
    except TemplateSyntaxError as exc:
        return {"error": "syntax", "message": exc.message or str(exc), "line": exc.lineno}
    except UndefinedError as exc:
        return {"error": "undefined", "message": str(exc), "line": _template_line(exc)}
    except SecurityError as exc:
        return {"error": "security", "message": str(exc), "line": _template_line(exc)}
    except RecursionError as exc:
        return {"error": "too_deep", "message": "nested or recursive too deeply (RecursionError)",
                "line": _template_line(exc)}
    except (OutputTooLarge, MemoryError, OverflowError) as exc:
        message = str(exc) if isinstance(exc, OutputTooLarge) else type(exc).__name__
        return {"error": "too_large", "message": message, "line": _template_line(exc)}
    except Exception as exc:  # any other template runtime error is the template's fault, not ours
        return {"error": "runtime", "message": f"{type(exc).__name__}: {exc}", "line": _template_line(exc)}


def main() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # no address-space limit on this platform; the parent's time limit still applies
    sys.setrecursionlimit(400)
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        max_chars = int(request["max_chars"])
        for item in request["items"]:  # one line per item: the parent sees which item a cut-off happened in
            out.write(json.dumps(render_one(item["source"], item["variables"], max_chars)) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
