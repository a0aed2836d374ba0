"""Grids of tune settings: a tune file whose numeric settings hold lists runs as one job per combination.

`load_tune_file` reads a tune file as a single TuneSpec, or, when a grid setting holds a list, as a TuneGrid: the
cross product of the lists, each combination checked exactly as a single tune file is. `submit` queues a grid's
jobs as one submission (they run one after another through the job queue), and `grid_ranking` ranks them by their
best validation loss, with the base-vs-tuned accuracy of each finished one. Grid jobs are found again through the
grid recorded in their spec_json (runlog.jobs.GRID_KEY).
"""
from __future__ import annotations

import functools
import itertools
import math
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.jobs import get_job, grid_jobs, job_grid
from prompt_lab.runlog.store import connect
from prompt_lab.settings import get_settings
from prompt_lab.specs import failer
from prompt_lab.tuning import jobs
from prompt_lab.tuning.spec import TuneError, TuneSpec, spec_from_mapping
from prompt_lab.yamlfiles import key_lines, load_spec_lines, parse_yaml, spec_numbers

# Numeric settings whose effect is worth comparing side by side; the rest (data, template, model, method) name
# what is trained, and a grid over them would rank different tasks against each other.
GRID_FIELDS = ("learning_rate", "r", "alpha", "dropout", "epochs", "max_steps", "batch_size", "grad_accum",
               "warmup_steps", "weight_decay", "num_virtual_tokens", "seed")
MAX_COMBINATIONS = 16  # each combination is a whole tuning job, run one after another
SHORT_NAMES = {"learning_rate": "lr"}  # in job names: `sentiment lr=0.001 r=4`
GRID_HELP = (f"A list in a grid setting ({', '.join(GRID_FIELDS)}) makes a grid: one job per combination (at most "
             f"{MAX_COMBINATIONS}), run one after another and ranked by validation loss.")


@dataclass
class GridJob:
    spec: TuneSpec
    settings: dict  # the grid settings and this job's value of each


@dataclass
class TuneGrid:
    name: str  # the tune file's job name; each job's name adds its settings
    varied: dict[str, list]  # each grid setting and its values (duplicates removed), in the file's order
    jobs: list[GridJob]


def _takes_list(name: str) -> bool:
    """Whether a TuneSpec field's own type is a list (target_modules): its list is a value, not a grid."""
    hint = typing.get_type_hints(TuneSpec)[name]
    return any(typing.get_origin(h) is list for h in (hint, *typing.get_args(hint)))


def _value_text(value) -> str:
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def settings_label(settings: dict) -> str:
    """`lr=0.001 r=4`: what a grid job varies, as its name shows it."""
    return " ".join(f"{SHORT_NAMES.get(k, k)}={_value_text(v)}" for k, v in settings.items())


def _item_lines(lines: dict[str, int], name: str, index: int) -> dict[str, int]:
    """The lines with `name` pointing at its list's item `index` (0-based), so an error names that value's line."""
    line = lines.get(f"{name}.{index + 1}", lines.get(name))
    return {**lines, name: line} if line is not None else lines


def grid_lists(data: dict, source: str, lines: dict[str, int]) -> dict[str, list]:
    """The grid settings given as lists; a list anywhere else, or an empty one, is refused in words."""
    fail = failer(source, lines, TuneError)
    lists = {}
    for name, value in data.items():
        if not isinstance(value, list) or _takes_list(name):
            continue
        if name not in GRID_FIELDS:
            fail(name, f"takes one value, not a list; a list makes a grid only in {', '.join(GRID_FIELDS)}")
        if not value:
            fail(name, "is an empty list: give one or more values to try")
        lists[name] = value
    return lists


