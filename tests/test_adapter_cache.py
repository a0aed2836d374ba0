"""Adapted models in memory, on the tiny model with tiny LoRA adapters made here: one model per adapter however its
folder is spelled (the attack: `x/adapter`, `x/adapter/`, `x//adapter`, `x/./adapter`, a symlink each loaded
another full copy, never freed), adapters share the base's weights, at most max_loaded_adapters stay loaded
(least recently used freed first), and adapter files that link out of their folder or do not parse are refused
by name instead of failing in safetensors."""
import gc
import json
import shutil
import struct
import weakref

import pytest

from prompt_lab.errors import ModelLoadError
from prompt_lab.models import GenerationParams, get_backend


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Three LoRA adapters (q/v, r=4) of the tiny model with random, non-zero weights (each changes the model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folder = tmp_path_factory.mktemp("adapters") / f"adapter{seed}"
        model.save_pretrained(folder)
        folders.append(folder)
    return folders


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def weight_bytes(*models) -> int:
    """Bytes of the distinct tensors (parameters and buffers) the models hold; shared storage counts once."""
    seen = {}
    for model in models:
        for tensor in [*model.parameters(), *model.buffers()]:
            seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def logits(model):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 20, 300, 4000, 50, 7]])).logits


def test_every_spelling_of_an_adapter_folder_is_one_model_sharing_the_base(tiny_model_dir, adapters, home, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, tiny = adapters[0], tiny_model_dir
    link = tmp_path / "link-to-adapter"
    link.symlink_to(adapter, target_is_directory=True)
    spellings = [f"{tiny}+{adapter}", f"{tiny}+{adapter}/", f"{tiny}+{adapter.parent}//{adapter.name}",
                 f"{tiny}+{adapter.parent}/./{adapter.name}", f"{tiny}+{link}", f"{tiny}/+{adapter}/"]
    first = get_backend(spellings[0])
    first.generate(["hi"], GenerationParams(max_new_tokens=2))
    gc.collect()
    before = rss_mb()
    others = [get_backend(spec) for spec in spellings[1:]]
    for backend in others:
        backend.generate(["hi"], GenerationParams(max_new_tokens=2))
    gc.collect()
    grown = rss_mb() - before
    assert all(backend is first for backend in others)
    base = get_backend(str(tiny))
    one_model_mb = weight_bytes(base.model) / 2**20
    assert grown < one_model_mb, (grown, one_model_mb)  # five more copies would add five whole models

    from prompt_lab.models.registry import loaded_adapters

    assert loaded_adapters().count(str(adapter.resolve())) == 1
    # the adapted model owns only the layers the adapter changed (q/v); everything else is the base's memory
    own = weight_bytes(base.model, first.model) - weight_bytes(base.model)
    assert 0 < own < 0.2 * weight_bytes(base.model), (own, weight_bytes(base.model))
    # and it answers exactly as peft's own merge of the adapter into a fresh copy, leaving the base as it was
    fresh_base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), adapter).merge_and_unload().eval()
    assert logits(first.model).allclose(logits(fresh), atol=1e-5)
    assert not logits(first.model).allclose(logits(base.model), atol=1e-3)
    assert logits(base.model).allclose(logits(fresh_base), atol=1e-5)


def test_at_most_max_loaded_adapters_stay_loaded_and_the_least_recent_is_freed(tiny_model_dir, adapters, home,
                                                                             tmp_path, monkeypatch):
    from prompt_lab.models.registry import loaded_adapters
    from prompt_lab.settings import get_settings

    assert get_settings().max_loaded_adapters == 2  # the default
    monkeypatch.setenv("PROMPT_LAB_MAX_ADAPTERS", "2")
    ours = [shutil.copytree(a, tmp_path / f"copy{i}") for i, a in enumerate(adapters)]  # new to this process
    mine = lambda: [p for p in loaded_adapters() if p in {str(a.resolve()) for a in ours}]  # noqa: E731
    models = []
    for adapter in ours:  # N + 1 distinct adapters
        models.append(weakref.ref(get_backend(f"{tiny_model_dir}+{adapter}").model))
    gc.collect()
    assert mine() == [str(ours[1].resolve()), str(ours[2].resolve())]
    assert models[0]() is None and models[1]() is not None and models[2]() is not None  # freed, not just forgotten
    get_backend(f"{tiny_model_dir}+{ours[1]}")  # used again: now the most recent
    get_backend(f"{tiny_model_dir}+{ours[0]}")  # loads again, evicting ours[2], the least recently used
    gc.collect()
    assert mine() == [str(ours[1].resolve()), str(ours[0].resolve())] and models[2]() is None
    monkeypatch.setenv("PROMPT_LAB_MAX_ADAPTERS", "1")
    get_backend(f"{tiny_model_dir}+{ours[2]}")
    assert mine() == [str(ours[2].resolve())]
    assert len(loaded_adapters()) == 1


