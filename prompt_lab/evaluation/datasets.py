"""Evaluation datasets: CSV, JSON Lines, JSON arrays, Parquet, Arrow and save_to_disk folders read into rows of
cells, checked against the server caps, and mapped onto a template's variables, gold answers and choices.

A cell is text, or a list of texts where the file holds a list of strings and numbers (JSON, Arrow, Parquet).
Every problem is raised as a DatasetError naming the file, the line (an array's item, an Arrow file's row) and
the column, before anything is returned, so a caller never works on part of a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from prompt_lab.evaluation.cells import DatasetError
from prompt_lab.evaluation.hf_files import ARROW_SUFFIXES, is_saved_dataset, read_arrow_files, saved_dataset_files
from prompt_lab.evaluation.text_files import read_text_table
from prompt_lab.settings import get_settings

__all__ = ["ColumnMapping", "Dataset", "DatasetError", "Item", "guess_mapping", "item_hash", "load_dataset",
           "load_dataset_bytes", "mapping_for", "to_items"]

SUFFIXES = (".csv", ".jsonl", ".json") + ARROW_SUFFIXES
_MB = 1024 * 1024


@dataclass
class Dataset:
    """The rows of one file (or saved folder), each cell a text or a list of texts, with the line each row starts
    on (`unit` says what the numbers count: line, item of a JSON array, or row of an Arrow/Parquet file)."""

    name: str
    columns: list[str]
    rows: list[dict[str, str | list[str]]]
    lines: list[int]
    content_hash: str
    unit: str = "line"
    # (line, column) -> why a list there cannot be answers or choices (it is kept as its JSON text)
    refused: dict[tuple[int, str], str] = field(default_factory=dict)


@dataclass
class ColumnMapping:
    """Which dataset columns feed the template variables, the gold answer (plus more acceptable answers in
    `aliases`) and the answer choices."""

    variables: dict[str, str]
    target: str | None = None
    choices: str | None = None
    aliases: str | None = None


def item_hash(variables: dict[str, str], targets: list[str]) -> str:
    """An item's identity by content: its input texts (sorted, so renaming a template variable keeps it) and its
    gold answers. Two runs pair on items with equal hashes."""
    payload = json.dumps({"inputs": sorted(str(v).strip() for v in variables.values()),
                          "gold": sorted(str(t).strip() for t in targets)}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Item:
    """One dataset row ready for a run: `targets` holds every acceptable gold answer, the primary (`target`)
    first; `content_hash` is item_hash(variables, targets)."""

    index: int
    line: int
    variables: dict[str, str]
    target: str | None
    choices: list[str] | None
    targets: list[str] = field(default_factory=list)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.targets and self.target is not None:
            self.targets = [self.target]
        if not self.content_hash:
            self.content_hash = item_hash(self.variables, self.targets)


def load_dataset(path: str | Path, split: str | None = None) -> Dataset:
    """Read a .csv, .jsonl, .json (JSON Lines or one array of objects), .parquet or .arrow file, or a folder
    written by datasets' save_to_disk (`split` picks one of a DatasetDict's splits)."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, split)
    name = path.name
    _check_suffix(name)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path}: is not a file")
    if split is not None:
        raise DatasetError(f"{name}: split '{split}' applies to a folder written by DatasetDict.save_to_disk, not "
                           "to one file; leave split empty")
    cap = get_settings().max_upload_bytes
    # The size is checked before any content is read, so an oversized file costs nothing.
    _check_size(name, os.path.getsize(path), cap)
    with open(path, "rb") as f:
        data = f.read(cap + 1)  # the file may have grown since getsize
    _check_size(name, len(data), cap)
    return _parse(data, name)


def load_dataset_bytes(data: bytes, name: str) -> Dataset:
    """Read an uploaded file's bytes; the format comes from the suffix of `name` (a folder cannot be uploaded)."""
    name = Path(name).name
    _check_suffix(name)
    _check_size(name, len(data), get_settings().max_upload_bytes)
    return _parse(bytes(data), name)