def expand(data: dict, path: Path, lines: dict[str, int]) -> TuneGrid:
    """The cross product of a tune mapping's grid lists as checked TuneSpecs (errors name the file, the value's line
    and the field), duplicates removed, at most MAX_COMBINATIONS; each job named by what it varies."""
    lists = grid_lists(data, str(path), lines)
    first = {name: values[0] for name, values in lists.items()}
    varied: dict[str, list] = {}
    for name, values in lists.items():  # each value checked on its own first, so an error names the value's line
        kept = []
        for i, value in enumerate(values):
            spec_from_mapping({**data, **first, name: value}, path, _item_lines(lines, name, i))
            if value not in kept:
                kept.append(value)
        varied[name] = kept
    count = math.prod(len(v) for v in varied.values())
    if count > MAX_COMBINATIONS:
        where = f", line {lines[next(iter(varied))]}" if next(iter(varied), None) in lines else ""
        sizes = " x ".join(f"{len(v)} {name}" for name, v in varied.items())
        raise TuneError(f"{path}{where}: the lists make {count} combinations ({sizes}); a grid runs at most "
                        f"{MAX_COMBINATIONS} jobs, one after another: give fewer values")
    base = spec_from_mapping({**data, **first}, path, lines).name
    out = []
    for combination in itertools.product(*varied.values()):
        settings = dict(zip(varied, combination))
        item_lines = lines
        for name, value in settings.items():
            item_lines = _item_lines(item_lines, name, lists[name].index(value))
        spec = spec_from_mapping({**data, **settings}, path, item_lines)
        spec.name = f"{base} {settings_label(settings)}"
        out.append(GridJob(spec, settings))
    return TuneGrid(base, varied, out)


def load_tune_file(path: str | Path) -> TuneSpec | TuneGrid:
    """A tune file: its TuneSpec (as tuning.spec.load_tune_spec reads it), or a TuneGrid when it gives a list of
    values for a grid setting."""
    path = Path(path)
    data, lines = load_spec_lines(path, "tune file", TuneSpec.__dataclass_fields__, TuneError)
    if grid_lists(data, str(path), lines):
        return expand(data, path, lines)
    return spec_from_mapping(data, path, lines)


def grid_from_text(base: TuneSpec, text: str, source: str = "Grid") -> TuneGrid:
    """A grid over a spec built elsewhere (the Tune tab's form): `text` is YAML giving grid settings lists of values,
    e.g. `learning_rate: [0.001, 0.003]`; errors name `source`, the line and the field."""
    base.validate("tune settings")
    data = parse_yaml(text, source, TuneError)
    if not isinstance(data, dict):
        raise TuneError(f"{source}: give each setting to try as a list, e.g. learning_rate: [0.001, 0.003]")
    lines = key_lines(text)
    fail = failer(source, lines, TuneError)
    for name in data:
        if name not in GRID_FIELDS:
            fail(str(name), f"is not a grid setting; a grid varies {', '.join(GRID_FIELDS)}")
    if not any(isinstance(v, list) for v in data.values()):
        raise TuneError(f"{source}: no list of values to try; write each setting as a list, e.g. r: [4, 8]")
    return expand({**base.to_dict(), **spec_numbers(data, TuneSpec.__dataclass_fields__)}, Path(source), lines)


def submit(grid: TuneGrid, start: bool = True) -> list[int]:
    """Queue a grid's jobs as one submission (tuning.jobs.submit_grid); returns their ids, the first being the
    grid's id."""
    return jobs.submit_grid(grid.name, [j.spec for j in grid.jobs], [j.settings for j in grid.jobs], start=start)


def submit_lists(base: TuneSpec, text: str) -> list[int]:
    """Queue the grid that `text`'s lists make over `base` (grid_from_text, then submit): the Tune tab's Start."""
    return submit(grid_from_text(base, text))


def grid_file_fields(base: TuneSpec, text: str) -> dict:
    """A tune file's fields for `base` with `text`'s lists in place of its values (the Tune tab's equivalent file)."""
    grid = grid_from_text(base, text)
    return {**grid.jobs[0].spec.to_dict(), "name": grid.name, **grid.varied}


# ------------------------------------------------------------------ ranking


@dataclass
class GridRow:
    """One job of a grid: its place (1: lowest validation loss, among finished jobs), its settings and status, its
    best validation loss, and the base-vs-tuned figure of its evaluation run with 95% CIs."""
    rank: int | None  # None: not finished, or no validation loss
    job_id: int
    name: str
    settings: dict
    status: str
    step: int
    max_steps: int | None
    val_loss: float | None  # the lowest validation loss logged
    metric: str | None = None  # accuracy, or the evaluation's score metric
    base_accuracy: float | None = None
    base_ci: list[float] | None = None
    tuned_accuracy: float | None = None
    tuned_ci: list[float] | None = None
    p_value: float | None = None  # exact McNemar test, tuned against base on the same items
    eval_run_id: int | None = None
    adapter_path: str | None = None
    error: str | None = None


