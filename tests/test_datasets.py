"""Dataset loading: good files read right, malformed files fail fast with messages naming file, line and column."""
import csv
import io
import json
import re

import pytest

from prompt_lab.evaluation.datasets import (ColumnMapping, Dataset, DatasetError, guess_mapping, item_hash,
                                            load_dataset, load_dataset_bytes, mapping_for, to_items)
from prompt_lab.errors import PromptLabError


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def fails(path_or_bytes, match, name=None):
    """Load and return the DatasetError's message, checking it contains `match` literally."""
    with pytest.raises(DatasetError) as info:
        if name is None:
            load_dataset(path_or_bytes)
        else:
            load_dataset_bytes(path_or_bytes, name)
    message = str(info.value)
    assert match in message, message
    return message


# --- good files ---------------------------------------------------------------------------------------------------

def test_good_csv_with_quoted_commas_and_multiline_field(home, tmp_path):
    path = write(tmp_path, "reviews.csv",
                 'review,label\n'
                 '"Good, cheap and fast",positive\n'
                 '"Line one\nline two\nline three",negative\n'
                 '\n'
                 'plain,neutral\n')
    ds = load_dataset(path)
    assert isinstance(ds, Dataset)
    assert ds.name == "reviews.csv"
    assert ds.columns == ["review", "label"]
    assert ds.rows == [{"review": "Good, cheap and fast", "label": "positive"},
                       {"review": "Line one\nline two\nline three", "label": "negative"},
                       {"review": "plain", "label": "neutral"}]
    # the quoted field spans lines 3-5, a blank line 6 is skipped
    assert ds.lines == [2, 3, 7]
    assert re.fullmatch(r"[0-9a-f]{16}", ds.content_hash)


def test_csv_with_bom_and_crlf(home, tmp_path):
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbftext,label\r\nhi,1\r\n\"a\r\nb\",2\r\nyo,3\r\n")
    ds = load_dataset(path)
    assert ds.columns == ["text", "label"]
    assert ds.rows[1] == {"text": "a\r\nb", "label": "2"}
    assert ds.lines == [2, 3, 5]


def test_good_jsonl_converts_values_to_text(home, tmp_path):
    rows = [{"q": "2+2?", "answer": 4, "ok": True, "score": 0.5},
            {"q": "Capital of France?", "answer": "Paris", "meta": {"tags": ["geo"]}, "none": None}]
    path = write(tmp_path, "qa.jsonl", "\n".join(json.dumps(r) for r in rows[:1]) + "\n\n" + json.dumps(rows[1]) + "\n")
    ds = load_dataset(path)
    assert ds.columns == ["q", "answer", "ok", "score", "meta", "none"]
    assert ds.rows[0] == {"q": "2+2?", "answer": "4", "ok": "true", "score": "0.5"}
    assert ds.rows[1]["meta"] == '{"tags": ["geo"]}'
    assert ds.rows[1]["none"] == ""
    assert all(isinstance(v, str) for row in ds.rows for v in row.values())
    assert ds.lines == [1, 3]


def test_json_suffix_reads_json_lines_or_one_array(home, tmp_path):
    ds = load_dataset(write(tmp_path, "data.json", '{"a": "x"}\n{"a": "y"}\n'))
    assert [r["a"] for r in ds.rows] == ["x", "y"]
    assert (ds.lines, ds.unit) == ([1, 2], "line")
    # the first non-space character decides: '[' is one JSON array of objects, numbered by item
    ds = load_dataset(write(tmp_path, "array.json", '\n  [{"a": "x"},\n {"a": "y"}]\n'))
    assert (ds.rows, ds.lines, ds.unit) == ([{"a": "x"}, {"a": "y"}], [1, 2], "item")
    message = fails(write(tmp_path, "lines.json", '{"a": "x"}\n[1]\n'), "lines.json, line 2: expected a JSON object, "
                                                                         "got list")
    assert "JSON Lines" in message


def test_bytes_equals_path(home, tmp_path):
    for name, content in [("r.csv", 'a,b\n"x\ny",1\nz,2\n'), ("r.jsonl", '{"a": 1}\n\n{"b": [1, 2]}\n')]:
        path = write(tmp_path, name, content)
        assert load_dataset_bytes(content.encode(), name) == load_dataset(path)
    # the upload's name may come with a folder; messages use the file name only
    assert load_dataset_bytes(b"a\n1\n", "/tmp/upload/x.csv").name == "x.csv"


