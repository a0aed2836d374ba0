"""Reading user-written text and YAML files with errors that name the file, the line and the reason."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from prompt_lab.errors import PromptLabError

_BOOL = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 booleans: only true/false are booleans. YAML 1.1 also reads yes/no/on/off as
    booleans, which turned a template's `choices: [yes, no]` into the labels "True" and "False"."""


_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_text_file(path: str | Path, what: str = "file", error=PromptLabError) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None


def parse_yaml(text: str, source: str, error=PromptLabError):
    """yaml.safe_load with a message like 'file.yaml, line 3: not valid YAML: <reason>'."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise error(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def load_spec_file(path: str | Path, what: str, fields, error=PromptLabError) -> dict:
    """A YAML mapping from a spec file whose keys must all be in `fields`; errors name the file and key."""
    return _spec_mapping(read_text_file(path, what, error), path, what, fields, error)


def _spec_mapping(text: str, path: str | Path, what: str, fields, error) -> dict:
    data = parse_yaml(text, str(path), error)
    if not isinstance(data, dict):
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise error(f"{path}: {article} {what} must be a YAML mapping of field: value")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(f"{path}: unknown field '{unknown[0]}'; allowed: {', '.join(sorted(fields))}")
    return data


def mapping_node(text: str) -> yaml.MappingNode | None:
    """The top-level YAML mapping as a node (keys and values keep their source marks, for line numbers), read
    with the same YAML rules as parse_yaml; None when the text is not valid YAML or not a mapping."""
    try:
        node = yaml.compose(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return None
    return node if isinstance(node, yaml.MappingNode) else None


def key_lines(text: str) -> dict[str, int]:
    """Line number (1-based) of each top-level key of a YAML mapping; empty when the text is not one."""
    node = mapping_node(text)
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value} if node else {}


def load_spec_lines(path: str | Path, what: str, fields, error=PromptLabError) -> tuple[dict, dict[str, int]]:
    """load_spec_file plus the line of each key, so a field's error can name its line (the file is read once)."""
    text = read_text_file(path, what, error)
    return _spec_mapping(text, path, what, fields, error), key_lines(text)


def load_vars_file(path: str | Path) -> dict:
    """Template variables from a YAML or JSON mapping of names to values."""
    import json

    data = parse_yaml(read_text_file(path, "variables file"), str(path))
    if not isinstance(data, dict):
        raise PromptLabError(f"{path}: must hold a mapping of variable names to values")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
