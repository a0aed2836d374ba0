"""Evaluation datasets: CSV and JSON Lines files read into rows of text, checked against the server caps.

Every problem is raised as a DatasetError naming the file, the line and the column, before anything is
returned, so a caller never works on part of a file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.settings import get_settings

SUFFIXES = (".csv", ".jsonl", ".json")
_BOM = b"\xef\xbb\xbf"
_MB = 1024 * 1024
_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


class DatasetError(PromptLabError):
    """A dataset file or column mapping that cannot be used; the message names the file, line and column."""


@dataclass
class Dataset:
    """The rows of one file, every value a string, with the line each row starts on."""

    name: str
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    content_hash: str


@dataclass
class ColumnMapping:
    """Which dataset columns feed the template variables, the gold answer and the answer choices."""

    variables: dict[str, str]
    target: str | None = None
    choices: str | None = None


@dataclass
class Item:
    """One dataset row ready for a run."""

    index: int
    line: int
    variables: dict[str, str]
    target: str | None
    choices: list[str] | None


def load_dataset(path: str | Path) -> Dataset:
    """Read a .csv, .jsonl or .json (JSON Lines) file."""
    path = Path(path)
    name = path.name
    _check_suffix(name)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path}: is not a file")
    cap = get_settings().max_upload_bytes
    # The size is checked before any content is read, so an oversized file costs nothing.
    _check_size(name, os.path.getsize(path), cap)
    with open(path, "rb") as f:
        data = f.read(cap + 1)  # the file may have grown since getsize
    _check_size(name, len(data), cap)
    return _parse(data, name)


def load_dataset_bytes(data: bytes, name: str) -> Dataset:
    """Read an uploaded file's bytes; the format comes from the suffix of `name`."""
    name = Path(name).name
    _check_suffix(name)
    _check_size(name, len(data), get_settings().max_upload_bytes)
    return _parse(bytes(data), name)


TARGET_NAMES = ("target", "label", "answer", "gold", "reference", "output", "expected", "class", "category")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]