def test_guess_mapping_and_to_items(home, tmp_path):
    ds = load_dataset(write(tmp_path, "mc.csv",
                            "question,Context,label,options\n"
                            "Q1,C1,A,A | B |C\n"
                            "Q2,C2,B,A|B\n"))
    mapping = guess_mapping(ds, ["question", "context", "missing"])
    assert mapping == ColumnMapping(variables={"question": "question", "context": "Context"}, target="label")
    mapping.choices = "options"
    items = to_items(ds, mapping)
    assert [(i.index, i.line, i.target) for i in items] == [(0, 2, "A"), (1, 3, "B")]
    assert items[0].variables == {"question": "Q1", "context": "C1"}
    assert items[0].choices == ["A", "B", "C"]
    # no target candidate present
    assert guess_mapping(load_dataset_bytes(b"x,y\n1,2\n", "n.csv"), ["x"]).target is None


def test_guess_mapping_reads_columns_named_with_the_variable_as_a_word(home):
    """An uploaded `ticket_text` column feeds {{ ticket }}; `gold_label` is the gold answer; a name two columns
    share is left for the user to pick, and no column is used twice."""
    ds = load_dataset_bytes(b"id,ticket_text,gold_label\n1,printer on fire,urgent\n", "tickets.csv")
    assert guess_mapping(ds, ["ticket"]) == ColumnMapping(variables={"ticket": "ticket_text"}, target="gold_label")
    ds = load_dataset_bytes(b"Review Body,Label Text\nnice,Positive\n", "r.csv")
    assert guess_mapping(ds, ["review"]) == ColumnMapping(variables={"review": "Review Body"}, target="Label Text")
    ambiguous = load_dataset_bytes(b"ticket_title,ticket_text,answer\na,b,c\n", "a.csv")
    assert guess_mapping(ambiguous, ["ticket"]) == ColumnMapping(variables={}, target="answer")
    taken = load_dataset_bytes(b"label,text\nx,y\n", "t.csv")  # the variable takes `label`: no target left
    assert guess_mapping(taken, ["label"]) == ColumnMapping(variables={"label": "label"}, target=None)
    # "labels" is not the word "label": no partial-word matches
    assert guess_mapping(load_dataset_bytes(b"labels,q\nx,y\n", "p.csv"), ["q"]).target is None


def test_target_may_be_empty_only_when_not_mapped(home, tmp_path):
    ds = load_dataset(write(tmp_path, "t.csv", "text,label\nhello,\n"))
    assert to_items(ds, ColumnMapping(variables={"text": "text"}))[0].target is None
    with pytest.raises(DatasetError, match=re.escape("t.csv, line 2: empty value in column 'label'")):
        to_items(ds, ColumnMapping(variables={"text": "text"}, target="label"))


# --- malformed files ----------------------------------------------------------------------------------------------

def test_errors_are_prompt_lab_errors():
    assert issubclass(DatasetError, PromptLabError)


def test_latin1_bytes(home, tmp_path):
    path = write(tmp_path, "menu.csv", b"item,price\ncaf\xe9,3\n")
    fails(path, "menu.csv: not UTF-8 text (line 2, byte 4); save the file as UTF-8")
    fails(b"item,price\ncaf\xe9,3\n", "menu.csv: not UTF-8 text (line 2, byte 4)", name="menu.csv")


def test_ragged_rows(home, tmp_path):
    path = write(tmp_path, "r.csv", "a,b,c\n1,2,3\n\n1,2,3,4\n")
    fails(path, "r.csv, line 4: 4 fields, expected 3 (columns: a, b, c)")
    fails(write(tmp_path, "s.csv", "a,b,c\n\"x\ny\",2\n"), "s.csv, line 2: 2 fields, expected 3 (columns: a, b, c)")


def test_header_duplicates_and_empty_names(home, tmp_path):
    fails(write(tmp_path, "d.csv", "text,label,text\n1,2,3\n"),
          "d.csv, line 1: duplicate column names in the header: 'text'")
    fails(write(tmp_path, "e.csv", "text,,label\n1,2,3\n"), "e.csv, line 1: header column 2")


def test_empty_file_and_no_rows(home, tmp_path):
    fails(write(tmp_path, "empty.csv", ""), "empty.csv: empty file")
    fails(write(tmp_path, "blank.jsonl", "\n  \n"), "blank.jsonl: empty file")
    fails(write(tmp_path, "header.csv", "a,b\n\n"), "header.csv: no rows")


def test_unknown_suffix(home, tmp_path):
    message = fails(write(tmp_path, "data.txt", "a\n1\n"), "data.txt: file type '.txt'")
    assert message == ("data.txt: file type '.txt'; use a .csv, .jsonl, .json, .parquet or .arrow file (or a folder "
                       "written by datasets' save_to_disk)")
    fails(b"a\n1\n", "noext: no file type", name="noext")