def _load_folder(folder: Path, split: str | None) -> Dataset:
    if not is_saved_dataset(folder):
        raise DatasetError(f"{folder}: is not a file, nor a folder written by datasets' save_to_disk (it has no "
                           "state.json or dataset_dict.json)")
    name, paths = saved_dataset_files(folder, split)
    cap = get_settings().max_upload_bytes
    _check_size(name, sum(os.path.getsize(p) for p in paths), cap, "data files are")
    files, digest, left = [], hashlib.sha256(), cap
    for path in paths:
        with open(path, "rb") as f:
            data = f.read(left + 1)
        left -= len(data)
        if left < 0:  # a file grew since its size was summed
            _check_size(name, cap - left, cap, "data files are")
        digest.update(len(data).to_bytes(8, "big") + data)  # the hash covers every data file, in order
        files.append((f"{name}/{path.name}", data))
    columns, rows, lines, cells = read_arrow_files(files, name)
    if not rows:
        raise DatasetError(f"{name}: no rows")
    return Dataset(name=name, columns=columns, rows=rows, lines=lines, content_hash=digest.hexdigest()[:16],
                   unit="row", refused=cells.refused)


TARGET_NAMES = ("target", "label", "answer", "gold", "reference", "output", "expected", "class", "category")
ALIAS_NAMES = ("aliases", "answer_aliases", "acceptable_answers", "targets")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]


def guess_mapping(dataset: Dataset, variables: list[str], target_candidates=TARGET_NAMES) -> ColumnMapping:
    """Map each variable to a column and pick a gold answer column, the way a person reading the header would.

    A variable takes the column of the same name (exact, else ignoring case), else the one column whose name
    has the variable as a word (`ticket` -> `ticket_text`, `review` -> `Review Body`). The target is the first
    unused column named like an answer (`label`, `gold_label`, `answer`, ...); more acceptable answers come from an
    unused column named `aliases`, `answer_aliases`, `acceptable_answers` or `targets`. Variables without a match
    are left out, for the user to map.
    """
    by_lower: dict[str, str] = {}
    for column in dataset.columns:
        by_lower.setdefault(column.lower(), column)

    def find(wanted: str, taken: set[str]) -> str | None:
        exact = wanted if wanted in dataset.columns else by_lower.get(wanted.lower())
        if exact is not None:
            return exact
        words = _tokens(wanted)
        near = [c for c in dataset.columns if c not in taken and words
                and any(_tokens(c)[i:i + len(words)] == words for i in range(len(_tokens(c))))]
        return near[0] if len(near) == 1 else None

    mapping: dict[str, str] = {}
    for var in variables:
        col = find(var, set(mapping.values()))
        if col is not None:
            mapping[var] = col
    # alias columns are never the target: `answer_aliases` has the word `answer` but holds the other answers
    used = set(mapping.values()) | set(_alias_columns(dataset, set(mapping.values())))
    target = next((col for cand in target_candidates if (col := find(cand, used)) is not None and col not in used),
                  None)
    return ColumnMapping(variables=mapping, target=target,
                         aliases=_alias_column(dataset, set(mapping.values()) | {target}))


def _alias_columns(dataset: Dataset, taken: set) -> list[str]:
    return [c for cand in ALIAS_NAMES for c in dataset.columns if c.lower() == cand and c not in taken]


def _alias_column(dataset: Dataset, taken: set) -> str | None:
    return next(iter(_alias_columns(dataset, taken)), None)


def mapping_for(dataset: Dataset, variables: list[str], columns: dict | None) -> ColumnMapping:
    """The mapping a spec names ({variables: {var: column}, target:, choices:, aliases:}; variables it leaves
    out map to the column of the same name, and aliases, when it does not name them, to a column named like
    `aliases`), or a guessed one when the spec names none."""
    if not columns:
        return guess_mapping(dataset, variables)
    mapping = ColumnMapping(variables=dict(columns.get("variables") or {}), target=columns.get("target"),
                            choices=columns.get("choices"), aliases=columns.get("aliases"))
    for var in variables:
        mapping.variables.setdefault(var, var)
    if "aliases" not in columns and mapping.target is not None:
        mapping.aliases = _alias_column(dataset, set(mapping.variables.values()) | {mapping.target, mapping.choices})
    return mapping


