"""Generation benchmarks on the default model, printed as ratios measured in one run.

1. model load: GGUF (dequantize) vs the cached safetensors copy     target: cached >= 20x faster
2. the 3-strategy compare (zero-shot, few-shot, CoT) as one batch vs one prompt after another, with every
   strategy writing max_new_tokens, then on every shipped template's first example: never slower
   (>= 1.0x), and >= 2x where the three outputs have similar lengths (longest <= 1.5x the shortest)
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
    from prompt_lab.prompts.templates import get_template, shipped_names

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
        """Batch vs one-by-one on one 3-strategy compare, repeats interleaved (batch, one by one, batch, ...) so
        both see the same machine state; equal_lengths forces every row to max_new_tokens."""
        template = get_template(template_name)
        prompts = build_prompts(template, ["zero_shot", "few_shot", "cot"], variables, k=3, seed=0)
        texts = [backend.format_prompt(p) for p in prompts]
        params = GenerationParams(max_new_tokens=args.max_new_tokens)
        base_kwargs = backend._generate_kwargs
        if equal_lengths:
            backend._generate_kwargs = lambda p: {**base_kwargs(p), "suppress_tokens": sorted(backend._end_ids)}
        try:
            backend.generate(texts[:1], GenerationParams(max_new_tokens=2))  # warm-up
            batch_times, seq_times = [], []
            for _ in range(args.repeats):
                t, batched = timed(lambda: backend.generate(texts, params), 1)
                batch_times.append(t)
                seq_times.append(timed(lambda: [backend.generate([t], params) for t in texts], 1)[0])
        finally:
            backend._generate_kwargs = base_kwargs
        batch_time, seq_time = statistics.median(batch_times), statistics.median(seq_times)
        lengths = [g[0].completion_tokens for g in batched]
        similar = max(lengths) <= 1.5 * max(1, min(lengths))
        goal = 2.0 if similar else 1.0
        ratio = seq_time / batch_time
        print(f"[compare:{label:<15}] new tokens {str(lengths):<13} one by one {seq_time:5.2f} s, batch "
              f"{batch_time:5.2f} s -> batch {ratio:4.2f}x ({'similar lengths, ' if similar else ''}goal >= "
              f"{goal:.1f}x: {'met' if ratio >= goal else 'MISSED'})")
        return texts, params, batch_time, seq_time, lengths

    review = {"review": "The battery lasts two days and the screen is sharp, but the speaker is tinny."}
    texts, params, batch_time, seq_time, _ = compare_case("equal", "sentiment", review, equal_lengths=True)
    per_template = {}
    for name in sorted(shipped_names()):  # every shipped template, on its first example's inputs
        template = get_template(name)
        variables = template.examples[0].inputs if template.examples else {v: "test" for v in template.variables}
        _, _, b, s, lengths = compare_case(name, name, variables)
        per_template[name] = {"new_tokens": lengths, "batch_s": round(b, 3), "one_by_one_s": round(s, 3),
                              "ratio": round(s / b, 3)}

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
               "raw_generate_s": raw_time, "library_generate_s": lib_time, "library_overhead": overhead}
    print(json.dumps({**{k: round(v, 4) for k, v in summary.items()}, "templates": per_template}))


if __name__ == "__main__":
    main()
