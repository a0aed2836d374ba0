"""Model specs -> backends, through a registry of backend factories; loaded local models are shared by the
whole process: one copy per model, however its path is spelled (real paths: `x/`, `x//y`, `./x` and symlinks are
one model); an adapter shares its base's weights, and at most settings.max_loaded_adapters adapted models stay
loaded (least recently used freed first).

Built in: the remote backend for `openai:<model>@<base_url or endpoint name>` (see remote/) and the local
transformers backend, which takes every spec no registered prefix claims: `default`, a folder, a `.gguf` file,
a Hub id, `<base>+<adapter dir>` (see local/).

Other backends come from packages through the entry point group `prompt_lab.backends` (as simonw/llm finds its
plugins). Each entry point names a function that gets `register_backend` and registers its prefixes:

    # pyproject.toml of the plugin package
    [project.entry-points."prompt_lab.backends"]
    echo = "prompt_lab_echo:register"

    # prompt_lab_echo.py
    def register(register_backend):
        register_backend("echo:", lambda spec, progress: EchoBackend(spec), help="answers with the prompt")
"""
from __future__ import annotations

import os
import re
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from prompt_lab.access import visitors
from prompt_lab.errors import ModelLoadError
from prompt_lab.models.base import Backend, ModelRef, ProgressFn
from prompt_lab.models.local.loading import DEFAULT_SPEC, base_folder, resolve_local, weights_folder
from prompt_lab.models.remote.endpoints import PREFIX as REMOTE_PREFIX, parse_spec
from prompt_lab.settings import get_settings

__all__ = ["DEFAULT_SPEC", "BackendEntry", "ModelRef", "backend_entry", "base_location", "check_public_model",
           "get_backend", "is_local_spec", "known_prefixes", "load_plugins", "loaded_adapters", "loaded_specs", "register_backend",
           "resolve", "unregister_backend", "using"]

ENTRY_POINT_GROUP = "prompt_lab.backends"
Factory = Callable[[str, "ProgressFn | None"], Backend]
_PREFIX_LIKE = re.compile(r"^[A-Za-z][\w.-]+:")  # `name:` (two letters or more: not a Windows drive)


@dataclass(frozen=True)
class BackendEntry:
    name: str
    match: str | Callable[[str], bool]  # a spec prefix such as "openai:", or a predicate on the spec
    factory: Factory  # factory(spec, progress) -> Backend
    resolver: Callable[[str], ModelRef] | None = None  # spec -> ModelRef without loading (checks the spec)
    local: bool = False  # weights in this process (False: a server answers)
    help: str = ""

    def matches(self, spec: str) -> bool:
        return spec.startswith(self.match) if isinstance(self.match, str) else bool(self.match(spec))


_entries: list[BackendEntry] = []
_entries_lock = threading.RLock()
_plugins_loaded = False


def register_backend(match: str | Callable[[str], bool], factory: Factory, *, name: str | None = None,
                     resolve: Callable[[str], ModelRef] | None = None, local: bool = False, help: str = "") -> None:
    """Send the specs `match` accepts (a prefix like "echo:", or a predicate) to factory(spec, progress).

    Entries are tried in registration order; specs none accepts go to the local transformers backend. A name
    or prefix that is already registered is refused (unregister_backend it first)."""
    if not (isinstance(match, str) and match) and not callable(match):
        raise ValueError("register_backend: match must be a spec prefix such as 'echo:' or a predicate")
    name = name or (match.rstrip(":") if isinstance(match, str) else getattr(match, "__name__", "backend"))
    with _entries_lock:
        for entry in _entries:
            if entry.name == name or (isinstance(match, str) and entry.match == match):
                raise ValueError(f"backend '{name}' ({match if isinstance(match, str) else 'predicate'}): "
                                 f"already registered as '{entry.name}'")
        _entries.append(BackendEntry(name, match, factory, resolve, local, help))


def unregister_backend(name: str) -> None:
    """Remove a registered backend (tests, or a plugin replacing a built-in prefix)."""
    with _entries_lock:
        _entries[:] = [e for e in _entries if e.name != name]


