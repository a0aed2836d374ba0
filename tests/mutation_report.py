"""Per-module summary of the last `mutmut run` (read from mutants/**/*.meta): killed, survived, no tests,
timeouts and the score, as the Markdown table docs/testing.md carries. `python tests/mutation_report.py [--survivors]`."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3, 37}  # a failing test, a pytest internal error, a type-check catch
TIMEOUT = {36, -24, 24, 152, 255}


def outcome(code) -> str:
    if code in KILLED:
        return "killed"
    if code in TIMEOUT:
        return "timeout"
    return {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}.get(code, "suspicious")


def results() -> dict[str, dict[str, str]]:
    """module path -> {mutant name: outcome}"""
    out: dict[str, dict[str, str]] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[module] = {name: outcome(code) for name, code in codes.items()}
    return out


def table(by_module: dict[str, dict[str, str]]) -> str:
    lines = ["| module | mutants | killed | timeout | survived | no tests | score |", "|---|---:|---:|---:|---:|---:|---:|"]
    total: Counter = Counter()
    unchecked = 0
    for module, outcomes in by_module.items():
        counts = Counter(outcomes.values())
        skipped = counts.pop("not checked", 0)
        unchecked += skipped
        if skipped and not counts:
            continue  # a scoped run (make mutation PKG=...) did not reach this module: leave it out
        total.update(counts)
        n = sum(counts.values())
        caught = counts["killed"] + counts["timeout"]
        lines.append(f"| `{module}` | {n} | {counts['killed']} | {counts['timeout']} | {counts['survived']} | "
                     f"{counts['no tests']} | {caught / n:.1%} |" if n else f"| `{module}` | 0 | | | | | |")
    n = sum(total.values())
    if n:
        lines.append(f"| **all** | {n} | {total['killed']} | {total['timeout']} | {total['survived']} | "
                     f"{total['no tests']} | {(total['killed'] + total['timeout']) / n:.1%} |")
    if unchecked:
        lines.append(f"\n{unchecked} mutants were not checked in this run (outside its scope, or it was stopped).")
    return "\n".join(lines)


if __name__ == "__main__":
    data = results()
    print(table(data))
    if "--survivors" in sys.argv:
        for module, outcomes in data.items():
            for name, result in sorted(outcomes.items()):
                if result in ("survived", "no tests"):
                    print(result, name)
