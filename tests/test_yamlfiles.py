"""Reading the YAML and text files users write: errors name the file, the line and the reason."""
import pytest

from prompt_lab.errors import PromptLabError
from prompt_lab.prompts.templates import TemplateError
from prompt_lab.yamlfiles import load_spec_file, load_vars_file, parse_yaml, read_text_file


def test_text_files_errors_name_the_file(tmp_path):
    good = tmp_path / "t.yaml"
    good.write_text("héllo", encoding="utf-8")
    assert read_text_file(good) == "héllo"
    with pytest.raises(PromptLabError, match=rf"{tmp_path}/missing.yaml: no such template file"):
        read_text_file(tmp_path / "missing.yaml", "template file")
    with pytest.raises(PromptLabError, match=rf"{tmp_path}: is a folder, not a file"):
        read_text_file(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(TemplateError, match=r"latin\.yaml: not UTF-8 text \(byte 9\)"):
        read_text_file(latin, error=TemplateError)


def test_yaml_errors_carry_the_line_and_the_problem():
    with pytest.raises(PromptLabError, match=r"^x\.yaml, line 2: not valid YAML: mapping values are not allowed "
                                             "here$"):
        parse_yaml("a: 1\nb: c: 3\n", "x.yaml")
    with pytest.raises(TemplateError, match=r"^src, line 1: not valid YAML: found character '\\t'"):
        parse_yaml("\t- tab", "src", TemplateError)
    assert parse_yaml("", "empty") is None


def test_spec_files_accept_only_known_fields(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("alpha: 1\nbeta: 2\n")
    assert load_spec_file(path, "tune file", {"alpha": 0, "beta": 0}) == {"alpha": 1, "beta": 2}
    with pytest.raises(PromptLabError, match=r"spec\.yaml: unknown field 'beta'; allowed: alpha, gamma"):
        load_spec_file(path, "tune file", {"gamma": 0, "alpha": 0})
    path.write_text("just text\n")
    with pytest.raises(PromptLabError, match=r"spec\.yaml: a tune file must be a YAML mapping of field: value"):
        load_spec_file(path, "tune file", {})


def test_variables_files_give_text_values(tmp_path):
    path = tmp_path / "vars.yaml"
    path.write_text('review: "Great, 5 stars"\ncount: 3\nitems: [a, b]\nflag: no\n')
    assert load_vars_file(path) == {"review": "Great, 5 stars", "count": "3", "items": '["a", "b"]', "flag": "no"}
    path.write_text("- a\n- b\n")
    with pytest.raises(PromptLabError, match=r"vars\.yaml: must hold a mapping of variable names to values"):
        load_vars_file(path)


def test_spec_and_variables_files_name_themselves_in_every_error(tmp_path):
    from prompt_lab.evaluation.experiments import ExperimentError

    with pytest.raises(ExperimentError, match=rf"^{tmp_path}/gone.yaml: no such experiment file$"):
        load_spec_file(tmp_path / "gone.yaml", "experiment file", {}, ExperimentError)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: c: 2\n")
    with pytest.raises(ExperimentError, match=rf"^{broken}, line 2: not valid YAML: mapping values"):
        load_spec_file(broken, "experiment file", {"a": 0, "b": 0}, ExperimentError)
    with pytest.raises(PromptLabError, match=rf"^{tmp_path}/none.yaml: no such variables file$"):
        load_vars_file(tmp_path / "none.yaml")
    with pytest.raises(PromptLabError, match=rf"^{broken}, line 2: not valid YAML"):
        load_vars_file(broken)


def test_a_yaml_error_without_a_position_still_reads_whole():
    # a control character is refused by the YAML reader, which reports a position, not a line mark
    with pytest.raises(PromptLabError, match=r"^src: not valid YAML: unacceptable character #x0007"):
        parse_yaml("a: \x07", "src")


def test_a_text_file_is_read_only_up_to_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "100")
    with pytest.raises(PromptLabError, match=r"^/dev/zero: over 100 bytes; the limit is 100 bytes for a template or "
                                             r"YAML file \(PROMPT_LAB_MAX_TEMPLATE_BYTES\)$"):
        read_text_file("/dev/zero")  # endless: refused after reading 101 bytes, not after filling the memory
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a" * 5000)
    with pytest.raises(PromptLabError, match=r"big\.yaml: 5,000 bytes; the limit is 100 bytes"):
        read_text_file(path)
    path.write_bytes(b"a: 1\r\nb: 2\rc: 3\n")  # line ends read as text mode reads them
    assert read_text_file(path) == "a: 1\nb: 2\nc: 3\n"
    assert read_text_file(path, max_bytes=5000) == "a: 1\nb: 2\nc: 3\n"


def test_a_file_over_the_limit_is_not_reported_as_a_yaml_error():
    with pytest.raises(PromptLabError, match=r"^x\.yaml: 3 bytes; the limit is 2 bytes"):
        parse_yaml("a: ", "x.yaml", max_bytes=2)
    from prompt_lab.yamlfiles import key_lines, mapping_node

    bomb = "a0: &a0 [" + ", ".join(["x"] * 9) + "]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    assert mapping_node(bomb) is None and key_lines(bomb) == {}  # the line finder is bounded as the reader is
