"""The backend registry: specs resolve through registered factories (built-ins, the registry API, entry
points); what a backend can do is asked of it, not read from its class. No model is loaded here."""
import threading
import warnings

import pytest

from prompt_lab.errors import ModelLoadError, PromptLabError
from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models import registry
from prompt_lab.models.base import Backend, Generation, StreamEvent
from prompt_lab.settings import get_settings, secret_from_env


class EchoBackend:
    """A real, tiny backend: answers with the last line of the prompt, scores choices by their length."""

    device = "cpu"
    is_local = True
    can_tune = False

    def __init__(self, spec: str):
        self.spec, self.revision = spec, "echo-1"

    def format_prompt(self, prompt) -> str:
        return prompt.as_raw_text()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _answer(self, text: str, params: GenerationParams, index: int) -> Generation:
        words = text.strip().splitlines()[-1].split()[: params.max_new_tokens] if text.strip() else []
        return Generation(" ".join(words), self.count_tokens(text), len(words), 1.0, "eos", index)

    def generate(self, texts, params, *, progress=None, cancel=None, on_partial=None):
        return [[self._answer(t, params, i) for i in range(params.n)] for t in texts]

    def stream(self, text, params, *, cancel=None):
        generation = self._answer(text, params, 0)
        yield StreamEvent(generation.text[:1])
        yield StreamEvent(generation.text, generation)

    def score_choices(self, texts, choices, *, cancel=None):
        return [[-float(len(c)) for c in item] for item in choices]


@pytest.fixture
def echo():
    registry.register_backend("echo:", lambda spec, progress: EchoBackend(spec), local=True,
                              help="answers with the prompt's last line")
    yield
    registry.unregister_backend("echo")


def test_a_registered_backend_resolves_by_its_prefix_and_runs(echo, home):
    backend = get_backend("echo:anything")
    assert isinstance(backend, EchoBackend) and isinstance(backend, Backend)
    assert resolve(" echo:anything ").kind == "echo" and registry.is_local_spec("echo:x")
    (gen,), = backend.generate(["say\nhello there"], GenerationParams(max_new_tokens=1))
    assert gen.text == "hello"
    assert [e.text for e in backend.stream("a\nb c", GenerationParams())] == ["b", "b c"]
    assert backend.score_choices(["x"], [["yes", "no"]]) == [[-3.0, -2.0]]
    assert "echo:" in registry.known_prefixes() and "openai:" in registry.known_prefixes()

    from prompt_lab.compare import compare  # the same entry point the UI and the CLI use

    result = compare("sentiment", {"review": "fine"}, strategies=["zero_shot"], models="echo:x",
                     params=GenerationParams(max_new_tokens=4))
    assert result.outputs[0].generations[0].text and not result.cancelled


def test_a_registered_prefix_or_name_cannot_be_taken_twice(echo):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backend("echo:", lambda spec, progress: EchoBackend(spec))
    with pytest.raises(ValueError, match="already registered as 'openai'"):
        registry.register_backend("openai:", lambda spec, progress: EchoBackend(spec))


def test_an_unknown_prefix_lists_the_known_ones(echo, home):
    with pytest.raises(ModelLoadError, match=r"model 'nope:x': no backend is registered for the prefix 'nope:'\. "
                                             r"Known prefixes: openai: \(.*\); echo: \(answers with"):
        get_backend("nope:x")
    with pytest.raises(ModelLoadError, match=r"not a Hub id.*or a spec starting with a backend prefix "
                                             r"\(openai:, echo:\)"):
        resolve("not a model")


def test_built_in_backends_say_what_they_can_do(home):
    from prompt_lab.models.remote.client import OpenAIBackend

    remote = get_backend("openai:m@http://127.0.0.1:9/v1")  # nothing is contacted until a request
    assert isinstance(remote, OpenAIBackend) and isinstance(remote, Backend)
    assert (remote.is_local, remote.can_tune) == (False, False)
    assert not registry.is_local_spec(" openai:m@http://127.0.0.1:9/v1")
    assert registry.is_local_spec("default") and registry.is_local_spec("./some/folder")
    assert resolve("openai:m@http://127.0.0.1:9").location == "http://127.0.0.1:9/v1"
    with pytest.raises(ModelLoadError, match="label probabilities need the model's own forward pass"):
        remote.score_choices(["x"], [["a"]])
    with pytest.raises(ModelLoadError, match="is remote: tuning needs local weights"):
        registry.base_location("openai:m@http://127.0.0.1:9/v1")