def to_items(dataset: Dataset, mapping: ColumnMapping) -> list[Item]:
    """Rows as run items; every mapped value must be present and non-empty (the target only if mapped, aliases
    never). A list gives several choices or acceptable answers; text choices and aliases are split on '|'."""
    name, unit = dataset.name, dataset.unit
    roles = (mapping.target, mapping.choices, mapping.aliases)
    for column in list(mapping.variables.values()) + [c for c in roles if c is not None]:
        if column not in dataset.columns:
            raise DatasetError(f"{name}: no column '{column}' (columns: {', '.join(dataset.columns)})")

    def value(row: dict, line: int, column: str) -> str | list[str]:
        if column not in row:
            raise DatasetError(f"{name}, {unit} {line}: missing column '{column}'")
        cell = row[column]
        if not (any(c.strip() for c in cell) if isinstance(cell, list) else cell.strip()):
            raise DatasetError(f"{name}, {unit} {line}: empty value in column '{column}'")
        return cell

    def texts(cell: str | list[str], line: int, column: str, split: bool) -> list[str]:
        """A column's answers or choices: a list's elements, else the text (split on '|' when `split`)."""
        problem = dataset.refused.get((line, column))
        if problem:
            raise DatasetError(f"{name}, {unit} {line}: column '{column}' holds a list whose {problem}; list "
                               "elements must be text or numbers")
        parts = cell if isinstance(cell, list) else cell.split("|") if split else [cell]
        return [p for p in parts if p.strip()]

    items = []
    for index, (row, line) in enumerate(zip(dataset.rows, dataset.lines)):
        variables = {var: _variable_text(value(row, line, col)) for var, col in mapping.variables.items()}
        targets: list[str] = []
        if mapping.target is not None:
            answers = texts(value(row, line, mapping.target), line, mapping.target, split=False)
            if mapping.aliases is not None and row.get(mapping.aliases):  # aliases may be missing or empty
                answers += [a.strip() for a in texts(row[mapping.aliases], line, mapping.aliases, split=True)]
            for answer in answers:  # an answer listed twice (after trimming spaces) counts once
                if all(answer.strip() != t.strip() for t in targets):
                    targets.append(answer)
        choices = None
        if mapping.choices is not None:
            choices = [c.strip() for c in texts(value(row, line, mapping.choices), line, mapping.choices, True)]
            if not choices:
                raise DatasetError(f"{name}, {unit} {line}: no choices in column '{mapping.choices}'")
        items.append(Item(index=index, line=line, variables=variables, target=targets[0] if targets else None,
                          choices=choices, targets=targets, content_hash=item_hash(variables, targets)))
    return items


def _variable_text(cell: str | list[str]) -> str:
    # a list fed to a template variable reads as its JSON text (a JSON Lines value always did)
    return cell if isinstance(cell, str) else json.dumps(cell, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------------

def _check_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        found = f"file type '{suffix}'" if suffix else "no file type"
        raise DatasetError(f"{name}: {found}; use a .csv, .jsonl, .json, .parquet or .arrow file (or a folder "
                           "written by datasets' save_to_disk)")
    return suffix


def _mb(n: int) -> str:
    return f"{n / _MB:.1f}".removesuffix(".0") + " MB"


def _check_size(name: str, size: int, cap: int, what: str = "file is") -> None:
    if size > cap:
        raise DatasetError(f"{name}: the {what} {_mb(size)} ({size:,} bytes), larger than the {_mb(cap)} "
                           f"upload limit (PROMPT_LAB_MAX_UPLOAD_BYTES raises it)")


def _parse(data: bytes, name: str) -> Dataset:
    if _check_suffix(name) in ARROW_SUFFIXES:
        columns, rows, lines, cells = read_arrow_files([(name, data)], name)
    else:
        columns, rows, lines, cells = read_text_table(data, name)
    if not rows:
        raise DatasetError(f"{name}: no rows")
    return Dataset(name=name, columns=columns, rows=rows, lines=lines,
                   content_hash=hashlib.sha256(data).hexdigest()[:16], unit=cells.unit, refused=cells.refused)


