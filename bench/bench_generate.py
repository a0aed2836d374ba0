"""Generation benchmarks on the default model, printed as ratios measured in one run.

1. model load: GGUF (dequantize) vs the cached safetensors copy     target: cached >= 20x faster
2. the 3-strategy compare as one batch vs one prompt after another  target: batch >= 1.4x faster
   (measured with every strategy writing max_new_tokens, and on two real compares with mixed lengths)
3. the library's batched call vs raw model.generate on that batch   target: overhead <= 10%

Run: make bench  (or: .venv/bin/python bench/bench_generate.py [--repeats N] [--max-new-tokens N])
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ["PROMPT_LAB_HOME"] = tempfile.mkdtemp(prefix="prompt-lab-bench-")

    import torch

    from prompt_lab.models import GenerationParams
    from prompt_lab.models.local.generation import HFBackend
    from prompt_lab.models.local.loading import convert_gguf, embedded_gguf
    from prompt_lab.prompts.strategies import build_prompts
    from prompt_lab.prompts.templates import get_template

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    gguf = embedded_gguf()
    start = time.perf_counter()
    folder = convert_gguf(gguf)
    gguf_load = time.perf_counter() - start
    cached_load, backend = timed(lambda: HFBackend("default", str(folder), "bench"), args.repeats)
    print(f"[load]    GGUF -> model (incl. writing the copy): {gguf_load:6.2f} s")
    print(f"[load]    cached safetensors copy:               {cached_load:6.2f} s")
    print(f"[load]    ratio: cached load is {gguf_load / cached_load:.1f}x faster (target >= 20x)")

    def compare_case(label, template_name, variables, equal_lengths=False):
        """Batch vs one-by-one on one 3-strategy compare; equal_lengths forces every row to max_new_tokens."""
        template = get_template(template_name)
        prompts = build_prompts(template, ["zero_shot", "few_shot", "cot"], variables, k=3, seed=0)
        texts = [backend.format_prompt(p) for p in prompts]
        params = GenerationParams(max_new_tokens=args.max_new_tokens)
        base_kwargs = backend._generate_kwargs
        if equal_lengths:
            backend._generate_kwargs = lambda p: {**base_kwargs(p), "suppress_tokens": sorted(backend._end_ids)}
        try:
            backend.generate(texts[:1], GenerationParams(max_new_tokens=2))  # warm-up
            batch_time, batched = timed(lambda: backend.generate(texts, params), args.repeats)
            seq_time, _ = timed(lambda: [backend.generate([t], params) for t in texts], args.repeats)
        finally:
            backend._generate_kwargs = base_kwargs
        lengths = [g[0].completion_tokens for g in batched]
        print(f"[compare:{label}] new tokens per strategy {lengths}; batch {batch_time:.2f} s, "
              f"one after another {seq_time:.2f} s -> batched is {seq_time / batch_time:.2f}x faster")
        return texts, params, batch_time, seq_time

    review = {"review": "The battery lasts two days and the screen is sharp, but the speaker is tinny."}
    texts, params, batch_time, seq_time = compare_case("equal", "sentiment", review, equal_lengths=True)
    print("[compare:equal] target >= 1.4x (every strategy writes max_new_tokens)")
    _, _, mixed_batch, mixed_seq = compare_case("sentiment", "sentiment", review)
    summary_text = get_template("summarize").examples[0].inputs
    _, _, sum_batch, sum_seq = compare_case("summarize", "summarize", summary_text)

    enc = backend._encode(texts)
    never_end = {"suppress_tokens": sorted(backend._end_ids)}  # every row writes max_new_tokens
    kwargs = {**backend._generate_kwargs(params), **never_end}

    def raw():
        with torch.inference_mode():
            torch.manual_seed(0)
            return backend.model.generate(**enc, **kwargs)

    base_kwargs = backend._generate_kwargs
    backend._generate_kwargs = lambda p: {**base_kwargs(p), **never_end}
    raw_time, _ = timed(raw, args.repeats)
    lib_time, _ = timed(lambda: backend.generate(texts, params), args.repeats)
    backend._generate_kwargs = base_kwargs
    overhead = lib_time / raw_time - 1
    print(f"[overhead] same batch, same tokens: raw model.generate {raw_time:.2f} s, library generate() "
          f"{lib_time:.2f} s -> library / raw = {lib_time / raw_time:.3f} ({overhead:+.1%}, target <= +10%)")
    summary = {"gguf_load_s": gguf_load, "cached_load_s": cached_load, "load_ratio": gguf_load / cached_load,
               "batch_s": batch_time, "sequential_s": seq_time, "batch_speedup": seq_time / batch_time,
               "sentiment_batch_speedup": mixed_seq / mixed_batch, "summarize_batch_speedup": sum_seq / sum_batch,
               "raw_generate_s": raw_time, "library_generate_s": lib_time, "library_overhead": overhead}
    print(json.dumps({k: round(v, 4) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
