"""Hugging Face `datasets` files on disk: Parquet, Arrow (IPC stream or file format) and save_to_disk folders.

Read with pyarrow (imported inside the functions, when such a file is read) into the shape the CSV and JSON
readers return: the columns, the rows, and each row's number (1-based, counted across a folder's files), with
values turned into cells under the same caps and messages (cells.py). Columns holding lists of strings or numbers
give list cells.

A `Dataset.save_to_disk` folder holds dataset_info.json, state.json (its `_data_files` list the shards in order)
and data-XXXXX-of-YYYYY.arrow files in the IPC stream format; a `DatasetDict.save_to_disk` folder holds
dataset_dict.json (`{"splits": [...]}`) and one such folder per split.
"""
from __future__ import annotations

import json
from pathlib import Path

from prompt_lab.evaluation.cells import Cells, DatasetError

ARROW_SUFFIXES = (".parquet", ".arrow")
_META_BYTES = 1024 * 1024  # dataset_dict.json and state.json are a few hundred bytes
_BATCH_ROWS = 1024


def is_saved_dataset(folder: Path) -> bool:
    """Whether a folder looks written by `save_to_disk` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def saved_dataset_files(folder: Path, split: str | None = None) -> tuple[str, list[Path]]:
    """The data files of a save_to_disk folder (of one split, for a DatasetDict) in the order its state.json
    lists them, and the name messages use: the folder's, or `folder/split`."""
    name, is_dict = folder.name, (folder / "dataset_dict.json").is_file()
    if is_dict:
        splits = _splits(folder)
        listed = ", ".join(splits)
        if split is None:
            raise DatasetError(f"{name}: a DatasetDict folder with the splits {listed}; choose one (split: "
                               f"{splits[0]} in the experiment file)")
        if split not in splits:
            raise DatasetError(f"{name}: no split '{split}'; the splits are {listed}")
        folder, name = folder / split, f"{name}/{split}"
        if not (folder / "state.json").is_file():
            raise DatasetError(f"{name}: the split's folder has no state.json (not written by save_to_disk?)")
    state = _read_json(folder / "state.json", name)
    if split is not None and not is_dict and state.get("_split") != split:
        saved = f"split '{state['_split']}'" if isinstance(state.get("_split"), str) else "no split name"
        raise DatasetError(f"{name}: no split '{split}': the folder holds one dataset ({saved}); leave split empty")
    entries = state.get("_data_files")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{name}: state.json lists no data files ('_data_files')")
    paths = []
    for entry in entries:
        filename = entry.get("filename") if isinstance(entry, dict) else None
        # a plain file name inside the folder: state.json must not point anywhere else on disk
        if not isinstance(filename, str) or Path(filename).name != filename or filename in ("", ".", ".."):
            raise DatasetError(f"{name}: state.json lists a data file as {filename!r}, not a file name in the folder")
        path = folder / filename
        if not path.is_file():
            raise DatasetError(f"{name}: state.json lists {filename}, which is not in the folder")
        paths.append(path)
    return name, paths


def read_arrow_files(files: list[tuple[str, bytes]], name: str) -> tuple[list[str], list[dict], list[int], Cells]:
    """The columns, rows and row numbers of Parquet/Arrow data given as (file name, bytes) pairs, read in order,
    like text_files.read_text_table, with the Cells they were read under."""
    cells = Cells(name, "row")
    columns: dict[str, None] = {}  # an ordered set: a later file's new columns come after the first file's
    rows: list[dict] = []
    for label, data in files:
        names, total, batches = _open(data, label)
        duplicates = sorted({c for c in names if names.count(c) > 1})
        if duplicates:
            raise DatasetError(f"{label}: duplicate column names: {', '.join(repr(c) for c in duplicates)}")
        if total is not None:
            cells.check_rows(len(rows) + total)  # Parquet knows its row count: refuse before reading any row
        columns.update(dict.fromkeys(names))
        try:
            for batch in batches:
                cells.check_rows(len(rows) + batch.num_rows)
                for values in batch.to_pylist():
                    number = len(rows) + 1
                    rows.append({column: cells.value(value, number, column) for column, value in values.items()})
        except DatasetError:
            raise
        except _arrow_errors() as exc:
            raise DatasetError(f"{label}: {_kind(label)} data that cannot be read ({_short(exc)})") from None
    return list(columns), rows, list(range(1, len(rows) + 1)), cells


# ---------------------------------------------------------------------------------------------------------------------

def _arrow_errors() -> tuple[type[Exception], ...]:
    import pyarrow as pa

    return pa.ArrowException, OSError, ValueError


def _kind(label: str) -> str:
    return "Parquet" if label.lower().endswith(".parquet") else "Arrow"


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _open(data: bytes, label: str):
    """(column names, row count if known up front, record batches) of one Parquet or Arrow file's bytes."""
    import pyarrow as pa

    try:
        if _kind(label) == "Parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(pa.BufferReader(data))
            return parquet.schema_arrow.names, parquet.metadata.num_rows, _parquet_batches(parquet)
        if data[:6] == b"ARROW1":  # the IPC file format starts with its magic; the stream format does not
            reader = pa.ipc.open_file(pa.BufferReader(data))
            return reader.schema.names, None, (reader.get_batch(i) for i in range(reader.num_record_batches))
        reader = pa.ipc.open_stream(pa.BufferReader(data))
        return reader.schema.names, None, iter(reader)
    except _arrow_errors() as exc:
        raise DatasetError(f"{label}: not a readable {_kind(label)} file ({_short(exc)})") from None


def _parquet_batches(parquet):
    # a generator: no row is read before the row count (from the file's footer) has passed the cap
    yield from parquet.iter_batches(_BATCH_ROWS)


def _read_json(path: Path, name: str) -> dict:
    with open(path, "rb") as f:
        data = f.read(_META_BYTES + 1)
    if len(data) > _META_BYTES:
        raise DatasetError(f"{name}: {path.name} is larger than {_META_BYTES:,} bytes; it is not datasets' metadata")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{name}: {path.name} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{name}: {path.name} is not a JSON object")
    return value


def _splits(folder: Path) -> list[str]:
    splits = _read_json(folder / "dataset_dict.json", folder.name).get("splits")
    # split names become folder names: plain names only, so a crafted file cannot point outside the folder
    if (not isinstance(splits, list) or not splits
            or not all(isinstance(s, str) and s and Path(s).name == s and s not in (".", "..") for s in splits)):
        raise DatasetError(f"{folder.name}: dataset_dict.json does not list its splits as names ('splits': [...])")
    return splits