def test_missing_file(home, tmp_path):
    fails(tmp_path / "nope.csv", "nope.csv: no such file")


def test_invalid_json_lines(home, tmp_path):
    fails(write(tmp_path, "bad.jsonl", '{"a": 1}\n{"a": 2,}\n'), "bad.jsonl, line 2: not valid JSON (")
    fails(write(tmp_path, "list.jsonl", '{"a": 1}\n\n[1, 2]\n'), "list.jsonl, line 3: expected a JSON object, got list")
    fails(write(tmp_path, "str.jsonl", '"text"\n'), "str.jsonl, line 1: expected a JSON object, got string")


def test_missing_column_in_mapping(home, tmp_path):
    ds = load_dataset(write(tmp_path, "reviews.csv", "text,label\nok,1\n"))
    with pytest.raises(DatasetError, match=re.escape("reviews.csv: no column 'review' (columns: text, label)")):
        to_items(ds, ColumnMapping(variables={"review": "review"}, target="label"))
    with pytest.raises(DatasetError, match=re.escape("reviews.csv: no column 'gold'")):
        to_items(ds, ColumnMapping(variables={"review": "text"}, target="gold"))


def test_missing_jsonl_key_at_its_line(home, tmp_path):
    ds = load_dataset(write(tmp_path, "reviews.jsonl",
                            '{"review": "good", "label": "pos"}\n\n{"label": "neg"}\n'))
    assert ds.columns == ["review", "label"]
    assert "review" not in ds.rows[1]
    with pytest.raises(DatasetError, match=re.escape("reviews.jsonl, line 3: missing column 'review'")):
        to_items(ds, ColumnMapping(variables={"review": "review"}, target="label"))


def test_empty_value(home, tmp_path):
    ds = load_dataset(write(tmp_path, "reviews.csv", "review,label\ngood,pos\n  ,neg\n"))
    with pytest.raises(DatasetError, match=re.escape("reviews.csv, line 3: empty value in column 'review'")):
        to_items(ds, ColumnMapping(variables={"review": "review"}, target="label"))


def test_empty_choices(home, tmp_path):
    ds = load_dataset(write(tmp_path, "mc.csv", "q,a,opts\nQ,A,A|B\nQ,A, | \n"))
    with pytest.raises(DatasetError, match=re.escape("mc.csv, line 3: no choices in column 'opts'")):
        to_items(ds, ColumnMapping(variables={"q": "q"}, target="a", choices="opts"))


# --- caps ---------------------------------------------------------------------------------------------------------

