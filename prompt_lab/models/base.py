"""What every model backend takes and returns: decoding params, one generation, the backend protocol."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Protocol, runtime_checkable

from prompt_lab.errors import PromptLabError
from prompt_lab.settings import Settings
from prompt_lab.specs import check_fields, failer, spec_field

ProgressFn = Callable[[float, str], None]  # (fraction 0..1, message)
SEED_MAX = 2**32 - 1  # what every sampler takes (numpy's legacy seeding, servers' 32-bit seeds)


@dataclass
class GenerationParams:
    """Decoding settings of one call. Out-of-range values from a UI are clamped (clamped()); values of the wrong
    type, and seeds outside 0..2**32-1, are reported by validate(), which clamped() runs first."""

    temperature: float = spec_field(0.0, help="Sampling temperature, 0 or more; 0 means greedy decoding.")
    top_p: float = spec_field(1.0, help="Nucleus sampling, in (0, 1]: keep the top tokens up to this mass.")
    max_new_tokens: int = spec_field(128, help="Most tokens generated per answer (capped server-side).")
    stop: list[str] = spec_field(default_factory=list, help="Strings that end an answer (cut before them).")
    seed: int = spec_field(0, min=0, max=SEED_MAX, help="Random seed for sampling; equal seeds give equal samples "
                                                        "(a whole number from 0 to 2**32-1).")
    n: int = spec_field(1, help="Samples per prompt (capped server-side).")

    def validate(self, source: str = "generation params") -> "GenerationParams":
        """Raise PromptLabError naming the first field whose value has the wrong type; returns self."""
        fail = failer(source, None, PromptLabError)
        if isinstance(self.seed, int) and self.seed.bit_length() > 128:  # too long to quote (or even to print)
            fail("seed", f"must be between 0 and {SEED_MAX}, got a number of {self.seed.bit_length()} bits")
        check_fields(self, fail)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def clamped(self, settings: Settings) -> tuple["GenerationParams", list[str]]:
        """Apply the server-side caps; returns the safe params and a warning per change. Values of the wrong type
        or a seed out of range raise PromptLabError (validate())."""
        self.validate()
        warnings = []
        params = replace(self, stop=[s for s in self.stop if s])
        if params.max_new_tokens > settings.max_new_tokens_cap:
            warnings.append(f"max_new_tokens {params.max_new_tokens} is above the cap; "
                            f"clamped to {settings.max_new_tokens_cap}")
            params.max_new_tokens = settings.max_new_tokens_cap
        if params.max_new_tokens < 1:
            warnings.append(f"max_new_tokens {params.max_new_tokens} raised to 1")
            params.max_new_tokens = 1
        if params.n > settings.max_samples:
            warnings.append(f"n={params.n} samples is above the cap; clamped to {settings.max_samples}")
            params.n = settings.max_samples
        params.n = max(1, params.n)
        if params.temperature < 0:
            warnings.append("temperature below 0 set to 0 (greedy)")
            params.temperature = 0.0
        if not 0 < params.top_p <= 1:
            warnings.append(f"top_p {params.top_p} is outside (0, 1]; set to 1")
            params.top_p = 1.0
        return params, warnings


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float  # from the start of the call to this completion's end token (rows of a batch differ)
    finish_reason: str  # eos | stop | length | time | cancelled
    sample_index: int = 0
    token_source: str = "local"  # local (this model's tokenizer) | server (the API's usage) | estimate

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / (self.latency_ms / 1000) if self.latency_ms > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tokens_per_s"] = round(self.tokens_per_s, 2)
        return data

    def log_fields(self) -> dict:
        """This generation's columns in the run log's generations table."""
        return {"output": self.text, "sample_index": self.sample_index, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_ms": round(self.latency_ms, 1),
                "tokens_per_s": round(self.tokens_per_s, 2), "finish_reason": self.finish_reason,
                "token_source": self.token_source}


@dataclass
class StreamEvent:
    text: str  # everything generated so far
    generation: Generation | None = None  # set on the last event


@dataclass(frozen=True)
class ModelRef:
    """A resolved spec, before anything is loaded: what the user wrote and where its weights or server are."""

    spec: str  # what the user wrote
    kind: str  # folder | gguf | hub | openai | a third-party backend's name
    location: str  # folder path, .gguf path, Hub id, server address
    adapter: str | None = None  # a PEFT adapter folder applied on top (`<base>+<adapter dir>`)


def prompt_format(backend, prompt) -> str:
    """The format (raw or chat) `backend.format_prompt(prompt)` lays the prompt out in: what a backend says it
    uses (a local model without a chat template uses raw), else what the prompt asks for."""
    says = getattr(backend, "prompt_format", None)
    return says(prompt) if callable(says) else prompt.format


def format_params(params: "GenerationParams", prompt, used: str) -> "GenerationParams":
    """The decoding params for a prompt laid out in `used`. Past a raw prompt's answer the model goes on to write the
    next block itself, so the answer also ends where that would start, as lm-eval's `until` ends it: at the
    separator, or for CoT (whose reasoning may hold blank lines) at the fixed text every input starts with
    ("Question:"; nothing extra when the input starts with a variable)."""
    if used != "raw":
        return params
    end = prompt.block_start if prompt.strategy in ("cot", "few_shot_cot") else prompt.separator
    return replace(params, stop=[*params.stop, end]) if end and end not in params.stop else params


@runtime_checkable
class Backend(Protocol):
    """What a model backend can do. Callers ask it (or the registry, by spec) instead of checking its class."""

    spec: str
    revision: str  # what exactly answered: file hash, Hub commit, served model @ server
    device: str  # cpu | cuda | remote | ...
    is_local: bool  # weights in this process (False: a server answers)
    can_tune: bool  # local weights a LoRA / prompt-tuning job can train

    def format_prompt(self, prompt) -> str: ...  # the exact input logged and shown (text, or JSON messages); a
    # backend that cannot take prompt.format ("raw": plain text) raises a PromptLabError saying so

    def count_tokens(self, text: str) -> int: ...

    def generate(self, texts: list[str], params: GenerationParams, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None,
                 on_partial: Callable[[list[str]], None] | None = None) -> list[list[Generation]]: ...

    def stream(self, text: str, params: GenerationParams, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]: ...

    def score_choices(self, texts: list[str], choices: list[list[str]], *,
                      cancel: threading.Event | None = None) -> list[list[float]]: ...
    # log-likelihood of each choice after each prompt (label probabilities); backends that cannot score raise
    # ModelLoadError saying to use method 'generate'
