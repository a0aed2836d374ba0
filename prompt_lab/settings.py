"""Runtime settings: data dir, server-side caps, public (hosted Space) mode.

Everything is read from the environment so the CLI, the app and the tests agree without a config file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    home: Path = field(metadata={"help": "Data dir: run log, model cache, user templates (PROMPT_LAB_HOME)."})
    max_new_tokens_cap: int = field(default=512, metadata={"help": "Server-side cap on generated tokens."})
    max_generation_seconds: float = field(default=120.0, metadata={"help": "Wall-clock cap on one generate call."})
    max_batch_prompts: int = field(default=64, metadata={"help": "Most prompts one generate call takes."})
    max_samples: int = field(default=16, metadata={"help": "Most samples (n) per prompt."})
    max_upload_bytes: int = field(default=20 * 1024 * 1024, metadata={"help": "Largest uploaded file."})
    max_rows: int = field(default=20_000, metadata={"help": "Most dataset rows."})
    max_cell_chars: int = field(default=20_000, metadata={"help": "Longest dataset cell / variable value."})
    render_seconds: float = field(default=2.0, metadata={"help": "Time bound on rendering one template."})
    render_max_chars: int = field(default=200_000, metadata={"help": "Size bound on one rendered prompt."})
    max_template_bytes: int = field(default=64 * 1024, metadata={
        "help": "Largest template or other YAML file (spec, variables, endpoints) read, in bytes of UTF-8; YAML "
                "aliases may repeat at most this much text too (PROMPT_LAB_MAX_TEMPLATE_BYTES)."})
    public_mode: bool = field(default=False, metadata={"help": "True on a hosted Space (SPACE_ID set)."})
    allow_training: bool = field(default=False, metadata={
        "help": "On a public Space, allow short tunes (PROMPT_LAB_ALLOW_TRAINING=1); elsewhere training is on."})
    public_max_steps: int = field(default=50, metadata={
        "help": "On a public Space, most training steps per job (PROMPT_LAB_PUBLIC_MAX_STEPS)."})
    endpoints_file: Path | None = field(default=None, metadata={
        "help": "Named remote endpoints file (PROMPT_LAB_ENDPOINTS); None means <home>/endpoints.yaml."})
    hf_offline: bool = field(default=False, metadata={
        "help": "The Hugging Face Hub is switched off (HF_HUB_OFFLINE=1): Hub models load from its cache only."})
    host: str = field(default="127.0.0.1", metadata={
        "help": "Address the app serves on (PROMPT_LAB_HOST, else a Space's GRADIO_SERVER_NAME)."})
    port: int = field(default=7860, metadata={"help": "Port the app serves on (PROMPT_LAB_PORT, else GRADIO_SERVER_PORT)."})
    max_loaded_adapters: int = field(default=2, metadata={
        "help": "Most adapted models (<base>+<adapter dir>) kept in memory at once; the least recently used one is "
                "freed to load another (PROMPT_LAB_MAX_ADAPTERS)."})
    admins: tuple[str, ...] = field(default=(), metadata={
        "help": "On a public Space, the Hugging Face users who see every visitor's runs and jobs: the Space's "
                "author (SPACE_AUTHOR_NAME) and the comma-separated names in PROMPT_LAB_ADMINS."})
    oauth: bool = field(default=False, metadata={
        "help": "Sign-in with Hugging Face is offered: a Space with `hf_oauth: true` (Spaces then set "
                "OAUTH_CLIENT_ID)."})
    public_models: tuple[str, ...] = field(default=("default",), metadata={
        "help": "On a public Space, the local models visitors may run, besides the owner's endpoints and their own "
                "tuned adapters (PROMPT_LAB_PUBLIC_MODELS, comma-separated; default: default)."})
    max_waiting: int = field(default=16, metadata={
        "help": "Most model actions (compare, evaluate, run again) waiting for the model at once, all visitors "
                "together; more are refused with a time to retry (PROMPT_LAB_MAX_WAITING)."})
    max_queued_per_visitor: int = field(default=0, metadata={
        "help": "Most model actions one visitor may have waiting or running; 0 = no limit (local default; 2 on a "
                "public Space) (PROMPT_LAB_MAX_QUEUED_PER_VISITOR)."})
    actions_per_minute: int = field(default=0, metadata={
        "help": "Most model actions one visitor may start per minute; 0 = no limit (local default; 6 on a public "
                "Space) (PROMPT_LAB_ACTIONS_PER_MINUTE)."})
    saves_per_minute: int = field(default=0, metadata={
        "help": "Most saves (templates, tune jobs) one visitor may make per minute; 0 = no limit (local default; "
                "10 on a public Space) (PROMPT_LAB_SAVES_PER_MINUTE)."})
    max_templates_per_visitor: int = field(default=100, metadata={
        "help": "On a public Space, most templates one visitor may keep (PROMPT_LAB_MAX_TEMPLATES_PER_VISITOR)."})

    @property
    def db_path(self) -> Path:
        return self.home / "runs.db"

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"

    @property
    def user_templates_dir(self) -> Path:
        return self.home / "templates"


SPACE_STORAGE = Path("/data")  # a Space's persistent storage, when the Space has it


def default_home(on_space: bool, storage: Path = SPACE_STORAGE) -> Path:
    """Where data lives without PROMPT_LAB_HOME: on a Space with persistent storage, /data/prompt_lab (it survives
    restarts); elsewhere ~/.prompt_lab."""
    if on_space and storage.is_dir() and os.access(storage, os.W_OK):
        return storage / "prompt_lab"
    return Path.home() / ".prompt_lab"


def _env_list(name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    return tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))


def get_settings() -> Settings:
    """Settings from the environment (read on each call so tests can point PROMPT_LAB_HOME elsewhere)."""
    public = bool(os.environ.get("SPACE_ID"))
    home = Path(os.environ.get("PROMPT_LAB_HOME") or default_home(bool(os.environ.get("SPACE_ID")))).expanduser()
    return Settings(
        home=home,
        max_new_tokens_cap=_env_int("PROMPT_LAB_MAX_NEW_TOKENS", 512),
        max_generation_seconds=_env_float("PROMPT_LAB_MAX_GENERATION_SECONDS", 120.0),
        max_batch_prompts=_env_int("PROMPT_LAB_MAX_BATCH", 64),
        max_samples=_env_int("PROMPT_LAB_MAX_SAMPLES", 16),
        max_upload_bytes=_env_int("PROMPT_LAB_MAX_UPLOAD_BYTES", 20 * 1024 * 1024),
        max_rows=_env_int("PROMPT_LAB_MAX_ROWS", 20_000),
        max_cell_chars=_env_int("PROMPT_LAB_MAX_CELL_CHARS", 20_000),
        render_seconds=_env_float("PROMPT_LAB_RENDER_SECONDS", 2.0),
        max_template_bytes=_env_int("PROMPT_LAB_MAX_TEMPLATE_BYTES", 64 * 1024),
        public_mode=public,
        allow_training=os.environ.get("PROMPT_LAB_ALLOW_TRAINING") == "1",
        public_max_steps=_env_int("PROMPT_LAB_PUBLIC_MAX_STEPS", 50),
        endpoints_file=Path(os.environ["PROMPT_LAB_ENDPOINTS"]).expanduser()
        if os.environ.get("PROMPT_LAB_ENDPOINTS") else home / "endpoints.yaml",
        hf_offline=os.environ.get("HF_HUB_OFFLINE") == "1",
        host=os.environ.get("PROMPT_LAB_HOST") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
        port=_env_int("PROMPT_LAB_PORT", _env_int("GRADIO_SERVER_PORT", 7860)),
        max_loaded_adapters=_env_int("PROMPT_LAB_MAX_ADAPTERS", 2),
        admins=_env_list("SPACE_AUTHOR_NAME") + _env_list("PROMPT_LAB_ADMINS"),
        oauth=bool(os.environ.get("OAUTH_CLIENT_ID")) and os.environ.get("SYSTEM") == "spaces",
        public_models=_env_list("PROMPT_LAB_PUBLIC_MODELS", ("default",)),
        max_waiting=_env_int("PROMPT_LAB_MAX_WAITING", 16),
        max_queued_per_visitor=_env_int("PROMPT_LAB_MAX_QUEUED_PER_VISITOR", 2 if public else 0),
        actions_per_minute=_env_int("PROMPT_LAB_ACTIONS_PER_MINUTE", 6 if public else 0),
        saves_per_minute=_env_int("PROMPT_LAB_SAVES_PER_MINUTE", 10 if public else 0),
        max_templates_per_visitor=_env_int("PROMPT_LAB_MAX_TEMPLATES_PER_VISITOR", 100),
    )


def quiet_gradio() -> None:
    """Before gradio is imported: no usage analytics sent from the app (unless the environment asks for them)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def secret_from_env(name: str) -> str:
    """The value of a secret's environment variable (an API key), stripped; "" when unset. Read at each use, so
    an export or a Space secret applies at once; secrets are never Settings fields, which get shown and logged."""
    return os.environ.get(name, "").strip()