def test_million_rows_stops_at_the_row_cap(home, tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("review,label\n" + "good stuff,1\n" * 1_000_000)  # ~13 MB, under the 20 MB upload cap
    fails(path, "big.csv: more than 20000 rows (the limit is 20000; PROMPT_LAB_MAX_ROWS raises it)")


def test_row_cap_from_env_and_jsonl(home, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_ROWS", "3")
    assert len(load_dataset(write(tmp_path, "ok.jsonl", '{"a": 1}\n' * 3)).rows) == 3
    fails(write(tmp_path, "four.jsonl", '{"a": 1}\n' * 4), "four.jsonl: more than 3 rows (the limit is 3;")


def test_fifty_mb_line_fails_on_size_before_reading(home, tmp_path, monkeypatch):
    path = tmp_path / "huge.csv"
    with open(path, "w", encoding="ascii") as f:
        f.write("text\n" + "x" * (50 * 1024 * 1024) + "\n")
    import builtins
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        assert str(file) != str(path), "the file was opened although it is over the size cap"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    message = fails(path, "huge.csv: the file is 50 MB")
    assert "20 MB upload limit" in message and "PROMPT_LAB_MAX_UPLOAD_BYTES" in message
    monkeypatch.setattr(builtins, "open", real_open)
    fails(b"x" * (21 * 1024 * 1024), "up.jsonl: the file is 21 MB", name="up.jsonl")


def test_fifty_mb_cell_fails_on_the_cell_cap(home, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", str(200 * 1024 * 1024))
    cell = "x" * (50 * 1024 * 1024)
    path = tmp_path / "huge.csv"
    with open(path, "w", encoding="ascii") as f:
        f.write("id,text\n1,short\n2," + cell + "\n")
    fails(path, "huge.csv, line 3: column 'text' is longer than 20000 characters")
    jpath = tmp_path / "huge.jsonl"
    with open(jpath, "w", encoding="ascii") as f:
        f.write('{"id": 1}\n{"id": 2, "text": "' + cell + '"}\n')
    fails(jpath, "huge.jsonl, line 2: column 'text' is longer than 20000 characters")


def test_cell_cap_from_env(home, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_CELL_CHARS", "5")
    assert load_dataset(write(tmp_path, "ok.csv", "a\n12345\n")).rows == [{"a": "12345"}]
    fails(write(tmp_path, "long.csv", "a,b\n1,2\n\"12\n345\",1\n"),
          "long.csv, line 3: column 'a' is longer than 5 characters")


# --- every format ---------------------------------------------------------------------------------------------------

FORMATS = [".csv", ".jsonl", ".json"]


def table_bytes(suffix, columns, rows):
    """The same table as a .csv file (a header line, then a line per row) or as JSON Lines (an object per line)."""
    if suffix == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")
    return "".join(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def first_line(suffix):
    """The line the first row is on: after the header in a CSV file, line 1 in JSON Lines."""
    return 2 if suffix == ".csv" else 1


def refused(data, name, message):
    """Load `data` as an upload named `name`: it must fail with exactly `message`."""
    with pytest.raises(DatasetError, match=f"^{re.escape(message)}$"):
        load_dataset_bytes(data, name)


def table(suffix, columns, rows, name="data"):
    return load_dataset_bytes(table_bytes(suffix, columns, rows), name + suffix)


@pytest.mark.parametrize("data, where", [
    # a blank first line, then the bad byte on line 3, with more lines after it
    ({".csv": b"\nitem,price\ncaf\xe9,3\ntea,2\nmilk,1\n",
      ".jsonl": b'\n{"item": "tea"}\n{"item": "caf\xe9"}\n{"item": "milk"}\n{"item": "x"}\n'},
     {".csv": "line 3, byte 4", ".jsonl": "line 3, byte 14"}),
    # the bad byte starts line 2, after a blank line 1
    ({".csv": b"\n\xe9tem,price\ntea,2\n", ".jsonl": b'\n\xe9{"item": "tea"}\n'},
     {".csv": "line 2, byte 1", ".jsonl": "line 2, byte 1"}),
])
@pytest.mark.parametrize("suffix", FORMATS)
def test_not_utf8_names_the_line_and_byte_for_every_format(home, data, where, suffix):
    kind = ".csv" if suffix == ".csv" else ".jsonl"
    refused(data[kind], f"menu{suffix}", f"menu{suffix}: not UTF-8 text ({where[kind]}); save the file as UTF-8")


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_folder_is_not_a_file(home, tmp_path, suffix):
    folder = tmp_path / f"data{suffix}"
    folder.mkdir()
    with pytest.raises(DatasetError, match=f"^{re.escape(f'{folder}: is not a file')}, nor a folder written by "
                                           r"datasets' save_to_disk \(it has no state.json or dataset_dict.json\)$"):
        load_dataset(folder)


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_file_of_exactly_the_upload_cap_is_read_whole(home, tmp_path, monkeypatch, suffix):
    data = table_bytes(suffix, ["text"], [["first"], ["last"]]).rstrip(b"\n")  # the cap's last byte ends a value
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", str(len(data)))
    ds = load_dataset(write(tmp_path, f"exact{suffix}", data))
    assert ds.rows == [{"text": "first"}, {"text": "last"}]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_file_grown_past_the_cap_after_its_size_check_is_refused(home, tmp_path, monkeypatch, suffix):
    """The size is checked before reading; if the file grew since, at most cap + 1 bytes are read and refused."""
    path = write(tmp_path, f"grows{suffix}", table_bytes(suffix, ["text"], [["x" * 50]] * 10))
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", "100")
    monkeypatch.setattr("prompt_lab.evaluation.datasets.os.path.getsize", lambda p: 60)  # its size when it was checked
    with pytest.raises(DatasetError, match=f"^grows{re.escape(suffix)}: the file is 0 MB \\(101 bytes\\), larger than "
                                           r"the 0 MB upload limit \(PROMPT_LAB_MAX_UPLOAD_BYTES raises it\)$"):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_errors_explain_json_lines_only_for_json_files(home, suffix):
    hint = (" (.json files are read as JSON Lines, one object per line, or as one JSON array of objects when the "
            "file starts with '[')") if suffix == ".json" else ""
    refused(b'{"a": 1}\n{"a": 2,}\n', f"bad{suffix}",
            f"bad{suffix}, line 2: not valid JSON (Expecting property name enclosed in double quotes, column 9){hint}")
    refused(b'{"a": 1}\n\n7\n', f"num{suffix}", f"num{suffix}, line 3: expected a JSON object, got number{hint}")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_nested_json_values_keep_their_characters(home, suffix):
    ds = load_dataset_bytes('{"meta": {"city": "Zürich"}, "tags": ["é", "日本"], "n": [1, 2.5]}\n'.encode(),
                            f"n{suffix}")
    # an object stays its JSON text; a list of strings and numbers is a list of texts
    assert ds.rows == [{"meta": '{"city": "Zürich"}', "tags": ["é", "日本"], "n": ["1", "2.5"]}]
    # fed to a template variable, a list reads as its JSON text
    [item] = to_items(ds, ColumnMapping(variables={"tags": "tags", "meta": "meta"}))
    assert item.variables == {"tags": '["é", "日本"]', "meta": '{"city": "Zürich"}'}


def test_csv_with_old_mac_line_endings(home):
    ds = load_dataset_bytes(b"q,a\r1,2\r\r3,4\r", "cr.csv")
    assert ds.rows == [{"q": "1", "a": "2"}, {"q": "3", "a": "4"}]
    assert ds.lines == [2, 4]


def test_csv_header_names_every_unnamed_and_duplicate_column(home):
    refused(b"text,,label, \n1,2,3,4\n", "h.csv",
            "h.csv, line 1: header columns 2, 4 (counting from 1) without a name")
    refused(b"text,label,text,label\n1,2,3,4\n", "d.csv",
            "d.csv, line 1: duplicate column names in the header: 'text', 'label'")


def test_csv_of_only_an_empty_quoted_cell_is_empty(home):
    refused(b'""\n', "q.csv", "q.csv: empty file")


# --- column mapping -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", FORMATS)
def test_guess_mapping_prefers_the_column_of_the_same_name(home, suffix):
    # "Ticket" is the variable's name in another case, so it wins over "ticket_text", which has it as a word
    ds = table(suffix, ["ticket_text", "Ticket", "answer"], [["a", "b", "c"]])
    assert guess_mapping(ds, ["ticket"]) == ColumnMapping(variables={"ticket": "Ticket"}, target="answer")
    # the same case wins over another case
    ds = table(suffix, ["TICKET", "ticket", "answer"], [["a", "b", "c"]])
    assert guess_mapping(ds, ["ticket"]) == ColumnMapping(variables={"ticket": "ticket"}, target="answer")
    # a name that is a later word of the column's name
    ds = table(suffix, ["id", "Customer Review", "Gold Label"], [["1", "nice", "pos"]])
    assert guess_mapping(ds, ["review"]) == ColumnMapping(variables={"review": "Customer Review"}, target="Gold Label")


@pytest.mark.parametrize("suffix", FORMATS)
def test_mapping_for_uses_the_spec_and_fills_in_same_name_columns(home, suffix):
    ds = table(suffix, ["question", "context", "label", "opts"], [["q", "c", "A", "A|B"]])
    spec = {"variables": {"q": "question"}, "target": "label", "choices": "opts"}
    assert mapping_for(ds, ["q", "context"], spec) == ColumnMapping(
        variables={"q": "question", "context": "context"}, target="label", choices="opts")
    assert mapping_for(ds, ["context"], {"target": "label"}) == ColumnMapping(variables={"context": "context"},
                                                                             target="label")
    # no spec: the guessed mapping
    assert mapping_for(ds, ["question"], None) == mapping_for(ds, ["question"], {}) == ColumnMapping(
        variables={"question": "question"}, target="label")


@pytest.mark.parametrize("suffix", FORMATS)
def test_items_without_a_choices_column_have_no_choices(home, suffix):
    ds = table(suffix, ["text", "label"], [["hi", "pos"]])
    [item] = to_items(ds, ColumnMapping(variables={"text": "text"}, target="label"))
    assert (item.index, item.line, item.variables, item.target, item.choices, item.targets) == (
        0, first_line(suffix), {"text": "hi"}, "pos", None, ["pos"])
    assert item.content_hash == item_hash({"text": "hi"}, ["pos"]) == "5ac7336db0ef26d9"


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_empty_choices_value_names_its_line(home, suffix):
    ds = table(suffix, ["q", "opts"], [["Q1", "A|B"], ["Q2", " "]], name="mc")
    line = first_line(suffix) + 1
    with pytest.raises(DatasetError, match=f"^{re.escape(f'mc{suffix}, line {line}: empty value in column')} 'opts'$"):
        to_items(ds, ColumnMapping(variables={"q": "q"}, choices="opts"))
