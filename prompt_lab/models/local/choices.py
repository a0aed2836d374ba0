"""Label probabilities on a local model: the log-likelihood of each answer choice after each prompt, with the work
shared three ways (the prompts' common prefix once, each prompt's own text once for all its choices, a lone
multi-token choice in the same pass). Mixed into HFBackend, whose model, tokenizer and lock it uses."""
from __future__ import annotations

import functools
import threading

from prompt_lab.errors import CancelledError, ModelLoadError
from prompt_lab.models.local.loading import lazy_torch


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences):
            return first[:i]
    return first[:n]


@functools.cache
def _passing_layer():
    """A DynamicLayer that returns the cached prefix joined with the new keys and values without keeping them."""
    from transformers.cache_utils import DynamicLayer

    class PassingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            torch = lazy_torch()
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return PassingLayer


class ChoiceScoring:
    """score_choices for HFBackend (self.model, self.tokenizer, self.device, self._lock, self._plain, self.spec
    and self._prefix_cache come from it)."""

    SCORE_CHUNK_ROWS = 16  # most prompts per forward pass when scoring choices (sorted by length: little padding)
    SCORE_CHUNK_TOKENS = 1024  # most suffix tokens per pass (rows x the longest): bounds the KV cache and activations

    def _next_chunk(self, order: list[int], suffix_lengths: list[int]) -> list[int]:
        """The next rows of `order` (shortest first) for one pass: up to SCORE_CHUNK_ROWS, fewer when their
        padded width would pass SCORE_CHUNK_TOKENS (16 zero-shot reviews of 20 tokens fit; few-shot prompts of
        200 tokens go 5 at a time, which is as fast per token and keeps the app's peak memory down)."""
        chunk = [order[0]]
        for i in order[1:self.SCORE_CHUNK_ROWS]:
            if (len(chunk) + 1) * suffix_lengths[i] > self.SCORE_CHUNK_TOKENS:
                break
            chunk.append(i)
        return chunk

    def score_choices(self, texts: list[str], choices: list[list[str]], *,
                      cancel: threading.Event | None = None) -> list[list[float]]:
        """Log-likelihood of each answer choice as the continuation of each prompt.

        Work is shared three ways: the prefix all prompts have in common (system prompt, few-shot examples)
        is run once; each prompt's own suffix is run once for all its choices (its last position already
        scores every choice's first token); only choices longer than one token need a further, short pass.
        Suffixes are left-padded in chunks of similar length, so only each row's last position needs logits.
        """
        torch = lazy_torch()
        if self._plain:
            raise ModelLoadError(f"'{self.spec}' is a prompt-tuning adapter; score it with method 'generate' "
                                 "(label probabilities need the plain KV cache)")

        with self._lock, torch.inference_mode():
            prompt_ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
            choice_ids = [[self._continuation_ids(t, ids, c) for c in cs]
                          for t, ids, cs in zip(texts, prompt_ids, choices)]
            common = len(_common_prefix(prompt_ids))
            scores: list[list[float]] = [[] for _ in texts]
            order = sorted(range(len(texts)), key=lambda i: len(prompt_ids[i]))
            while order:
                if cancel is not None and cancel.is_set():  # checked per chunk: Stop answers within one chunk
                    raise CancelledError("scoring stopped")
                chunk = self._next_chunk(order, [len(ids) - common for ids in prompt_ids])
                order = order[len(chunk):]
                # each pass's own common prefix: one item whose demonstrations differ (its query was one of the
                # examples) then costs only its own pass the shared demonstrations, not every pass
                prefix, prefix_kv = self._shared_prefix([prompt_ids[i] for i in chunk])
                for i, row in zip(chunk, self._score_chunk(prefix_kv, len(prefix),
                                                           [prompt_ids[i][len(prefix):] for i in chunk],
                                                           [choice_ids[i] for i in chunk])):
                    scores[i] = row
        return scores

    def _shared_prefix(self, prompt_ids: list[list[int]]):
        """The prompts' common token prefix and its KV cache, reusing the previous call's when it still fits.

        An evaluation scores its items in batches that all start with the same system prompt and examples;
        keeping the last prefix's cache means that part is computed once per evaluation, not once per batch.
        """
        torch = lazy_torch()
        from transformers import DynamicCache

        limit = min(len(ids) for ids in prompt_ids) - 1  # every prompt keeps >= 1 token of its own
        prefix = _common_prefix(prompt_ids)[:limit]
        cached = self._prefix_cache
        # Reuse only a cached prefix that covers (nearly) all of this batch's common part: a shorter one (say,
        # a zero-shot system prompt under few-shot prompts) would push the shared examples into every row.
        if cached is not None and 0 < len(cached[0]) <= len(prefix) < len(cached[0]) + 8 \
                and prefix[: len(cached[0])] == cached[0]:
            return cached
        if not prefix:
            return [], None
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([prefix], device=self.device), past_key_values=cache, use_cache=True,
                   logits_to_keep=1)
        self._prefix_cache = (prefix, [(layer.keys, layer.values) for layer in cache.layers])
        return self._prefix_cache

    def _score_chunk(self, prefix_kv, p: int, suffixes: list[list[int]], choice_ids: list[list[list[int]]]):
        """Scores of every choice of each row. Where each row has at most one choice of several tokens (the
        usual case: 'Neutral' is two tokens beside one-token 'Positive' and 'Negative'), that choice's tokens
        but its last ride along in the same pass after the row's own text, so no second pass is needed."""
        torch = lazy_torch()
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        multi = [[j for j, c in enumerate(item) if len(c) > 1] for item in choice_ids]
        ride = all(len(m) <= 1 for m in multi)
        heads = [choice_ids[i][m[0]][:-1] if ride and m else [] for i, m in enumerate(multi)]
        rows_ids = [s + h for s, h in zip(suffixes, heads)]
        rows, width, pad = len(rows_ids), max(len(r) for r in rows_ids), self.tokenizer.pad_token_id
        keep = 1 + max(len(h) for h in heads)
        cache = DynamicCache(config=self.model.config)
        for layer, (k, v) in zip(cache.layers, prefix_kv or []):
            # The shared prefix as a view per row: a copy per row held for all layers at once cost 180 MB with a
            # 247-token few-shot prefix and 16 rows. Without a second pass nothing needs this pass's keys and
            # values afterwards, so each layer's concatenation is handed to attention and dropped.
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)
            if ride and type(layer) is DynamicLayer:
                layer.__class__ = _passing_layer()
        device = self.device
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows_ids], device=device)
        mask = torch.tensor([[1] * p + [0] * (width - len(r)) + [1] * len(r) for r in rows_ids], device=device)
        positions = torch.tensor([[p] * (width - len(r)) + list(range(p, p + len(r))) for r in rows_ids],
                                 device=device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, logits_to_keep=keep)
        kept = torch.log_softmax(out.logits.float(), dim=-1)  # the last `keep` positions of every row
        scores = []
        for i, item in enumerate(choice_ids):
            at = keep - 1 - len(heads[i])  # the row's own last token: it scores every choice's first token
            row = [float(kept[i, at, c[0]]) for c in item]
            if heads[i]:
                j = multi[i][0]
                row[j] += sum(float(kept[i, at + 1 + t, choice_ids[i][j][t + 1]]) for t in range(len(heads[i])))
            scores.append(row)
        longer = [] if ride else [(i, j) for i, m in enumerate(multi) for j in m]
        if longer:
            cache.batch_select_indices(torch.tensor([i for i, _ in longer], device=device))
            heads2 = [choice_ids[i][j][:-1] for i, j in longer]
            span = max(len(h) for h in heads2)
            ids2 = torch.tensor([h + [pad] * (span - len(h)) for h in heads2], device=device)
            mask2 = torch.cat([mask[[i for i, _ in longer]],
                               torch.tensor([[1] * len(h) + [0] * (span - len(h)) for h in heads2], device=device)],
                              1)
            pos2 = torch.stack([torch.arange(span, device=device) + p + len(suffixes[i]) for i, _ in longer])
            logprobs = torch.log_softmax(self.model(input_ids=ids2, attention_mask=mask2, position_ids=pos2,
                                                    past_key_values=cache).logits.float(), dim=-1)
            for row, (i, j) in enumerate(longer):
                tokens = choice_ids[i][j]
                scores[i][j] += sum(float(logprobs[row, t, tokens[t + 1]]) for t in range(len(tokens) - 1))
        return scores

    def _continuation_ids(self, text: str, prompt_ids: list[int], choice: str) -> list[int]:
        """Token ids that `choice` adds after the prompt (tokenized together, so merges at the seam count)."""
        full = self.tokenizer(text + choice, add_special_tokens=False)["input_ids"]
        if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
            return full[len(prompt_ids):]
        return self.tokenizer(choice, add_special_tokens=False)["input_ids"]