def guess_mapping(dataset: Dataset, variables: list[str], target_candidates=TARGET_NAMES) -> ColumnMapping:
    """Map each variable to a column and pick a gold answer column, the way a person reading the header would.

    A variable takes the column of the same name (exact, else ignoring case), else the one column whose name
    has the variable as a word (`ticket` -> `ticket_text`, `review` -> `Review Body`). The target is the first
    unused column named like an answer (`label`, `gold_label`, `answer`, ...). Variables without a match are left
    out, for the user to map.
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
    used = set(mapping.values())
    target = next((col for cand in target_candidates if (col := find(cand, used)) is not None and col not in used),
                  None)
    return ColumnMapping(variables=mapping, target=target)


def mapping_for(dataset: Dataset, variables: list[str], columns: dict | None) -> ColumnMapping:
    """The mapping a spec names ({variables: {var: column}, target:, choices:}, variables it leaves out
    map to the column of the same name), or a guessed one when the spec names none."""
    if not columns:
        return guess_mapping(dataset, variables)
    mapping = ColumnMapping(variables=dict(columns.get("variables") or {}), target=columns.get("target"),
                            choices=columns.get("choices"))
    for var in variables:
        mapping.variables.setdefault(var, var)
    return mapping


def to_items(dataset: Dataset, mapping: ColumnMapping) -> list[Item]:
    """Rows as run items; every mapped value must be present and non-empty (the target only if mapped)."""
    name = dataset.name
    used = list(mapping.variables.values()) + [c for c in (mapping.target, mapping.choices) if c is not None]
    for column in used:
        if column not in dataset.columns:
            raise DatasetError(f"{name}: no column '{column}' (columns: {', '.join(dataset.columns)})")

    def value(row: dict[str, str], line: int, column: str) -> str:
        if column not in row:
            raise DatasetError(f"{name}, line {line}: missing column '{column}'")
        text = row[column]
        if not text.strip():
            raise DatasetError(f"{name}, line {line}: empty value in column '{column}'")
        return text

    items = []
    for index, (row, line) in enumerate(zip(dataset.rows, dataset.lines)):
        variables = {var: value(row, line, col) for var, col in mapping.variables.items()}
        target = value(row, line, mapping.target) if mapping.target is not None else None
        choices = None
        if mapping.choices is not None:
            choices = [c.strip() for c in value(row, line, mapping.choices).split("|") if c.strip()]
            if not choices:
                raise DatasetError(f"{name}, line {line}: no choices in column '{mapping.choices}'")
        items.append(Item(index=index, line=line, variables=variables, target=target, choices=choices))
    return items


# ---------------------------------------------------------------------------------------------------------------------

def _check_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        found = f"file type '{suffix}'" if suffix else "no file type"
        raise DatasetError(f"{name}: {found}; use a .csv, .jsonl or .json (JSON Lines) file")
    return suffix


def _mb(n: int) -> str:
    return f"{n / _MB:.1f}".removesuffix(".0") + " MB"


def _check_size(name: str, size: int, cap: int) -> None:
    if size > cap:
        raise DatasetError(f"{name}: the file is {_mb(size)} ({size:,} bytes), larger than the {_mb(cap)} "
                           f"upload limit (PROMPT_LAB_MAX_UPLOAD_BYTES raises it)")


def _decode(data: bytes, name: str) -> str:
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1  # 1-based byte within the line
        raise DatasetError(f"{name}: not UTF-8 text (line {line}, byte {column}); save the file as UTF-8") from None


def _parse(data: bytes, name: str) -> Dataset:
    suffix = _check_suffix(name)
    text = _decode(data, name)
    settings = get_settings()
    if not text.strip():
        raise DatasetError(f"{name}: empty file")
    reader = _read_csv if suffix == ".csv" else _read_jsonl
    columns, rows, lines = reader(text, name, settings.max_rows, settings.max_cell_chars)
    if not rows:
        raise DatasetError(f"{name}: no rows")
    return Dataset(name=name, columns=columns, rows=rows, lines=lines,
                   content_hash=hashlib.sha256(data).hexdigest()[:16])


def _too_many_rows(name: str, max_rows: int) -> DatasetError:
    return DatasetError(f"{name}: more than {max_rows} rows (the limit is {max_rows}; PROMPT_LAB_MAX_ROWS raises it)")


def _check_cell(name: str, line: int, column: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        raise DatasetError(f"{name}, line {line}: column '{column}' is longer than {max_chars} characters")


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _read_csv(text: str, name: str, max_rows: int, max_chars: int):
    # The csv module refuses fields over 128 KiB by default; no field can be longer than the upload cap, and
    # the cell cap is checked below with a message naming the column, so the module's own limit is raised.
    needed = get_settings().max_upload_bytes + 1
    if csv.field_size_limit() < needed:
        csv.field_size_limit(needed)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    columns: list[str] | None = None
    while True:
        # line_num counts physical lines read so far, so the next record starts on the line after it,
        # even when an earlier quoted field spanned several lines.
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"{name}, line {start}: not valid CSV ({exc})") from None
        if _is_blank(record):
            continue
        if columns is None:
            columns = _check_header(record, name, start)
            continue
        if len(rows) == max_rows:
            raise _too_many_rows(name, max_rows)
        if len(record) != len(columns):
            raise DatasetError(f"{name}, line {start}: {len(record)} fields, expected {len(columns)} "
                               f"(columns: {', '.join(columns)})")
        for column, value in zip(columns, record):
            _check_cell(name, start, column, value, max_chars)
        rows.append(dict(zip(columns, record)))
        lines.append(start)
    if columns is None:
        raise DatasetError(f"{name}: empty file")
    return columns, rows, lines


def _check_header(record: list[str], name: str, line: int) -> list[str]:
    columns = [c.strip() for c in record]
    unnamed = [str(i) for i, c in enumerate(columns, 1) if not c]
    if unnamed:
        which = "column" if len(unnamed) == 1 else "columns"
        raise DatasetError(f"{name}, line {line}: header {which} {', '.join(unnamed)} (counting from 1) "
                           f"without a name")
    duplicates = [c for c, n in Counter(columns).items() if n > 1]
    if duplicates:
        names = ", ".join(f"'{c}'" for c in duplicates)
        raise DatasetError(f"{name}, line {line}: duplicate column names in the header: {names}")
    return columns


def _cell_text(value) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""  # null reads as an empty value, which to_items reports if the column is used
    # JSON spelling (true, 1.5, nested objects) rather than Python's, so the text matches the file
    return json.dumps(value, ensure_ascii=False)


def _read_jsonl(text: str, name: str, max_rows: int, max_chars: int):
    hint = " (.json files are read as JSON Lines: one object per line)" if name.lower().endswith(".json") else ""
    columns: dict[str, None] = {}  # an ordered set: keys in first-seen order
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    # StringIO splits on "\n" only, unlike str.splitlines, so line numbers match what an editor shows
    for line, raw in enumerate(io.StringIO(text), 1):
        if not raw.strip():
            continue
        if len(rows) == max_rows:
            raise _too_many_rows(name, max_rows)
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}, line {line}: not valid JSON ({exc.msg}, column {exc.colno}){hint}") from None
        if not isinstance(obj, dict):
            kind = _JSON_TYPES.get(type(obj), type(obj).__name__)
            raise DatasetError(f"{name}, line {line}: expected a JSON object, got {kind}{hint}")
        row = {}
        for key, value in obj.items():
            row[key] = cell = _cell_text(value)
            _check_cell(name, line, key, cell, max_chars)
            columns.setdefault(key)
        rows.append(row)
        lines.append(line)
    return list(columns), rows, lines
