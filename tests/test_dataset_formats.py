"""Datasets as researchers have them: JSON lists for choices and several gold answers, BIG-bench style JSON arrays,
Parquet and Arrow files, and folders written by Hugging Face `datasets` (save_to_disk), all under the same caps
and with messages naming the file, the line (item, row) and the column."""
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prompt_lab.evaluation.datasets import (ColumnMapping, DatasetError, guess_mapping, item_hash, load_dataset,
                                            load_dataset_bytes, mapping_for, to_items)
from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec

BIG_BENCH = [
    {"input": "How many legs has a spider?", "choices": ["6", "8", 10], "target": "8", "aliases": ["eight"]},
    {"input": "Largest planet?", "choices": ["Mars", "Jupiter"], "target": "Jupiter", "aliases": []},
    {"input": "2.5 + 2.5?", "choices": [5, 2.5], "target": ["5", "5.0"], "aliases": ["five", "5"]},
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def refused(load, message):
    with pytest.raises(DatasetError, match=f"^{re.escape(message)}$"):
        load()


# --- lists in JSON Lines and JSON arrays -------------------------------------------------------------------------

def test_a_big_bench_jsonl_round_trips_into_items_with_choices_and_every_gold_answer(home, tmp_path):
    path = tmp_path / "bb.jsonl"
    path.write_bytes(jsonl(BIG_BENCH))
    ds = load_dataset(path)
    assert ds.columns == ["input", "choices", "target", "aliases"]
    assert ds.rows[0] == {"input": "How many legs has a spider?", "choices": ["6", "8", "10"], "target": "8",
                          "aliases": ["eight"]}
    mapping = guess_mapping(ds, ["input"])
    assert mapping == ColumnMapping(variables={"input": "input"}, target="target", aliases="aliases")
    mapping.choices = "choices"
    items = to_items(ds, mapping)
    assert [(i.target, i.targets, i.choices) for i in items] == [
        ("8", ["8", "eight"], ["6", "8", "10"]),
        ("Jupiter", ["Jupiter"], ["Mars", "Jupiter"]),  # an empty aliases list adds nothing
        ("5", ["5", "5.0", "five"], ["5", "2.5"]),  # a list target: several answers; "5" again counts once
    ]
    assert [i.line for i in items] == [1, 2, 3]
    assert items[0].content_hash == item_hash({"input": "How many legs has a spider?"}, ["8", "eight"])
    # the same file as one JSON array (BIG-bench's examples list) gives the same items, numbered by position
    array = tmp_path / "bb.json"
    array.write_text(json.dumps(BIG_BENCH, indent=2))
    same = to_items(load_dataset(array), mapping)
    assert [(i.line, i.targets, i.choices, i.content_hash) for i in same] == [
        (i.line, i.targets, i.choices, i.content_hash) for i in items]


def test_item_hash_is_the_inputs_and_gold_whatever_their_names_and_order(home):
    assert item_hash({"question": "How many legs has a spider?"}, ["8", "eight"]) == "fd91269b403f743a"
    # a renamed variable, the answers in another order and spaces around them: the same item
    assert item_hash({"q": " How many legs has a spider?"}, ["eight ", "8"]) == "fd91269b403f743a"
    assert item_hash({"question": "How many legs has a spider?"}, []) == "b99a49dfa21a3db0"
    assert item_hash({"question": "How many legs has a spider?"}, ["6"]) != "fd91269b403f743a"


def test_list_elements_must_be_text_or_numbers_where_they_are_answers_or_choices(home):
    data = jsonl([{"q": "a", "gold": ["x"], "opts": ["x", "y"], "meta": [{"k": 1}]},
                  {"q": "b", "gold": ["y", {"no": 1}], "opts": ["x", True], "meta": [None]}])
    ds = load_dataset_bytes(data, "lists.jsonl")
    # a column nobody maps may hold anything; fed to a variable, such a list is its JSON text
    [first, second] = to_items(ds, ColumnMapping(variables={"q": "q", "m": "meta"}))
    assert (first.variables["m"], second.variables["m"]) == ('[{"k": 1}]', "[null]")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "q"}, target="gold")),
            "lists.jsonl, line 2: column 'gold' holds a list whose element 2 is an object; list elements must be "
            "text or numbers")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "q"}, choices="opts")),
            "lists.jsonl, line 2: column 'opts' holds a list whose element 2 is a boolean; list elements must be "
            "text or numbers")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "q"}, target="q", aliases="meta")),
            "lists.jsonl, line 1: column 'meta' holds a list whose element 1 is an object; list elements must be "
            "text or numbers")


