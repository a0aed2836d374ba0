"""Settings come from the environment, with defaults, and say which variable is wrong."""
from pathlib import Path

import pytest

from prompt_lab.settings import get_settings

VARIABLES = {"PROMPT_LAB_MAX_NEW_TOKENS": ("max_new_tokens_cap", 512), "PROMPT_LAB_MAX_BATCH": ("max_batch_prompts", 64),
             "PROMPT_LAB_MAX_SAMPLES": ("max_samples", 16),
             "PROMPT_LAB_MAX_UPLOAD_BYTES": ("max_upload_bytes", 20 * 1024 * 1024),
             "PROMPT_LAB_MAX_ROWS": ("max_rows", 20_000), "PROMPT_LAB_MAX_CELL_CHARS": ("max_cell_chars", 20_000),
             "PROMPT_LAB_PUBLIC_MAX_STEPS": ("public_max_steps", 50)}


def test_defaults_and_paths(monkeypatch, tmp_path):
    for name in list(VARIABLES) + ["PROMPT_LAB_MAX_GENERATION_SECONDS", "PROMPT_LAB_RENDER_SECONDS", "SPACE_ID"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMPT_LAB_HOME", str(tmp_path))
    s = get_settings()
    assert {attr: getattr(s, attr) for attr, _ in VARIABLES.values()} == {a: d for a, d in VARIABLES.values()}
    assert (s.max_generation_seconds, s.render_seconds, s.render_max_chars, s.public_mode) == (120.0, 2.0, 200_000,
                                                                                                False)
    assert (s.db_path, s.model_cache_dir, s.user_templates_dir) == (tmp_path / "runs.db", tmp_path / "models",
                                                                    tmp_path / "templates")
    monkeypatch.delenv("PROMPT_LAB_HOME")
    assert get_settings().home == Path.home() / ".prompt_lab"
    monkeypatch.setenv("PROMPT_LAB_HOME", "~/elsewhere")
    assert get_settings().home == Path.home() / "elsewhere"


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_each_cap_reads_its_variable(monkeypatch, name):
    monkeypatch.setenv(name, "7")
    assert getattr(get_settings(), VARIABLES[name][0]) == 7
    monkeypatch.setenv(name, "  ")  # blank: the default
    assert getattr(get_settings(), VARIABLES[name][0]) == VARIABLES[name][1]
    monkeypatch.setenv(name, "seven")
    with pytest.raises(ValueError, match=f"environment variable {name} must be an integer, got 'seven'"):
        get_settings()


def test_seconds_are_numbers_and_a_space_is_public(monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_GENERATION_SECONDS", "2.5")
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "0.25")
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    s = get_settings()
    assert (s.max_generation_seconds, s.render_seconds, s.public_mode) == (2.5, 0.25, True)
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "soon")
    with pytest.raises(ValueError, match="environment variable PROMPT_LAB_RENDER_SECONDS must be a number, got 'soon'"):
        get_settings()
    monkeypatch.setenv("SPACE_ID", "")
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "")
    assert not get_settings().public_mode and get_settings().render_seconds == 2.0


def test_training_on_a_public_space_is_allowed_only_by_exactly_1(monkeypatch):
    monkeypatch.delenv("PROMPT_LAB_ALLOW_TRAINING", raising=False)
    assert get_settings().allow_training is False
    for value, allowed in (("1", True), ("0", False), ("yes", False), ("", False), ("true", False)):
        monkeypatch.setenv("PROMPT_LAB_ALLOW_TRAINING", value)
        assert get_settings().allow_training is allowed, value


def test_every_setting_has_help():
    import dataclasses

    from prompt_lab.settings import Settings

    assert all(f.metadata.get("help") for f in dataclasses.fields(Settings))


def test_on_a_space_data_lives_in_persistent_storage_when_the_space_has_it(tmp_path, monkeypatch):
    from prompt_lab.settings import default_home, get_settings

    storage = tmp_path / "data"
    assert default_home(True, storage) == Path.home() / ".prompt_lab"  # no persistent storage attached
    storage.mkdir()
    assert default_home(True, storage) == storage / "prompt_lab"
    assert default_home(False, storage) == Path.home() / ".prompt_lab"  # locally, as always
    monkeypatch.setenv("PROMPT_LAB_HOME", str(tmp_path / "mine"))
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    assert get_settings().home == tmp_path / "mine"  # an explicit home always wins
