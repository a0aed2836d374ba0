"""Sandboxed rendering: the worker's answers (render_one, run in this process so every bound is checked here) and
the parent's handling of a worker that answers, dies, hangs or never starts."""
import io
import json
import os
import sys
from pathlib import Path

import pytest

from prompt_lab.prompts import render_worker

from prompt_lab.prompts import rendering
from prompt_lab.prompts.render_worker import render_one
from prompt_lab.prompts.rendering import RenderFailure

# --- the worker: what a template renders to, and the error a user reads ---------------------------------------------


@pytest.mark.parametrize("source, variables, text", [
    ("Hello {{ name }}!", {"name": "Ann"}, "Hello Ann!"),
    ("{{ v }}", {"v": "<b>&</b>"}, "<b>&</b>"),  # prompts are not HTML: nothing is escaped
    ("one line\n", {}, "one line"),  # a template's trailing newline is dropped
    ("{{ range(3)|list }} {{ dict(a=1) }}", {}, "[0, 1, 2] {'a': 1}"),  # the globals the sandbox keeps
    ("{{ 2 ** 256 }}", {}, str(2 ** 256)),  # the largest exponent allowed
    ("{{ 'ab' * 50 }}", {}, "ab" * 50),  # repetition up to the output limit
    ("{{ (2 * ('ab', 'cd') * 25)|length }} {{ ([1] * 100)|length }}", {}, "100 100"),
    ("{{ 'ab'|center(100) }}", {}, "ab".center(100)),  # a filter argument up to the output limit
    ("{{ 1000|string }}", {}, "1000"),  # the filtered value itself is not an argument
    ("{{ [1, 2, 3]|sum }} {{ ['a', 'b']|map('upper')|join(',') }}", {}, "6 A,B"),  # filters that take the context
    ("{% for i in range(20) %}abcde{% endfor %}", {}, "abcde" * 20),  # output up to the limit
])
def test_render_one_renders_within_the_bounds(source, variables, text):
    assert render_one(source, variables, 100) == {"text": text}


@pytest.mark.parametrize("source, variables, error, message, line", [
    ("{{ x }", {}, "syntax", "unexpected '}'", 1),
    ("a\n{% if %}", {}, "syntax", "Expected an expression, got 'end of statement block'", 2),
    ("a\n{{ missing }}", {}, "undefined", "'missing' is undefined", 2),
    ("{{ lipsum }}", {}, "undefined", "'lipsum' is undefined", 1),
    ("{{ namespace }}", {}, "undefined", "'namespace' is undefined", 1),
    ("{{ cycler }}", {}, "undefined", "'cycler' is undefined", 1),
    ("\n{{ joiner }}", {}, "undefined", "'joiner' is undefined", 2),
    ("{{ ''.__class__ }}", {}, "security", "access to attribute '__class__' of 'str' object is unsafe.", 1),
    ("a\n{% set l = [1] %}{{ l.append(2) }}", {}, "security",
     "access to attribute 'append' of 'list' object is unsafe.", 2),
    ("{{ 2 ** 257 }}", {}, "security", "exponent 257 is larger than 256", 1),
    ("{{ 2 ** -257 }}", {}, "security", "exponent -257 is larger than 256", 1),
    ("{{ 2 ** 256.5 }}", {}, "security", "exponent 256.5 is larger than 256", 1),
    ("{{ 'ab' * 501 }}", {}, "too_large", "repetition would make 1,002 items", 1),
    ("\n\n{{ 501 * 'ab' }}", {}, "too_large", "repetition would make 1,002 items", 3),
    ("{{ [1, 2] * 501 }}", {}, "too_large", "repetition would make 1,002 items", 1),
    ("{{ ('a', 'b') * 501 }}", {}, "too_large", "repetition would make 1,002 items", 1),
    ("{{ range(1001)|list|length }}", {}, "too_large", "argument 1,001 is larger than the output limit", 1),
    ("{{ 'ab'.replace('a', v) }}", {"v": "x" * 1001}, "too_large",
     "an intermediate string passed the output limit", 1),
    ("{{ dict(a=v) }}", {"v": "x" * 1001}, "too_large", "an intermediate string passed the output limit", 1),
    ("{{ dict(a=1001) }}", {}, "too_large", "argument 1,001 is larger than the output limit", 1),
    ("{{ 'ab'|center(1001) }}", {}, "too_large", "filter argument 1,001 is larger than the output limit", 1),
    ("{{ 'ab'|indent(width=1001) }}", {}, "too_large", "filter argument 1,001 is larger than the output limit", 1),
    ("{{ v|upper }}", {"v": "x" * 1001}, "too_large", "a filter result passed the output limit", 1),
    ("{% for i in range(201) %}abcde{% endfor %}", {}, "too_large", "output passed 1,000 characters", None),
    ("{{ 1e200 ** 2 }}", {}, "too_large", "OverflowError", 1),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", {}, "too_deep",
     "nested or recursive too deeply (RecursionError)", 1),
    ("a\nb\n{{ 1 / 0 }}", {}, "runtime", "ZeroDivisionError: division by zero", 3),
])
def test_render_one_names_the_error_and_its_line(source, variables, error, message, line):
    assert render_one(source, variables, 1000) == {"error": error, "message": message, "line": line}