def test_an_empty_list_is_no_choices_and_no_gold_but_allowed_as_aliases(home):
    ds = load_dataset_bytes(jsonl([{"q": "a", "gold": [], "opts": [], "more": []},
                                   {"q": "b", "gold": "y", "opts": "z", "more": " "}]), "e.jsonl")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "q"}, target="gold")),
            "e.jsonl, line 1: empty value in column 'gold'")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "q"}, choices="opts")),
            "e.jsonl, line 1: empty value in column 'opts'")
    refused(lambda: to_items(ds, ColumnMapping(variables={"q": "more"})), "e.jsonl, line 1: empty value in column "
                                                                           "'more'")
    # aliases may be an empty list or blank; blank list elements are left out
    items = to_items(ds, ColumnMapping(variables={"q": "q"}, target="q", aliases="more"))
    assert [i.targets for i in items] == [["a"], ["b"]]
    blanks = load_dataset_bytes(jsonl([{"q": "b", "gold": ["", "y"], "opts": ["  ", "z", " w "]}]), "b.jsonl")
    [item] = to_items(blanks, ColumnMapping(variables={"q": "q"}, target="gold", choices="opts"))
    assert (item.target, item.targets, item.choices) == ("y", ["y"], ["z", "w"])


def test_text_aliases_split_on_bars_and_need_a_target(home):
    ds = load_dataset_bytes(b"q,answer,aliases\nspider legs?,8,eight | Eight|8\nsun?,star,\n", "a.csv")
    mapping = mapping_for(ds, ["q"], {"target": "answer"})  # aliases left out: the column named like them
    assert mapping == ColumnMapping(variables={"q": "q"}, target="answer", aliases="aliases")
    assert [i.targets for i in to_items(ds, mapping)] == [["8", "eight", "Eight"], ["star"]]
    # named as none: no aliases; without a target column there is no gold answer at all
    assert mapping_for(ds, ["q"], {"target": "answer", "aliases": None}).aliases is None
    [item, _] = to_items(ds, ColumnMapping(variables={"q": "q"}, aliases="aliases"))
    assert (item.target, item.targets) == (None, [])


def test_guess_mapping_never_takes_an_alias_column_as_the_target(home):
    ds = load_dataset_bytes(b"question,answer_aliases,gold\nq,a|b,a\n", "g.csv")
    assert guess_mapping(ds, ["question"]) == ColumnMapping(variables={"question": "question"}, target="gold",
                                                            aliases="answer_aliases")
    for name in ("Acceptable_Answers", "targets"):
        ds = load_dataset_bytes(f"question,label,{name}\nq,a,b\n".encode(), "g.csv")
        assert guess_mapping(ds, ["question"]).aliases == name
    # a column the variables take is not an alias column
    ds = load_dataset_bytes(b"aliases,label\nq,a\n", "v.csv")
    assert guess_mapping(ds, ["aliases"]) == ColumnMapping(variables={"aliases": "aliases"}, target="label")


def test_a_json_array_names_its_items_in_errors(home, monkeypatch):
    refused(lambda: load_dataset_bytes(b'[{"a": 1}, {"a": 2}, "three"]', "arr.json"),
            "arr.json, item 3: expected a JSON object, got string")
    refused(lambda: load_dataset_bytes(b'[{"a": 1},\n {"a": 2},]\n', "arr.json"),
            "arr.json, line 2: not valid JSON (Expecting value, column 11)")
    refused(lambda: load_dataset_bytes(b"[]", "arr.json"), "arr.json: no rows")
    monkeypatch.setenv("PROMPT_LAB_MAX_CELL_CHARS", "5")
    refused(lambda: load_dataset_bytes(b'[{"a": "12345"}, {"a": ["12", "3"]}]', "arr.json"),
            "arr.json, item 2: column 'a' is longer than 5 characters")  # a list counts as its JSON text
    monkeypatch.setenv("PROMPT_LAB_MAX_ROWS", "2")
    refused(lambda: load_dataset_bytes(b'[{"a": 1}, {"a": 2}, {"a": 3}]', "arr.json"),
            "arr.json: more than 2 rows (the limit is 2; PROMPT_LAB_MAX_ROWS raises it)")


# --- Parquet and Arrow files -------------------------------------------------------------------------------------

TABLE = {"question": ["Spider legs?", "Largest planet?"], "options": [["6", "8"], ["Mars", "Jupiter"]],
         "answer": ["8", "Jupiter"], "aliases": [["eight"], []], "score": [1.5, None]}


def write_parquet(path, columns=TABLE):
    pq.write_table(pa.table(columns), path)
    return path


def write_arrow(path, columns=TABLE, file_format=False):
    table = pa.table(columns)
    with pa.OSFile(str(path), "wb") as sink:
        writer = (pa.ipc.new_file if file_format else pa.ipc.new_stream)(sink, table.schema)
        writer.write_table(table)
        writer.close()
    return path


