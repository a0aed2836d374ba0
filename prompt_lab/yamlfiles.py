"""Reading user-written text and YAML files with errors that name the file, the line and the reason.

Every YAML text is bounded before and while it is read, as safe loaders do: its size (the max_template_bytes
setting), how deep it nests, and how much its aliases (`*name`) repeat once written out. A 439-byte alias bomb
is refused at the alias that passes the budget, in milliseconds, instead of expanding to gigabytes in whatever
writes it out later (json.dumps, yaml.safe_dump).
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from prompt_lab.errors import PromptLabError
from prompt_lab.settings import get_settings

_BOOL = "tag:yaml.org,2002:bool"
MAX_NESTING = 50  # collections inside collections, aliases written out
MAX_ALIAS_NODES = 10_000  # values (scalars and collections) that all aliases together may repeat
SIZE_SETTING = "PROMPT_LAB_MAX_TEMPLATE_BYTES"


class YamlLimitError(yaml.YAMLError):
    """Valid YAML that passes a bound; problem_mark says where, as PyYAML's own errors do."""

    def __init__(self, problem: str, mark) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 booleans (only true/false are booleans; YAML 1.1 also reads yes/no/on/off as
    booleans, which turned a template's `choices: [yes, no]` into the labels "True" and "False"), and bounds on
    nesting and on what aliases repeat, checked while composing, before anything is expanded."""

    max_alias_chars = 64 * 1024

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0  # collections open above the node being composed
        self._open: set[str] = set()  # anchors of the collections being composed
        self._measured: dict[int, tuple[int, int, int]] = {}
        self._alias_nodes = self._alias_chars = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if event.anchor in self._open:
                raise YamlLimitError(f"alias *{event.anchor} is used inside the value it names (a loop)",
                                     event.start_mark)
            if target is not None:
                self._count_alias(target, event)
            return super().compose_node(parent, index)
        if self._depth + 1 > MAX_NESTING:
            raise YamlLimitError(f"nested more than {MAX_NESTING} levels deep (the limit)", event.start_mark)
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection and event.anchor is not None:
            self._open.add(event.anchor)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(event.anchor)

    def _count_alias(self, target, event) -> None:
        nodes, chars, height = self._measure(target)
        mark = event.start_mark
        if self._depth + height > MAX_NESTING:
            raise YamlLimitError(f"nested more than {MAX_NESTING} levels deep (the limit) once alias "
                                 f"*{event.anchor} is written out", mark)
        self._alias_nodes += nodes
        self._alias_chars += chars
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise YamlLimitError(f"the aliases (*name) up to here repeat {self._alias_nodes:,} values written out; "
                                 f"the limit is {MAX_ALIAS_NODES:,}", mark)
        if self._alias_chars > self.max_alias_chars:
            raise YamlLimitError(f"the aliases (*name) up to here repeat {self._alias_chars:,} characters of text "
                                 f"written out; the limit is {self.max_alias_chars:,} ({SIZE_SETTING})", mark)

    def _measure(self, node) -> tuple[int, int, int]:
        """(values, characters, height) of a composed node written out; shared nodes are measured once, and the
        recursion is as deep as the node, which the nesting bound keeps within MAX_NESTING."""
        known = self._measured.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            result = (1, len(node.value), 1)
        else:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            sizes = [self._measure(c) for c in children]
            result = (1 + sum(s[0] for s in sizes), sum(s[1] for s in sizes), 1 + max((s[2] for s in sizes), default=0))
        self._measured[id(node)] = result
        return result


_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _size_message(source: str, size: str, limit: int) -> str:
    return f"{source}: {size}; the limit is {limit:,} bytes for a template or YAML file ({SIZE_SETTING})"


def read_text_file(path: str | Path, what: str = "file", error=PromptLabError, max_bytes: int | None = None) -> str:
    """A user's UTF-8 text file, at most max_bytes long (default: the max_template_bytes setting); never reads
    more than that, so a huge file or a device is refused without being read."""
    path = Path(path)
    limit = get_settings().max_template_bytes if max_bytes is None else max_bytes
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            size = path.stat().st_size
            raise error(_size_message(str(path), f"{size:,} bytes" if size > limit else f"over {limit:,} bytes",
                                      limit))
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it


def _bounded_loader(text: str, max_bytes: int | None) -> _Loader:
    limit = get_settings().max_template_bytes if max_bytes is None else max_bytes
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise YamlLimitError(f"{size:,} bytes", None)
    loader = _Loader(text)
    loader.max_alias_chars = limit
    return loader


def parse_yaml(text: str, source: str, error=PromptLabError, max_bytes: int | None = None):
    """yaml.safe_load with a message like 'file.yaml, line 3: not valid YAML: <reason>', within the bounds above:
    text over max_bytes (default: the max_template_bytes setting), nesting past MAX_NESTING and aliases that
    repeat too much are refused with the line and the limit."""
    loader = None
    try:
        loader = _bounded_loader(text, max_bytes)
        return loader.get_single_data()
    except YamlLimitError as exc:
        if exc.problem_mark is None:  # the size, checked before reading
            raise error(_size_message(source, exc.problem, get_settings().max_template_bytes
                                      if max_bytes is None else max_bytes)) from None
        raise error(f"{source}, line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise error(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:  # the bounds above should prevent it; never let it reach a person as a traceback
        raise error(f"{source}: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_spec_file(path: str | Path, what: str, fields, error=PromptLabError) -> dict:
    """A YAML mapping from a spec file whose keys must all be in `fields`; errors name the file and key."""
    return _spec_mapping(read_text_file(path, what, error), path, what, fields, error)


_EXPONENT_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _float_form(value):
    """`1e-3` as a float: YAML 1.1 (PyYAML) reads a number with an exponent but no dot as text, YAML 1.2 as a
    number, and people write learning rates that way."""
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_float_form(v) for v in value]
    return value


def _spec_mapping(text: str, path: str | Path, what: str, fields, error) -> dict:
    data = parse_yaml(text, str(path), error)
    if not isinstance(data, dict):
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise error(f"{path}: {article} {what} must be a YAML mapping of field: value")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(f"{path}: unknown field '{unknown[0]}'; allowed: {', '.join(sorted(fields))}")
    return spec_numbers(data, fields)


def spec_numbers(data: dict, fields) -> dict:
    """A spec mapping with `1e-3`-style text read as a number in the fields declared float (lists item by item)."""
    return {key: _float_form(value) if key in fields and "float" in str(getattr(fields[key], "type", "")) else value
            for key, value in data.items()}


def _top_node(text: str) -> yaml.Node | None:
    loader = None
    try:
        loader = _bounded_loader(text, None)
        return loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        if loader is not None:
            loader.dispose()


def mapping_node(text: str) -> yaml.MappingNode | None:
    """The top-level YAML mapping as a node (keys and values keep their source marks, for line numbers), read
    with the same YAML rules and bounds as parse_yaml; None when the text is not valid YAML, passes a bound, or is
    not a mapping."""
    node = _top_node(text)
    return node if isinstance(node, yaml.MappingNode) else None


def _item_lines(sequence: yaml.SequenceNode, prefix: str) -> dict[str, int]:
    """'<prefix>N' -> line of a list's Nth item (1-based) and, for an item that is a mapping, '<prefix>N.key' ->
    line of each of its keys."""
    lines = {}
    for i, item in enumerate(sequence.value, 1):
        lines[f"{prefix}{i}"] = item.start_mark.line + 1
        if isinstance(item, yaml.MappingNode):
            for key, _ in item.value:
                lines[f"{prefix}{i}.{key.value}"] = key.start_mark.line + 1
    return lines


def key_lines(text: str) -> dict[str, int]:
    """Line number (1-based) of each top-level key of a YAML mapping, and of the items of a list under one
    ('key.N', and 'key.N.sub' for an item's own keys); empty when the text is not a mapping."""
    node = mapping_node(text)
    lines: dict[str, int] = {}
    for key, value in node.value if node else ():
        lines[str(key.value)] = key.start_mark.line + 1
        if isinstance(value, yaml.SequenceNode):
            lines.update(_item_lines(value, f"{key.value}."))
    return lines


def list_item_lines(text: str) -> dict[str, int]:
    """For a YAML text that is a list: 'N' -> line of its Nth item and 'N.key' -> line of each key of an item
    that is a mapping; empty when the text is not a list."""
    node = _top_node(text)
    return _item_lines(node, "") if isinstance(node, yaml.SequenceNode) else {}


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