def load_plugins() -> list[str]:
    """Register the backends of the installed packages' `prompt_lab.backends` entry points (once per process);
    returns their names. A plugin that fails to load is reported as a warning and skipped."""
    global _plugins_loaded
    with _entries_lock:
        if _plugins_loaded:
            return []
        _plugins_loaded = True
        loaded = []
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                point.load()(register_backend)
                loaded.append(point.name)
            except Exception as exc:  # a broken plugin must not take the built-in backends down with it
                warnings.warn(f"backend plugin '{point.name}' ({point.value}) could not be loaded: "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)
        return loaded


def known_prefixes() -> list[str]:
    """The spec prefixes of the registered backends, e.g. ['openai:']."""
    load_plugins()
    with _entries_lock:
        return [e.match for e in _entries if isinstance(e.match, str)]


def _known_text() -> str:
    with _entries_lock:
        return "; ".join(f"{e.match if isinstance(e.match, str) else e.name}"
                         + (f" ({e.help})" if e.help else "") for e in _entries)


def backend_entry(spec: str) -> BackendEntry:
    """The registered backend that takes a spec (the local backend when no prefix claims it)."""
    load_plugins()
    spec = (spec or "").strip()
    with _entries_lock:
        for entry in _entries:
            if entry.matches(spec):
                return entry
    return LOCAL


def resolve(spec: str) -> ModelRef:
    """Turn a spec into a ModelRef without loading anything; unknown specs say what was tried."""
    entry = backend_entry(spec)
    spec = (spec or "").strip()
    return entry.resolver(spec) if entry.resolver else ModelRef(spec, entry.name, spec)


def is_local_spec(spec: str) -> bool:
    """Whether a spec's model runs in this process (False: a server answers); nothing is loaded or checked."""
    return backend_entry(spec).local


def get_backend(spec: str, progress: ProgressFn | None = None) -> Backend:
    """The backend for a spec; a local model is loaded on first use and shared (concurrent callers wait)."""
    return backend_entry(spec).factory((spec or "").strip(), progress)


@contextmanager
def using(spec: str, progress: ProgressFn | None = None):
    """get_backend for the length of a block, marked in use meanwhile: when an adapted model must be freed to make
    room, idle ones go first (freeing one in use would free nothing until it is done)."""
    backend = get_backend(spec, progress)
    with _cache_lock:
        key = next((k for k, b in _cache.items() if b is backend), None)
        _in_use[key] = _in_use.get(key, 0) + 1
    try:
        yield backend
    finally:
        with _cache_lock:
            _in_use[key] -= 1
            if not _in_use[key]:
                del _in_use[key]


def base_location(spec: str, progress: ProgressFn | None = None) -> str:
    """The local folder holding a spec's base weights (converting a GGUF first), for training."""
    if backend_entry(spec) is not LOCAL:
        raise ModelLoadError(f"model '{spec}' is remote: tuning needs local weights (a folder, a .gguf, a Hub id "
                             "or 'default')")
    return base_folder(_resolve_local(spec), progress)


# --- the built-in backends ------------------------------------------------------------------------------------
def check_public_model(spec: str) -> None:
    """On a public Space visitors run the models the owner offers (PROMPT_LAB_PUBLIC_MODELS, default: default),
    each optionally with an adapter from one of their own tuning jobs; no other folder, file or Hub id is read."""
    settings = get_settings()
    if not settings.public_mode:
        return
    base, plus, adapter = (spec or "").strip().rpartition("+") if "+" in (spec or "") else (spec, "", "")
    base = base.strip() or "default"
    if base not in settings.public_models:
        raise ModelLoadError(f"this public Space runs the local model{'s' if len(settings.public_models) > 1 else ''} "
                             f"{', '.join(settings.public_models)} (each with your own tuned adapters) and its owner's "
                             "endpoints; other folders, files and Hub ids are not loaded")
    if plus:
        mine = os.path.realpath(visitors.home())
        if not os.path.realpath(os.path.expanduser(adapter.strip())).startswith(mine + os.sep):  # as check_adapter
            raise ModelLoadError("on a public Space an adapter is one of your own tuning jobs' (pick it from the model "
                                 "list); this one is not, so it is not read")


def _resolve_local(spec: str) -> ModelRef:
    check_public_model(spec)
    try:
        return resolve_local(spec, ", ".join(known_prefixes()))
    except ModelLoadError:
        prefix = _PREFIX_LIKE.match(spec or "")
        if prefix and not Path(spec).expanduser().exists():
            raise ModelLoadError(
                f"model '{spec}': no backend is registered for the prefix '{prefix.group(0)}'. Known prefixes: "
                f"{_known_text() or 'none'}. Local models take no prefix: 'default', a folder, a .gguf file or a "
                "Hub id (org/name).") from None
        raise