EXPECTED_ROWS = [{"question": "Spider legs?", "options": ["6", "8"], "answer": "8", "aliases": ["eight"],
                  "score": "1.5"},
                 {"question": "Largest planet?", "options": ["Mars", "Jupiter"], "answer": "Jupiter", "aliases": [],
                  "score": ""}]


@pytest.mark.parametrize("write", [write_parquet, write_arrow, lambda p: write_arrow(p, file_format=True)],
                         ids=["parquet", "arrow-stream", "arrow-file"])
def test_parquet_and_arrow_files_read_like_json_lines(home, tmp_path, write):
    suffix = ".parquet" if write is write_parquet else ".arrow"
    path = write(tmp_path / f"qa{suffix}")
    ds = load_dataset(path)
    assert (ds.name, ds.columns, ds.rows, ds.lines, ds.unit) == (
        f"qa{suffix}", list(TABLE), EXPECTED_ROWS, [1, 2], "row")
    assert load_dataset_bytes(path.read_bytes(), f"upload/qa{suffix}") == ds
    items = to_items(ds, mapping_for(ds, ["question"], {"target": "answer", "choices": "options"}))
    assert [(i.targets, i.choices) for i in items] == [(["8", "eight"], ["6", "8"]),
                                                      (["Jupiter"], ["Mars", "Jupiter"])]
    refused(lambda: to_items(ds, ColumnMapping(variables={"question": "question"}, target="score")),
            f"qa{suffix}, row 2: empty value in column 'score'")


def test_too_many_rows_in_parquet_are_refused_before_any_row_is_read(home, tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "many.parquet", {"text": [f"t{i}" for i in range(50)]})
    monkeypatch.setenv("PROMPT_LAB_MAX_ROWS", "49")
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("a row was read"))
    refused(lambda: load_dataset(path), "many.parquet: more than 49 rows (the limit is 49; PROMPT_LAB_MAX_ROWS "
                                        "raises it)")
    monkeypatch.setenv("PROMPT_LAB_MAX_ROWS", "3")
    refused(lambda: load_dataset(write_arrow(tmp_path / "many.arrow", {"text": [f"t{i}" for i in range(50)]})),
            "many.arrow: more than 3 rows (the limit is 3; PROMPT_LAB_MAX_ROWS raises it)")


def test_arrow_cells_and_files_are_capped_and_checked(home, tmp_path, monkeypatch):
    path = write_arrow(tmp_path / "long.arrow", {"text": ["short", "x" * 30]})
    monkeypatch.setenv("PROMPT_LAB_MAX_CELL_CHARS", "20")
    refused(lambda: load_dataset(path), "long.arrow, row 2: column 'text' is longer than 20 characters")
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", "100")
    size = path.stat().st_size
    refused(lambda: load_dataset(path), f"long.arrow: the file is 0 MB ({size:,} bytes), larger than the 0 MB upload "
                                        "limit (PROMPT_LAB_MAX_UPLOAD_BYTES raises it)")
    with pytest.raises(DatasetError, match=r"^junk\.parquet: not a readable Parquet file \(.+\)$"):
        load_dataset_bytes(b"not parquet at all", "junk.parquet")
    with pytest.raises(DatasetError, match=r"^junk\.arrow: not a readable Arrow file \(.+\)$"):
        load_dataset_bytes(b"not arrow", "junk.arrow")
    refused(lambda: load_dataset(path, split="train"), "long.arrow: split 'train' applies to a folder written by "
                                                       "DatasetDict.save_to_disk, not to one file; leave split empty")


# --- folders written by datasets.save_to_disk --------------------------------------------------------------------

BB_ROWS = [{"input": f"question {i}", "choices": ["a", "b", "c"], "target": "abc"[i % 3], "aliases": [str(i)]}
           for i in range(7)]


def test_a_saved_dataset_folder_reads_its_shards_in_order(home, tmp_path):
    import datasets

    folder = tmp_path / "bb_saved"
    datasets.Dataset.from_list(BB_ROWS).save_to_disk(str(folder), num_shards=3)
    ds = load_dataset(folder)
    assert (ds.name, ds.columns, ds.lines, ds.unit) == ("bb_saved", ["input", "choices", "target", "aliases"],
                                                        list(range(1, 8)), "row")
    assert ds.rows == BB_ROWS
    items = to_items(ds, mapping_for(ds, ["input"], {"choices": "choices", "target": "target"}))
    assert (items[4].targets, items[4].choices, items[4].line) == (["b", "4"], ["a", "b", "c"], 5)
    # the shards are read in the order state.json lists them, not by name
    state = json.loads((folder / "state.json").read_text())
    assert len(state["_data_files"]) == 3
    reordered = {**state, "_data_files": state["_data_files"][::-1]}
    (folder / "state.json").write_text(json.dumps(reordered))
    assert [r["input"] for r in load_dataset(folder).rows] == [f"question {i}" for i in (5, 6, 3, 4, 0, 1, 2)]
    (folder / "state.json").write_text(json.dumps(state))
    # the hash covers every shard: changing the last one changes it
    before = ds.content_hash
    last = folder / state["_data_files"][-1]["filename"]
    write_arrow(last, {"input": ["changed"], "choices": [["a"]], "target": ["a"], "aliases": [["0"]]})
    after = load_dataset(folder)
    assert after.content_hash != before and after.rows[-1]["input"] == "changed"


