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
