"""The local transformers backend: batched generation (finished rows dropped between chunks, their padding trimmed)
and streaming; label scoring is mixed in from choices.py."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from prompt_lab.models.base import Generation, GenerationParams, ProgressFn, StreamEvent
from prompt_lab.models.local.choices import ChoiceScoring
from prompt_lab.models.local.loading import lazy_torch, load_model
from prompt_lab.settings import get_settings


def plain_text_prefix(tokenizer) -> str:
    """The special tokens (as text, e.g. a BOS "<s>") this tokenizer puts before plain text; "" for most chat
    models. A raw prompt starts with them, and every prompt is then encoded as written (no special tokens added),
    so the stored prompt is exactly what the model read, in either format."""
    added = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(added) <= len(bare) or added[len(added) - len(bare):] != bare:
        return ""  # nothing added, or only after the text (an end token is no place to continue from)
    prefix = tokenizer.decode(added[:len(added) - len(bare)])
    return prefix if tokenizer(prefix + "a", add_special_tokens=False)["input_ids"] == added else ""


def used_format(tokenizer, prompt) -> str:
    """raw when the prompt asks for it or the tokenizer has no chat template, else chat."""
    return "raw" if prompt.format == "raw" or not getattr(tokenizer, "chat_template", None) else "chat"


def format_prompt(tokenizer, prompt, prefix: str | None = None) -> str:
    """A strategies.Prompt as the exact text the model reads: through the tokenizer's chat template, or in the raw
    format (asked for, or the tokenizer has no chat template) after the tokenizer's own plain-text prefix."""
    if used_format(tokenizer, prompt) == "raw":
        return (plain_text_prefix(tokenizer) if prefix is None else prefix) + prompt.as_raw_text()
    if prompt.prefill:
        messages = prompt.messages + [{"role": "assistant", "content": prompt.prefill}]
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)


class _RowStreamer:
    """transformers streamer for a batch: reports each step's new token of every row still generating."""

    def __init__(self, on_tokens: Callable[[list[int], list[int]], None]):
        self.on_tokens, self.rows, self._prompt_next = on_tokens, [], True

    def put(self, value) -> None:
        if self._prompt_next:  # every generate() call first puts its prompt
            self._prompt_next = False
            return
        self.on_tokens(self.rows, value.reshape(-1).tolist())

    def end(self) -> None:
        self._prompt_next = True