@dataclass
class GridRanking:
    grid_id: int
    name: str
    varied: list[str]
    jobs: list[GridRow] = field(default_factory=list)  # ranked: finished by validation loss, then the rest

    def to_dict(self) -> dict:
        """{"grid": {"id", "name", "varied"}, "jobs": [...]}, ranked (the CLI's --json)."""
        return {"grid": {"id": self.grid_id, "name": self.name, "varied": self.varied},
                "jobs": [asdict(row) for row in self.jobs]}

    def table(self) -> tuple[list[str], list[list]]:
        """Headers and rows as people read them (the CLI table and the Tune tab's Grid table)."""
        headers = ["rank", "job", "settings", "status", "best val loss", "base (95% CI)", "tuned (95% CI)",
                   "p (tuned vs base)"]
        rows = [[str(row.rank or ""), row.job_id, settings_label(row.settings),
                 row.status if row.status != "running" else f"running {row.step}/{row.max_steps or '?'}",
                 "" if row.val_loss is None else f"{row.val_loss:.4f}", _figure(row.base_accuracy, row.base_ci),
                 _figure(row.tuned_accuracy, row.tuned_ci), "" if row.p_value is None else _p_text(row.p_value)]
                for row in self.jobs]
        return headers, rows


def _figure(value: float | None, ci: list[float] | None) -> str:
    return "" if value is None else f"{value:.0%} [{ci[0]:.0%}-{ci[1]:.0%}]"


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@functools.lru_cache(maxsize=64)
def _base_vs_tuned(db_path: str, eval_run_id: int) -> dict:
    """Base and tuned figures of a job's evaluation run; cached, as a finished run never changes (the job records
    its run id only once the evaluation completed) and the Tune tab polls every second."""
    report = eval_report(eval_run_id, db_path=db_path)
    out: dict = {"metric": report.metric}
    for row, condition in zip(report.rows, report.conditions):
        side = "tuned" if "+" in condition["model"] else "base"
        out[f"{side}_accuracy"], out[f"{side}_ci"] = row.value, [row.ci_low, row.ci_high]
    if report.paired:
        out["p_value"] = report.paired[0].p_value
    return out


def _row(job: dict) -> GridRow:
    grid = job_grid(job) or {}
    row = GridRow(None, job["id"], job["name"] or "", grid.get("settings") or {}, job["status"], job["step"] or 0,
                  job["max_steps"], job["best_val_loss"], eval_run_id=job["eval_run_id"],
                  adapter_path=job["adapter_path"], error=job["error"])
    if job["eval_run_id"]:
        try:
            figures = _base_vs_tuned(str(get_settings().db_path), int(job["eval_run_id"]))
        except PromptLabError as exc:  # a run that cannot be reported (say, deleted): the row says why
            row.error = row.error or f"evaluation run {job['eval_run_id']}: {exc}"
        else:
            for key, value in figures.items():
                setattr(row, key, value)
    return row


def grid_ranking(grid_id: int) -> GridRanking:
    """A grid's jobs ranked: finished ones by their best validation loss (lower first), then the others (queued,
    running, failed, cancelled) in queue order, each with its status."""
    with connect() as db:
        jobs.mark_interrupted_jobs(db)
        found = grid_jobs(db, int(grid_id))
    if not found:
        raise PromptLabError(f"there is no grid {grid_id}")
    rows = sorted((_row(j) for j in found), key=lambda r: (r.status != "completed", r.val_loss is None,
                                                          r.val_loss or 0.0, r.job_id))
    for place, row in enumerate(r for r in rows if r.status == "completed" and r.val_loss is not None):
        row.rank = place + 1
    grid = job_grid(found[0]) or {}
    return GridRanking(int(grid_id), grid.get("name") or "", list(grid.get("settings") or {}), rows)


def job_grid_ranking(job_id) -> GridRanking | None:
    """The ranking of the grid a job belongs to; None when there is no job, or it is a job of its own."""
    if not job_id:
        return None
    with connect() as db:
        job = get_job(db, int(job_id))
    grid = job_grid(job) if job else None
    return grid_ranking(grid["id"]) if grid else None
