"""CSV, JSON Lines and JSON array files read into rows of cells under the caps (see cells.py).

A .json file is JSON Lines unless its first non-space character is '[': then it is one array of objects
(BIG-bench style) and a row's number is its position in the array ("item 3") instead of its line.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter

from prompt_lab.evaluation.cells import JSON_TYPES, Cells, DatasetError
from prompt_lab.settings import get_settings

_BOM = b"\xef\xbb\xbf"
_JSON_HINT = (" (.json files are read as JSON Lines, one object per line, or as one JSON array of objects when "
              "the file starts with '[')")


def read_text_table(data: bytes, name: str) -> tuple[list[str], list[dict], list[int], Cells]:
    """The columns, rows and row numbers of a .csv, .jsonl or .json file's bytes, with the Cells they were read
    under (its unit and the lists it refused)."""
    text = _decode(data, name)
    if not text.strip():
        raise DatasetError(f"{name}: empty file")
    suffix = name.lower().rpartition(".")[2]
    is_array = suffix == "json" and text.lstrip().startswith("[")
    cells = Cells(name, "item" if is_array else "line")
    reader = _read_csv if suffix == "csv" else _read_json_array if is_array else _read_jsonl
    columns, rows, lines = reader(text, name, cells)
    return columns, rows, lines, cells


def _decode(data: bytes, name: str) -> str:
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1  # 1-based byte within the line
        raise DatasetError(f"{name}: not UTF-8 text (line {line}, byte {column}); save the file as UTF-8") from None


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _read_csv(text: str, name: str, cells: Cells):
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
        cells.check_rows(len(rows) + 1)
        if len(record) != len(columns):
            raise DatasetError(f"{name}, line {start}: {len(record)} fields, expected {len(columns)} "
                               f"(columns: {', '.join(columns)})")
        rows.append({column: cells.text(value, start, column) for column, value in zip(columns, record)})
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


def _object_row(obj, name: str, cells: Cells, line: int, columns: dict, hint: str = "") -> dict:
    if not isinstance(obj, dict):
        kind = JSON_TYPES.get(type(obj), type(obj).__name__)
        raise DatasetError(f"{name}, {cells.unit} {line}: expected a JSON object, got {kind}{hint}")
    for key in obj:
        columns.setdefault(key)
    return {key: cells.value(value, line, key) for key, value in obj.items()}


def _read_jsonl(text: str, name: str, cells: Cells):
    hint = _JSON_HINT if name.lower().endswith(".json") else ""
    columns: dict[str, None] = {}  # an ordered set: keys in first-seen order
    rows: list[dict] = []
    lines: list[int] = []
    # StringIO splits on "\n" only, unlike str.splitlines, so line numbers match what an editor shows
    for line, raw in enumerate(io.StringIO(text), 1):
        if not raw.strip():
            continue
        cells.check_rows(len(rows) + 1)
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}, line {line}: not valid JSON ({exc.msg}, column {exc.colno}){hint}") from None
        rows.append(_object_row(obj, name, cells, line, columns, hint))
        lines.append(line)
    return list(columns), rows, lines


def _read_json_array(text: str, name: str, cells: Cells):
    """One JSON array of objects (BIG-bench style); a row's number is its position in the array."""
    try:
        items = json.loads(text)  # a text starting with '[' that parses is a list
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{name}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    cells.check_rows(len(items))
    columns: dict[str, None] = {}
    rows = [_object_row(obj, name, cells, i, columns) for i, obj in enumerate(items, 1)]
    return list(columns), rows, list(range(1, len(rows) + 1))