class _Hooks:
    """A stopping criterion that never stops on its own: it reports progress, honours cancel, and records
    when each row of the batch produced its end token (so each row gets its own latency)."""

    def __init__(self, total: int, progress: ProgressFn | None, cancel: threading.Event | None, end_ids: set):
        self.total, self.progress, self.cancel, self.end_ids = total, progress, cancel, end_ids
        self.steps, self.cancelled, self.start = 0, False, time.perf_counter()
        self.finished_ms: dict[int, float] = {}
        self.rows: list[int] | None = None  # current batch row -> original row (rows get dropped)

    def __call__(self, input_ids, scores, **kwargs):
        torch = lazy_torch()
        self.steps += 1
        now_ms = (time.perf_counter() - self.start) * 1000
        for i, token in enumerate(input_ids[:, -1].tolist()):
            row = self.rows[i] if self.rows is not None else i
            if token in self.end_ids and row not in self.finished_ms:
                self.finished_ms[row] = now_ms
        if self.progress and (self.steps % 4 == 0 or self.steps == self.total):
            self.progress(min(1.0, self.steps / self.total), f"generating: token {self.steps}/{self.total}")
        stop = bool(self.cancel is not None and self.cancel.is_set())
        self.cancelled = self.cancelled or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class HFBackend(ChoiceScoring):
    """One loaded transformers model + tokenizer; generate() is serialized by a lock (one model, many callers)."""

    CHUNK_TOKENS = 8  # new tokens per generate() call before finished rows are dropped from the batch
    FIRST_CHUNK_TOKENS = 2  # the first call's: a label and its end token, so label rows leave a compare at once
    is_local = True
    can_tune = True  # the registry's base_location() finds the weights a tuning job trains

    def __init__(self, spec: str, location: str, revision: str, *, progress: ProgressFn | None = None,
                 adapter: str | None = None, base: "HFBackend | None" = None):
        """base: the loaded backend of the same weights without the adapter, whose weights the adapter shares."""
        self.spec, self.location, self.revision, self.adapter = spec, location, revision, adapter
        self.tokenizer, self.model, self.device, self._plain = load_model(
            spec, location, adapter=adapter, progress=progress, base_model=base.model if base is not None else None)
        self._lock = threading.Lock()
        self._prefix_text = plain_text_prefix(self.tokenizer)
        self._prefix_cache: tuple[list[int], list] | None = None  # see _shared_prefix
        self._end_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        self._end_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        if progress:
            progress(1.0, f"Loaded {spec}")

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format_prompt(self, prompt) -> str:
        """The exact text the model sees for a strategies.Prompt (encoded as written: see plain_text_prefix)."""
        return format_prompt(self.tokenizer, prompt, self._prefix_text)

    def prompt_format(self, prompt) -> str:
        """The format format_prompt uses for this prompt: raw or chat."""
        return used_format(self.tokenizer, prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: list[str]):
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    def _generate_kwargs(self, params: GenerationParams) -> dict:
        kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                      max_time=get_settings().max_generation_seconds)
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kwargs

    def _finish(self, ids, params: GenerationParams, prompt_tokens: int, latency_ms: float, sample_index: int,
                cancelled: bool) -> Generation:
        ids = list(ids)
        reason = "length"
        for i, token in enumerate(ids):
            if token in self._end_ids:
                ids, reason = ids[:i], "eos"
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in params.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        if reason == "length" and len(ids) < params.max_new_tokens:
            reason = "cancelled" if cancelled else "time"
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(ids),
                          latency_ms=latency_ms, finish_reason=reason, sample_index=sample_index)

    def generate(self, texts: list[str], params: GenerationParams, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None,
                 on_partial: Callable[[list[str]], None] | None = None) -> list[list[Generation]]:
        """Run all prompts as one batch; returns params.n generations per prompt.

        on_partial(texts) gets the text so far of each prompt's first sample at each step, for showing text
        as it arrives. When `cancel` is set mid-batch, rows that had already finished keep their answers and
        the others come back with the text so far and finish_reason "cancelled" (nothing raises).
        """
        torch = lazy_torch()
        on_tokens = self._partial_texts(len(texts), params.n, on_partial) if on_partial is not None else None

        enc = self._encode(texts)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        with self._lock, torch.inference_mode():
            torch.manual_seed(params.seed)
            hooks = _Hooks(params.max_new_tokens, progress, cancel, self._end_ids)
            start = time.perf_counter()
            rows = self._generate_rows(enc, params, hooks, _RowStreamer(on_tokens) if on_tokens else None)
            latency_ms = (time.perf_counter() - start) * 1000
        return [[self._finish(rows[p * params.n + s], params, int(prompt_len),
                              hooks.finished_ms.get(p * params.n + s, latency_ms), s, hooks.cancelled)
                 for s in range(params.n)]
                for p, prompt_len in enumerate(prompt_lens)]

    def _partial_texts(self, prompts: int, n: int, on_partial):
        """on_tokens(rows, tokens) for _RowStreamer: each step's new token of every row still generating
        (row = prompt_index * n + sample_index) becomes the decoded text so far of each prompt's first sample."""
        tokens: list[list[int]] = [[] for _ in range(prompts)]

        def on_tokens(rows: list[int], new: list[int]) -> None:
            for row, token in zip(rows, new):
                if row % n == 0 and token not in self._end_ids:
                    tokens[row // n].append(token)
            on_partial([self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens])

        return on_tokens

    def _generate_rows(self, enc, params: GenerationParams, hooks: _Hooks, streamer=None) -> list[list[int]]:
        """model.generate in chunks of CHUNK_TOKENS, dropping finished rows (and their KV cache) between chunks.

        A compare batch mixes short answers (zero-shot: a label) with long ones (CoT). Plain generate keeps
        computing every row until the longest ends, which made the batch slower than running the prompts
        one by one; dropping finished rows keeps the batch's advantage without that cost.
        """
        from transformers import StoppingCriteriaList

        torch = lazy_torch()
        input_ids = enc["input_ids"].repeat_interleave(params.n, dim=0)
        mask = enc["attention_mask"].repeat_interleave(params.n, dim=0)
        rows = list(range(input_ids.shape[0]))
        generated: list[list[int]] = [[] for _ in rows]
        kwargs = self._generate_kwargs(params)
        deadline = time.monotonic() + kwargs.pop("max_time")
        kwargs.pop("max_new_tokens")
        remaining, cache = params.max_new_tokens, self._prefill_rows(enc)
        if cache is not None and params.n > 1:
            cache.batch_repeat_interleave(params.n)
        while rows and remaining > 0:
            hooks.rows = rows
            if streamer is not None:
                streamer.rows = rows
            first = remaining == params.max_new_tokens and len(rows) > 1
            step = remaining if self._plain else min(self.FIRST_CHUNK_TOKENS if first else self.CHUNK_TOKENS, remaining)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                                      max_new_tokens=step, max_time=max(0.01, deadline - time.monotonic()),
                                      return_dict_in_generate=True, stopping_criteria=StoppingCriteriaList([hooks]),
                                      streamer=streamer, **kwargs)
            new = out.sequences[:, input_ids.shape[1]:]
            remaining -= new.shape[1]
            keep = []
            for i, tokens in enumerate(new.tolist()):
                generated[rows[i]].extend(tokens)
                if not any(t in self._end_ids for t in tokens):
                    keep.append(i)
            if not keep or new.shape[1] < step or hooks.cancelled or time.monotonic() >= deadline:
                break  # all done, or stopped by a stop string, the time cap or cancel
            input_ids = out.sequences
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], new.shape[1]))], dim=1)
            cache = out.past_key_values
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=input_ids.device)
                input_ids, mask = input_ids[index], mask[index]
                cache.batch_select_indices(index)
                rows = [rows[i] for i in keep]
                input_ids, mask = self._trim_padding(input_ids, mask, cache)
        return generated

    @staticmethod
    def _trim_padding(input_ids, mask, cache):
        """Drop the left-padding columns no remaining row needs (the padding of a longer prompt that has
        finished) from the ids, the mask and the KV cache, so the rows left do not attend over them."""
        pad = int((mask.cumsum(dim=1) == 0).sum(dim=1).min())
        if pad == 0 or any(type(layer).__name__ != "DynamicLayer" for layer in cache.layers):
            return input_ids, mask
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[:, :, pad:], layer.values[:, :, pad:]
        return input_ids[:, pad:], mask[:, pad:]

    def _prefill_rows(self, enc):
        """Prefill each prompt on its own, then stack the KV caches left-padded into one batch cache.

        Left-padding the prompts makes the batched prefill compute every pad position (a few-shot prompt of
        330 tokens next to a zero-shot one of 90 nearly doubles the work); prefilling rows apart wastes none.
        All but each prompt's last token go into the cache; generate() then feeds the last tokens as a batch.
        Returns None where this does not apply (one prompt, a one-token prompt, a cache that is not plain, a GPU).
        """
        from transformers import DynamicCache

        torch = lazy_torch()
        ids, mask = enc["input_ids"], enc["attention_mask"]
        lengths = mask.sum(dim=1).tolist()
        width = ids.shape[1]
        if self._plain or len(lengths) < 2 or min(lengths) < 2 or self.device != "cpu":
            return None  # a GPU prefills the padded batch in parallel: one pass beats a pass per row there
        rows = []
        for r, length in enumerate(lengths):
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids[r:r + 1, width - length:width - 1], past_key_values=cache, use_cache=True,
                       logits_to_keep=1)
            if any(type(layer).__name__ != "DynamicLayer" for layer in cache.layers):
                return None  # sliding-window or other caches: let generate() prefill the padded batch
            pad = width - length
            rows.append([(torch.nn.functional.pad(layer.keys, (0, 0, pad, 0)),
                          torch.nn.functional.pad(layer.values, (0, 0, pad, 0))) for layer in cache.layers])
        return DynamicCache(ddp_cache_data=[(torch.cat([row[i][0] for row in rows]),
                                             torch.cat([row[i][1] for row in rows])) for i in range(len(rows[0]))])

    def stream(self, text: str, params: GenerationParams, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Generate one completion for one prompt, yielding the text so far as tokens arrive."""
        torch = lazy_torch()
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        enc = self._encode([text])
        width = enc["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        hooks = _Hooks(params.max_new_tokens, None, cancel, self._end_ids)
        holder: dict = {}

        def work():
            try:
                with self._lock, torch.inference_mode():
                    torch.manual_seed(params.seed)
                    start = hooks.start = time.perf_counter()
                    holder["out"] = self.model.generate(**enc, **self._generate_kwargs(params), streamer=streamer,
                                                        stopping_criteria=StoppingCriteriaList([hooks]))
                    holder["latency_ms"] = (time.perf_counter() - start) * 1000
            except BaseException as exc:  # surfaced in the caller's thread below
                holder["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        so_far = ""
        for piece in streamer:
            so_far += piece
            shown = so_far
            for stop in params.stop:
                if stop in shown:
                    shown = shown[: shown.find(stop)]
            yield StreamEvent(shown)
        thread.join()
        if "error" in holder:
            raise holder["error"]
        generation = self._finish(holder["out"][0, width:].tolist(), params, int(enc["attention_mask"].sum()),
                                  holder["latency_ms"], 0, hooks.cancelled)
        yield StreamEvent(generation.text, generation)