def test_booleans_are_not_sizes():
    # true is 1 as a number, but never checked as a size: a limit of 0 still lets it through
    assert render_one("{{ 'x'|indent(true) }}", {}, 5) == {"text": "x"}
    assert render_one("{{ [true]|first }}", {}, 0) == {"error": "too_large", "message": "output passed 0 characters",
                                                       "line": None}


class _Stdout(io.StringIO):
    """A stdout that remembers what had been written each time it was flushed."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue())


def _run_main(monkeypatch, requests):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(r) + "\n" for r in requests)))
    out = _Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    limits = []
    monkeypatch.setattr(sys, "setrecursionlimit", limits.append)  # keep this process's own limit
    render_worker.main()
    return out, limits


def test_worker_main_answers_each_item_on_its_own_flushed_line(monkeypatch):
    import resource

    calls = []
    monkeypatch.setattr(resource, "setrlimit", lambda *args: calls.append(args))
    out, limits = _run_main(monkeypatch, [
        {"items": [{"source": "Hi {{ n }}", "variables": {"n": "Ann"}}, {"source": "{{ x }", "variables": {}}],
         "max_chars": "50"},
        {"items": [{"source": "{{ 'ab' * 30 }}", "variables": {}}], "max_chars": 50},
    ])
    # one line per item, flushed at once: a render cut off later still names the item it was on
    first = json.dumps({"text": "Hi Ann"}) + "\n"
    second = json.dumps({"error": "syntax", "message": "unexpected '}'", "line": 1}) + "\n"
    third = json.dumps({"error": "too_large", "message": "repetition would make 60 items", "line": 1}) + "\n"
    assert out.getvalue() == first + second + third
    assert out.flushed == [first, first + second, first + second + third]
    # a 1 GiB address-space limit and a recursion limit of 400
    assert calls == [(resource.RLIMIT_AS, (1024 ** 3, 1024 ** 3))]
    assert limits == [400]


@pytest.mark.parametrize("failure", [ValueError, OSError, ImportError])
def test_worker_main_serves_where_no_memory_limit_can_be_set(monkeypatch, failure):
    if failure is ImportError:
        monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` fails
    else:
        import resource

        def refuse(*args):
            raise failure("not on this platform")

        monkeypatch.setattr(resource, "setrlimit", refuse)
    out, limits = _run_main(monkeypatch, [{"items": [{"source": "{{ 6 * 7 }}", "variables": {}}], "max_chars": 9}])
    assert out.getvalue() == '{"text": "42"}\n'
    assert limits == [400]


# --- the parent: a worker that answers, dies, hangs or never starts -------------------------------------------------

@pytest.fixture
def worker():
    w = rendering._Worker()
    yield w
    w.close()


def test_worker_answers_texts_and_failures_and_is_restarted_after_dying(worker):
    items = [{"source": "Hi {{ n }}", "variables": {"n": "Ann"}}, {"source": "a\n{{ nope }}", "variables": {}}]
    expected = ["Hi Ann", RenderFailure("undefined", "'nope' is undefined", 2)]
    assert worker.render(items, 100, 10) == expected
    worker._proc.kill()
    worker._proc.wait()
    assert worker.render(items, 100, 10) == expected  # a fresh worker


def test_worker_output_does_not_reach_the_app_console(worker):
    worker.render([{"source": "x", "variables": {}}], 10, 10)
    fd = Path(f"/proc/{worker._proc.pid}/fd/2")
    if not fd.parent.exists():
        pytest.skip("no /proc on this platform")
    assert os.readlink(fd) == os.devnull


def test_closing_the_worker_ends_its_process(worker):
    worker.render([{"source": "x", "variables": {}}], 10, 10)
    proc = worker._proc
    worker.close()
    assert proc.poll() is not None and worker._proc is None


def _script(tmp_path, monkeypatch, code):
    script = tmp_path / "fake_worker.py"
    script.write_text(code)
    monkeypatch.setattr(rendering, "_WORKER_SCRIPT", script)


def test_a_worker_that_dies_mid_render_reads_as_out_of_memory(worker, tmp_path, monkeypatch):
    _script(tmp_path, monkeypatch, "import sys\nsys.stdin.readline()\n")  # reads the request, exits unanswered
    items = [{"source": "x", "variables": {}}] * 2
    assert worker.render(items, 10, 10) == [
        RenderFailure("too_large", "rendering ran out of its memory limit and was cut off")] * 2
    assert worker._proc is None


def test_a_value_named_like_a_render_argument_stays_a_value():
    # before: generate(**variables) took `self` as its own argument ("got multiple values for argument 'self'");
    # in a template `self` is Jinja's own, which is why parse_template refuses it as a variable name
    assert render_one("{{ source }}", {"self": "me", "source": "src"}, 100) == {"text": "src"}


def test_a_cut_off_fails_the_item_it_happened_in_and_keeps_the_answers_before_it(worker, tmp_path, monkeypatch):
    _script(tmp_path, monkeypatch, "import sys, time\nsys.stdin.readline()\n"
                                   "sys.stdout.write('{\"text\": \"a\"}\\n{\"text\": \"b\"}\\n')\n"
                                   "sys.stdout.flush()\ntime.sleep(60)\n")
    timeout = RenderFailure("timeout", "rendering took longer than 0.5 s and was cut off")
    assert worker.render([{"source": "x", "variables": {}}] * 4, 10, 0.5) == ["a", "b", timeout, timeout]
    _script(tmp_path, monkeypatch, "import sys\nsys.stdin.readline()\nsys.stdout.write('{\"text\": \"a\"}\\n')\n")
    assert worker.render([{"source": "x", "variables": {}}] * 2, 10, 10) == [
        "a", RenderFailure("too_large", "rendering ran out of its memory limit and was cut off")]


def test_the_worker_reads_answers_that_arrive_together_or_in_pieces(worker, tmp_path, monkeypatch):
    # two answers in one write: a buffered readline would have swallowed the second and waited for the clock
    _script(tmp_path, monkeypatch, "import sys, time\nfor line in sys.stdin:\n"
                                   "    sys.stdout.write('{\"text\": \"a\"}\\n{\"te')\n    sys.stdout.flush()\n"
                                   "    time.sleep(0.2)\n    sys.stdout.write('xt\": \"b\"}\\n')\n"
                                   "    sys.stdout.flush()\n")
    assert worker.render([{"source": "x", "variables": {}}] * 2, 10, 5) == ["a", "b"]
    assert worker.render([{"source": "x", "variables": {}}] * 2, 10, 5) == ["a", "b"]


def test_a_worker_that_hangs_is_cut_off_at_the_time_bound(worker, tmp_path, monkeypatch):
    _script(tmp_path, monkeypatch, "import sys, time\nsys.stdin.readline()\ntime.sleep(60)\n")
    assert worker.render([{"source": "x", "variables": {}}], 10, 0.3) == [
        RenderFailure("timeout", "rendering took longer than 0.3 s and was cut off")]
    assert worker._proc is None


def test_a_worker_that_cannot_start_fails_every_item(worker, tmp_path, monkeypatch):
    _script(tmp_path, monkeypatch, "")  # exits at once: writing the request finds no reader
    start = rendering._Worker._start
    started = []

    def start_and_exit(self):
        proc = start(self)
        proc.wait()
        started.append(proc)
        return proc

    monkeypatch.setattr(rendering._Worker, "_start", start_and_exit)
    assert worker.render([{"source": "x", "variables": {}}] * 2, 10, 10) == [
        RenderFailure("runtime", "the rendering process could not be started")] * 2
    assert len(started) == 2  # one retry


def test_render_strings_uses_the_settings_and_given_bounds(home, monkeypatch):
    assert rendering.render_strings([]) == []
    assert rendering.render_strings([("{{ a }}-{{ b }}", {"a": 1, "b": "x"})]) == ["1-x"]
    assert rendering.render_strings([("{{ 'x' * 11 }}", {})], max_chars=10) == [
        RenderFailure("too_large", "repetition would make 11 items", 1)]


# ---------------------------------------------------------------- sandbox edges a template author can reach


@pytest.mark.parametrize("name", ["lipsum", "namespace", "cycler", "joiner"])
def test_globals_that_build_state_or_text_are_gone(name):
    found = render_one(f"{{{{ {name}() }}}}", {}, 1000)
    assert found["error"] in ("undefined", "runtime") and name in found["message"]


def test_a_filter_number_argument_above_the_limit_is_refused_even_with_a_small_result():
    assert render_one("{{ 'a'|truncate(1000000) }}", {}, 100) == {
        "error": "too_large", "message": "filter argument 1,000,000 is larger than the output limit", "line": 1}


def test_filter_keyword_arguments_are_passed_and_checked():
    assert render_one("[{{ 'a'|center(width=5) }}]", {}, 100) == {"text": "[  a  ]"}
    assert render_one("{{ 'a'|center(width=101) }}", {}, 100)["error"] == "too_large"


def test_bounds_are_inclusive_at_the_limit():
    assert render_one("{{ 'a'|center(20) }}", {}, 20) == {"text": " " * 9 + "a" + " " * 10}
    assert render_one("{{ range(20)|length }}", {}, 20) == {"text": "20"}
    assert render_one("{{ v.startswith(v) }}", {"v": "x" * 20}, 20) == {"text": "True"}
    assert render_one("{{ v.startswith(v) }}", {"v": "x" * 21}, 20) == {
        "error": "too_large", "message": "an intermediate string passed the output limit", "line": 1}


def test_a_filter_result_past_the_limit_names_what_happened():
    found = render_one("{{ v|replace('x', 'xx') }}", {"v": "x" * 15}, 20)
    assert found == {"error": "too_large", "message": "a filter result passed the output limit", "line": 1}


def test_a_runtime_error_names_the_line_it_happened_on():
    found = render_one("first\nsecond {{ missing }}", {}, 100)
    assert (found["error"], found["line"]) == ("undefined", 2)


@pytest.mark.parametrize("source, names", [
    ("{% set x = 1 %}{{ x }}{{ y }}", {"y"}),
    ("{% for a in items %}{{ loop.index }}{{ a }}{% endfor %}", {"items"}),
    ("{% macro m(p) %}{{ p }}{{ caller() }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ q }}", {"q"}),
])
def test_template_variables_leave_out_what_the_template_sets_itself(source, names):
    from prompt_lab.prompts.rendering import template_variables

    assert template_variables(source) == names


def test_the_worker_process_is_reused_between_renders(home):
    from prompt_lab.prompts import rendering

    rendering.render_strings([("{{ a }}", {"a": "1"})])
    first = rendering._worker._proc.pid
    rendering.render_strings([("{{ a }}", {"a": "2"})])
    assert rendering._worker._proc.pid == first


@pytest.fixture(autouse=True)
def fresh_sandbox_caches():
    """Each test builds its own sandbox environment: the module caches one per size bound, which would otherwise
    let a test pass on an environment an earlier test built (and hide which tests reach its set-up)."""
    render_worker._env.cache_clear()
    render_worker._compile.cache_clear()
    yield
