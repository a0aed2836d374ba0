"""What every model backend takes and returns: decoding params, one generation, the backend protocol."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator, Protocol

from prompt_lab.settings import Settings

ProgressFn = Callable[[float, str], None]  # (fraction 0..1, message)


@dataclass
class GenerationParams:
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    n: int = 1  # samples per prompt

    def to_dict(self) -> dict:
        return asdict(self)

    def clamped(self, settings: Settings) -> tuple["GenerationParams", list[str]]:
        """Apply the server-side caps; returns the safe params and a warning per change."""
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


class Backend(Protocol):
    spec: str
    revision: str
    device: str

    def format_prompt(self, prompt) -> str: ...  # the exact input logged and shown (text, or JSON messages)

    def count_tokens(self, text: str) -> int: ...

    def generate(self, texts: list[str], params: GenerationParams, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None,
                 on_partial: Callable[[list[str]], None] | None = None) -> list[list[Generation]]: ...

    def stream(self, text: str, params: GenerationParams, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]: ...
