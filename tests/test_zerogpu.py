"""On a ZeroGPU Space (the `spaces` package present) every model action asks for the GPU with its own duration,
only once its turn in the fair line has come, and runs as the visitor who asked (ZeroGPU may run it in another
process, so the visitor is passed in, not read from the caller's context)."""
import importlib.machinery
import sys
import types

import pytest

from prompt_lab.access import visitors


@pytest.fixture
def fake_spaces(monkeypatch):
    """A stand-in for the `spaces` package that records each spaces.GPU(duration=...) and runs the function as
    ZeroGPU would run it elsewhere: in a fresh context, so nothing the caller set is visible."""
    import contextvars

    asked = []
    module = types.ModuleType("spaces")
    module.__spec__ = importlib.machinery.ModuleSpec("spaces", None)

    def GPU(duration):  # noqa: N802 - the real name
        asked.append(duration)

        def wrap(fn):
            def elsewhere(*args, **kwargs):
                return contextvars.Context().run(fn, *args, **kwargs)
            return elsewhere
        return wrap

    module.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", module)
    return asked


def test_each_action_asks_for_its_own_gpu_time_and_runs_as_its_visitor(fake_spaces, monkeypatch):
    from prompt_lab.ui.common import GPU_SECONDS, gpu

    monkeypatch.setenv("SPACE_ID", "owner/space")
    fake_spaces.clear()  # importing the UI decorates its own handlers
    seen = []
    wrapped = {action: gpu(action)(lambda: seen.append(visitors.current().key) or "done") for action in GPU_SECONDS}
    assert fake_spaces == [GPU_SECONDS[a] for a in GPU_SECONDS]  # compare 60 s, evaluate 300 s, ...
    assert GPU_SECONDS["compare"] < GPU_SECONDS["evaluate"]
    alice = visitors.Visitor("anon:alice", "alice")
    with visitors.acting_as(alice):
        assert wrapped["compare"]() == "done"
    assert seen == ["anon:alice"]  # not NOBODY, although the fresh context knows no visitor

    def stream():
        yield visitors.current().key
    with visitors.acting_as(alice):
        assert list(gpu("run_again")(stream)()) == ["anon:alice"]


def test_without_the_spaces_package_the_function_is_left_alone(monkeypatch):
    from prompt_lab.ui.common import gpu

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces fails, find_spec says absent

    def fn():
        return 1
    assert gpu("compare")(fn) is fn