# Loaded local models, keyed by what they are, not how the spec spelled them: (kind, real path or Hub id, real
# adapter path). Oldest first: adapted models beyond settings.max_loaded_adapters are freed, least recent first.
_cache: OrderedDict[tuple, Backend] = OrderedDict()
_cache_lock = threading.Lock()
_load_locks: dict[tuple, threading.Lock] = {}
_adapted_loading = 0  # adapted models being loaded now: room is made for them before, not after, they load
_in_use: dict[tuple | None, int] = {}  # cache key -> callers holding the model through using()


def _key(ref: ModelRef) -> tuple:
    return ref.kind, ref.location, ref.adapter


def _local_backend(spec: str, progress: ProgressFn | None) -> Backend:
    return _loaded(_resolve_local(spec), progress)


def _loaded(ref: ModelRef, progress: ProgressFn | None) -> Backend:
    """The backend of a resolved local ref, loaded once (concurrent callers wait); an adapter is applied to the
    loaded base, whose weights it shares."""
    global _adapted_loading
    from prompt_lab.models.local.generation import HFBackend

    key = _key(ref)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        lock = _load_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
        base = _loaded(ModelRef(ref.spec.rsplit("+", 1)[0].strip(), ref.kind, ref.location), progress) \
            if ref.adapter else None
        if ref.adapter:  # free the least recent first, so the new one never makes max_loaded_adapters + 1
            with _cache_lock:
                _adapted_loading += 1
                evicted = _over_the_adapter_limit()
            _free(evicted)
        try:
            folder, revision = weights_folder(ref, progress)
            backend = HFBackend(ref.spec, folder, revision, progress=progress, adapter=ref.adapter, base=base)
        finally:
            if ref.adapter:
                with _cache_lock:
                    _adapted_loading -= 1
        with _cache_lock:
            _cache[key] = backend
            evicted = _over_the_adapter_limit()
    if evicted:
        _free(evicted)
    return backend


def _over_the_adapter_limit() -> list[Backend]:
    """Take the least recently used adapted models out of the cache, idle ones first, until at most
    max_loaded_adapters remain, counting those being loaded."""
    limit = max(1, get_settings().max_loaded_adapters)
    adapted = [key for key in _cache if key[2]]
    adapted = [k for k in adapted if k not in _in_use] + [k for k in adapted if k in _in_use]  # idle ones first
    out = []
    for key in adapted[:max(0, len(adapted) + _adapted_loading - limit)]:
        out.append(_cache.pop(key))
        _load_locks.pop(key, None)
    return out


def _free(backends: list[Backend]) -> None:
    """Release evicted models now (a caller still generating with one keeps it until it is done)."""
    import gc

    device = {getattr(b, "device", "cpu") for b in backends}
    backends.clear()
    gc.collect()
    if "cuda" in device:
        from prompt_lab.models.local.loading import lazy_torch

        lazy_torch().cuda.empty_cache()


def _remote_backend(spec: str, progress: ProgressFn | None) -> Backend:
    from prompt_lab.models.remote.client import OpenAIBackend

    return OpenAIBackend(spec)  # nothing to load; a fresh object picks up edits to the endpoints file


def _resolve_remote(spec: str) -> ModelRef:
    endpoint, _ = parse_spec(spec)
    return ModelRef(spec, "openai", endpoint.location)  # the base URL; replicas' URLs joined by commas


LOCAL = BackendEntry("local", lambda spec: True, _local_backend, _resolve_local, local=True,
                     help="transformers: 'default', a folder, a .gguf file, a Hub id, <base>+<adapter dir>")
register_backend(REMOTE_PREFIX, _remote_backend, name="openai", resolve=_resolve_remote,
                 help="an OpenAI-compatible server: openai:<model>@<base_url or endpoint name>")


def loaded_specs() -> list[str]:
    """The specs of the local models loaded in this process (as first spelled), least recently used first."""
    with _cache_lock:
        return [backend.spec for backend in _cache.values()]


def loaded_adapters() -> list[str]:
    """The real paths of the adapters applied to loaded models, least recently used first."""
    with _cache_lock:
        return [key[2] for key in _cache if key[2]]