def malformed_weights(good: bytes) -> dict[str, bytes]:
    header_length = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + header_length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 10**6  # a tensor that runs past the end of the file
    lying = json.dumps(header).encode()
    return {"empty": b"", "text": b"not a safetensors file at all", "huge header": struct.pack("<Q", 2**60) + b"{}",
            "broken header": struct.pack("<Q", 10) + b"{not json}", "truncated": good[: len(good) // 2],
            "offsets past the end": struct.pack("<Q", len(lying)) + lying + good[8 + header_length:]}


def test_malformed_adapter_weights_are_refused_by_name_not_with_a_safetensor_error(tiny_model_dir, adapters, home,
                                                                                  tmp_path):
    good = (adapters[0] / "adapter_model.safetensors").read_bytes()
    for label, data in malformed_weights(good).items():
        folder = shutil.copytree(adapters[0], tmp_path / label.replace(" ", "-"))
        (folder / "adapter_model.safetensors").write_bytes(data)
        with pytest.raises(ModelLoadError, match=rf"adapter file {folder}/adapter_model.safetensors is not a valid "
                                                 r"safetensors file \("):
            get_backend(f"{tiny_model_dir}+{folder}")
    folder = shutil.copytree(adapters[0], tmp_path / "bad-config")
    (folder / "adapter_config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match=rf"adapter file {folder}/adapter_config.json is not a PEFT adapter "
                                             r"config \(JSONDecodeError"):
        get_backend(f"{tiny_model_dir}+{folder}")


def test_adapter_files_that_link_out_of_their_folder_are_refused_without_saying_where(tiny_model_dir, adapters,
                                                                                      home, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        folder = shutil.copytree(adapters[0], tmp_path / f"linked-{name}")
        target = outside / f"real-{name}"
        shutil.move(folder / name, target)
        (folder / name).symlink_to(target)
        with pytest.raises(ModelLoadError, match=rf"adapter file {folder}/{name} is a link to a file outside the "
                                                 r"adapter folder") as refused:
            get_backend(f"{tiny_model_dir}+{folder}")
        assert str(outside) not in str(refused.value)
    inside = shutil.copytree(adapters[0], tmp_path / "linked-inside")  # a link within the folder is fine
    shutil.move(inside / "adapter_model.safetensors", inside / "weights.safetensors")
    (inside / "adapter_model.safetensors").symlink_to("weights.safetensors")
    assert get_backend(f"{tiny_model_dir}+{inside}").adapter == str(inside.resolve())


def test_a_compare_over_more_adapters_than_the_cap_holds_at_most_the_cap_at_a_time(tiny_model_dir, adapters, home,
                                                                                  tmp_path, monkeypatch):
    """The attack: one compare naming N adapted models loaded all N at once and kept them until it ended, whatever
    max_loaded_adapters said. Counted while tokens are generated: the adapted models alive in the process (the
    registry's and any the compare still holds), never more than the cap; and the answers are those of a compare
    allowed to hold all three."""
    from prompt_lab.compare import compare
    from prompt_lab.models.local.generation import HFBackend
    from prompt_lab.models.registry import loaded_adapters

    ours = [shutil.copytree(a, tmp_path / f"compared{i}") for i, a in enumerate(adapters)]  # new to this process
    real = {str(a.resolve()) for a in ours}
    specs = [f"{tiny_model_dir}+{a}" for a in ours]

    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, HFBackend) and o.adapter in real)

    def run(cap: int):
        monkeypatch.setenv("PROMPT_LAB_MAX_ADAPTERS", str(cap))
        seen = []
        result = compare("sentiment", {"review": "Fine."}, strategies=["zero_shot", "cot"], models=specs,
                         params=GenerationParams(max_new_tokens=8),
                         progress=lambda fraction, message: seen.append(alive()) if message.startswith("generating")
                         else None)
        assert not result.errors and len(result.outputs) == 6
        return {(o.model, o.strategy): (o.prompt, [g.text for g in o.generations]) for o in result.outputs}, seen

    one_at_a_time, seen = run(1)
    assert seen and max(seen) == 1, seen
    assert len([p for p in loaded_adapters() if p in real]) == 1
    two_at_a_time, seen = run(2)
    assert seen and max(seen) <= 2, seen
    all_at_once, seen = run(3)
    assert one_at_a_time == two_at_a_time == all_at_once
    assert len({texts[0] for _, texts in all_at_once.values()}) > 1  # the adapters do answer differently


def test_making_room_frees_an_idle_adapted_model_before_one_in_use(tiny_model_dir, adapters, home, tmp_path,
                                                                  monkeypatch):
    """Room for a new adapted model is made before it loads (never cap + 1 alive), and from the idle models: the
    least recent one may still be generating for someone, and evicting it would free nothing."""
    from prompt_lab.models.registry import loaded_adapters, using

    monkeypatch.setenv("PROMPT_LAB_MAX_ADAPTERS", "2")
    ours = [shutil.copytree(a, tmp_path / f"room{i}") for i, a in enumerate(adapters)]
    mine = lambda: [p for p in loaded_adapters() if p in {str(a.resolve()) for a in ours}]  # noqa: E731
    with using(f"{tiny_model_dir}+{ours[0]}") as held:  # the least recent, but in use
        idle = weakref.ref(get_backend(f"{tiny_model_dir}+{ours[1]}").model)
        at_load = []  # whether the idle model was still alive when the new one had loaded, before it was cached
        get_backend(f"{tiny_model_dir}+{ours[2]}", lambda fraction, message: at_load.append(
            gc.collect() >= 0 and idle() is not None) if message.startswith("Loaded") else None)
        gc.collect()
        assert mine() == [str(ours[0].resolve()), str(ours[2].resolve())] and idle() is None
        assert at_load == [False]
        assert held.generate(["hi"], GenerationParams(max_new_tokens=2))[0][0].completion_tokens > 0