def test_backends_of_installed_packages_are_found_through_entry_points(tmp_path, monkeypatch, home):
    """A real distribution on sys.path whose entry point registers a backend, the way a plugin package would."""
    (tmp_path / "prompt_lab_echo_plugin.py").write_text(
        "def register(register_backend):\n"
        "    register_backend('plugged:', lambda spec, progress: Plugged(spec), help='from a plugin')\n\n"
        "class Plugged:\n"
        "    device, is_local, can_tune, revision = 'cpu', True, False, 'p'\n"
        "    def __init__(self, spec):\n"
        "        self.spec = spec\n")
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency')\n")
    info = tmp_path / "prompt_lab_echo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prompt-lab-echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prompt_lab.backends]\nplugged = prompt_lab_echo_plugin:register\n"
                                           "broken = broken_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert get_backend("plugged:x").spec == "plugged:x"
        assert any("backend plugin 'broken'" in str(w.message) and "missing dependency" in str(w.message)
                   for w in caught)  # a broken plugin is reported and skipped; the others still work
        assert registry.load_plugins() == []  # once per process
        assert resolve("default").kind in ("gguf", "hub")
    finally:
        registry.unregister_backend("plugged")


def test_generation_params_declare_their_fields_and_validate_types(monkeypatch):
    from prompt_lab.specs import spec_help

    assert [f.name for f in spec_help(GenerationParams)] == ["temperature", "top_p", "max_new_tokens", "stop", "seed",
                                                            "n"]
    assert all(f.help for f in spec_help(GenerationParams))
    assert GenerationParams(temperature=1, stop=["\n"]).validate() == GenerationParams(temperature=1, stop=["\n"])
    for bad, message in ((dict(max_new_tokens="5"), "field 'max_new_tokens': must be a whole number, got '5'"),
                         (dict(temperature="hot"), "field 'temperature': must be a number, got 'hot'"),
                         (dict(stop="\n"), "field 'stop': must be a list"),
                         (dict(stop=[1]), "field 'stop': each value must be text, got 1"),
                         (dict(n=True), "field 'n': must be a whole number, got True")):
        with pytest.raises(PromptLabError, match=message):
            GenerationParams(**bad).validate()
    # out-of-range values (from UI sliders or the API) are still clamped, with a warning each
    monkeypatch.setenv("PROMPT_LAB_MAX_SAMPLES", "4")
    params, warned = GenerationParams(temperature=-1, top_p=0, n=9, stop=["", "x"]).clamped(get_settings())
    assert (params.temperature, params.top_p, params.n, params.stop) == (0.0, 1.0, 4, ["x"]) and len(warned) == 3


def test_endpoint_fields_have_help_and_settings_hold_the_environment(monkeypatch, tmp_path):
    from prompt_lab.models.remote.endpoints import Endpoint, endpoints_file
    from prompt_lab.specs import spec_help

    assert all(f.help for f in spec_help(Endpoint))
    monkeypatch.setenv("PROMPT_LAB_HOME", str(tmp_path))
    monkeypatch.delenv("PROMPT_LAB_ENDPOINTS", raising=False)
    assert endpoints_file() == tmp_path / "endpoints.yaml"
    monkeypatch.setenv("PROMPT_LAB_ENDPOINTS", str(tmp_path / "other.yaml"))
    assert endpoints_file() == get_settings().endpoints_file == tmp_path / "other.yaml"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert get_settings().hf_offline
    monkeypatch.setenv("SOME_KEY", "  sk-abc  ")
    monkeypatch.delenv("OTHER_KEY", raising=False)
    assert (secret_from_env("SOME_KEY"), secret_from_env("OTHER_KEY")) == ("sk-abc", "")
    assert Endpoint("e", "http://h/v1", api_key_env="SOME_KEY").api_key() == "sk-abc"
    assert "sk-abc" not in repr(get_settings())


def test_concurrent_lookups_see_one_registry():
    found = []
    threads = [threading.Thread(target=lambda: found.append(registry.backend_entry("openai:m@x").name))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == ["openai"] * 8
