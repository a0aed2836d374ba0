"""Reports as text and JSON for the terminal: one evaluation run (`eval`) and a pair of runs (`pair`).

Functions return lines and dicts; the CLI prints them. The numbers are the ones the Evaluate and History views show.
"""
from __future__ import annotations

from dataclasses import asdict

from prompt_lab.reporting.pairs import RunPairs
from prompt_lab.reporting.summary import EvalReport


def pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}%"


def report_json(report: EvalReport) -> dict:
    """`eval --json`: the run's fields and every condition's numbers (chance and majority rates 0-1 on each), plus
    the table rows, the paired tests the text output prints and any warnings."""
    data = report.to_dict()
    return {"run_id": data["run_id"], "status": data["status"], "template": data["template"],
            "template_hash": data["template_hash"], "metric": data["metric"], "method": data["method"],
            "example_selection": data["example_selection"],
            "dataset": data["dataset"], "dataset_hash": data["dataset_hash"], "items": data["items"],
            "warnings": data["warnings"], "conditions": data["conditions"], "rows": data["rows"],
            "paired": data["paired"], "baseline": data["baseline"], "variants": data["variants"],
            "wall_s": data["wall_s"], "scored": data["scored"], "items_per_s": data["items_per_s"],
            "format": data["format"]}


def report_lines(report: EvalReport) -> list[str]:
    """An EvalReport as the lines `eval` prints: the same rows the Evaluate view shows."""
    lines = [f"run {report.run_id} ({report.status}) · template {report.template} · dataset "
             f"{report.dataset} ({report.items} items) · metric {report.metric} · method {report.method}"
             + (f" · format {report.format}" if report.format else "")
             + (f" · examples {report.example_selection}" if any(c.get("k") for c in report.conditions) else "")
             + (f" · {report.speed()}" if report.speed() else "")]
    lines += [f"warning: {w}" for w in report.warnings]
    if report.metric in ("accuracy", "contains", "regex"):
        lines.append(f"{'condition':<34} {'accuracy [95% CI]':<24} {'strict':>7} {'chance':>7} {'majority':>8} "
                     f"{'no answer':>9} {'wrong':>6} {'tokens':>7} {'latency':>8}")
        for row in report.rows:
            extra = f"  vote of {row.samples}" if row.samples > 1 else ""
            lines.append(f"{row.condition:<34} {pct(row.value)} [{pct(row.ci_low)}, {pct(row.ci_high)}] "
                         f"{pct(row.strict)} {pct(row.chance):>7} {pct(row.majority):>8} {row.no_answer:>9} "
                         f"{row.wrong:>6} {row.tokens:>7.1f} {row.latency_s:>7.2f}s{extra}")
            if row.baseline_note:
                lines.append(f"    baseline: {row.baseline_note}")
            if row.self_consistency is not None:
                curve = ", ".join(f"k={p['k']}: {pct(p['accuracy']).strip()}" for p in row.self_consistency)
                lines.append(f"    self-consistency: {curve}; mean agreement with the vote "
                             f"{pct(row.agreement).strip()}")
        for test in report.paired:
            lines.append(f"paired test: {test.verdict} (exact McNemar on {test.n} items, {test.only_a} vs "
                         f"{test.only_b} items right in only one)")
    else:
        for row in report.rows:
            corpus = ", ".join(f"{k} {v:.3f}" if v <= 1 else f"{k} {v:.1f}" for k, v in row.corpus.items())
            lines.append(f"{row.condition:<34} mean item score {row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"
                         f" · corpus {corpus} · {row.tokens:.1f} tokens")
    return lines + variant_lines(report)


def variant_lines(report: EvalReport) -> list[str]:
    """The prompt variants of a run ranked in each setting, with 95% CIs and each one's paired test against the
    baseline variant on the same items (empty for a run without variants)."""
    if not report.variants:
        return []
    rate = report.metric in ("accuracy", "contains", "regex")
    shown = (lambda x: pct(x).strip()) if rate else (lambda x: f"{x:.3f}")  # noqa: E731
    width = max(len(r.variant) for r in report.variants)
    lines = [f"variants ranked in each setting (baseline {report.baseline}; paired tests: exact McNemar on the same "
             "items, matched by content):"]
    setting = None
    for r in report.variants:
        if r.setting != setting:
            setting = r.setting
            lines.append(f"  {setting}")
        against = "baseline" if r.baseline else ""
        if r.test is not None:
            t = r.test
            against = (f"vs {report.baseline} {100 * t.difference:+.1f} points [{100 * t.difference_ci[0]:+.1f}, "
                       f"{100 * t.difference_ci[1]:+.1f}] on {t.n} items, p = {t.p_value:.3g}")
        lines.append(f"    {r.rank}. {r.variant:<{width}} {shown(r.value):>7} [{shown(r.ci_low)}, "
                     f"{shown(r.ci_high)}]  {against}".rstrip())
    return lines


def pair_lines(pairs: RunPairs) -> list[str]:
    """`pair`: for each pair of conditions, both sides named in full, the items paired, both accuracies with
    their CIs, the difference, p and the verdict in words."""
    lines = [f"runs {pairs.run_a} and {pairs.run_b}: {pairs.paired} items with the same inputs and gold answer "
             "in both (paired by content, not position)"]
    for p in pairs.pairs:
        lines += [f"A: {p.a.describe()}", f"B: {p.b.describe()}"]
        t = p.test
        if t is None:
            lines += [f"   {p.note}", ""]
            continue
        lines += [f"   paired items: {t.n}",
                  f"   accuracy A {pct(t.accuracy_a).strip()} [{pct(t.ci_a[0]).strip()}, {pct(t.ci_a[1]).strip()}]"
                  f" · B {pct(t.accuracy_b).strip()} [{pct(t.ci_b[0]).strip()}, {pct(t.ci_b[1]).strip()}]",
                  f"   difference A - B {100 * t.difference:+.1f} points [{100 * t.difference_ci[0]:+.1f}, "
                  f"{100 * t.difference_ci[1]:+.1f}] · exact McNemar p = {t.p_value:.3g} ({t.only_a} items right "
                  f"only in A, {t.only_b} only in B)",
                  f"   verdict: {t.verdict}", ""]
    return lines[:-1] if lines and lines[-1] == "" else lines


def pair_json(pairs: RunPairs) -> dict:
    """`pair --json`: `paired` (items the two runs share by content) and, per pair of conditions, both sides, its
    own `paired` count and the test (null with a `note` where there is none)."""
    return {"run_a": pairs.run_a, "run_b": pairs.run_b, "paired": pairs.paired,
            "pairs": [{"a": asdict(p.a), "b": asdict(p.b), "paired": p.paired,
                       "test": asdict(p.test) if p.test is not None else None, "note": p.note,
                       "verdict": p.verdict} for p in pairs.pairs]}