def test_a_saved_dataset_dict_needs_a_known_split(home, tmp_path):
    import datasets

    folder = tmp_path / "bb_dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(BB_ROWS[:5]),
                          "test": datasets.Dataset.from_list(BB_ROWS[5:])}).save_to_disk(str(folder))
    refused(lambda: load_dataset(folder), "bb_dict: a DatasetDict folder with the splits train, test; choose one "
                                          "(split: train in the experiment file)")
    refused(lambda: load_dataset(folder, split="validation"),
            "bb_dict: no split 'validation'; the splits are train, test")
    test = load_dataset(folder, split="test")
    assert (test.name, test.rows, test.lines) == ("bb_dict/test", BB_ROWS[5:], [1, 2])
    assert len(load_dataset(folder, split="train").rows) == 5
    refused(lambda: load_dataset(folder / "train", split="test"),
            "train: no split 'test': the folder holds one dataset (no split name); leave split empty")


def test_an_oversize_folder_is_refused_by_the_sum_of_its_data_files_before_reading(home, tmp_path, monkeypatch):
    import builtins

    import datasets

    folder = tmp_path / "big"
    datasets.Dataset.from_list(BB_ROWS).save_to_disk(str(folder), num_shards=2)
    files = sorted(folder.glob("data-*.arrow"))
    total = sum(p.stat().st_size for p in files)
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", str(total - 1))  # each file is under it, the sum is not
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: (
        pytest.fail(f"{file} was read") if str(file).endswith(".arrow") else real_open(file, *a, **k)))
    refused(lambda: load_dataset(folder), f"big: the data files are 0 MB ({total:,} bytes), larger than the 0 MB "
                                          "upload limit (PROMPT_LAB_MAX_UPLOAD_BYTES raises it)")
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", str(total))
    assert len(load_dataset(folder).rows) == 7


def test_a_hand_written_folder_cannot_point_outside_itself(home, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../secret.arrow"}]}))
    refused(lambda: load_dataset(folder), "odd: state.json lists a data file as '../secret.arrow', not a file name "
                                          "in the folder")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    refused(lambda: load_dataset(folder), "odd: state.json lists data-00000-of-00001.arrow, which is not in the folder")
    (folder / "state.json").unlink()
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["../.."]}))
    refused(lambda: load_dataset(folder), "odd: dataset_dict.json does not list its splits as names ('splits': [...])")


# --- the experiment file -----------------------------------------------------------------------------------------

def test_an_experiment_names_a_split_and_alias_columns(tmp_path):
    path = tmp_path / "bb.yaml"
    path.write_text("template: qa\ndataset: data/bb_dict\nsplit: test\n"
                    "columns: {variables: {question: input}, target: target, choices: choices, aliases: aliases}\n")
    spec = load_spec(path)
    assert (spec.split, spec.dataset) == ("test", str(tmp_path / "data" / "bb_dict"))
    assert spec.columns["aliases"] == "aliases"
    assert EvalSpec(template="t", dataset="d.csv").split is None
    path.write_text("template: t\ndataset: d.csv\nsplit: 3\n")
    with pytest.raises(ExperimentError, match=rf"^{re.escape(str(path))}, line 3: field 'split': must be text, got 3$"):
        load_spec(path)


@pytest.mark.parametrize("columns, says", [
    ({"target": "a", "alias": "b"}, "field 'columns': unknown key 'alias'; allowed: variables, target, choices, "
                                    "aliases"),
    ({"aliases": ["a", "b"]}, "field 'columns': aliases must be a column name, got ['a', 'b']"),
    ({"target": ""}, "field 'columns': target must be a column name, got ''"),
    ({"variables": ["q"]}, "field 'columns': variables must map each template variable to a column name, e.g. "
                           "{review: text}, got ['q']"),
])
def test_a_wrong_columns_mapping_is_named(tmp_path, columns, says):
    with pytest.raises(ExperimentError, match=f"^{re.escape(f'exp.yaml: {says}')}$"):
        EvalSpec(template="t", dataset="d.csv", columns=columns).validate("exp.yaml")
