"""Where remote models live: the endpoints file, the Endpoint spec, and the URL and API-key policy.

Specs: `openai:<model>@<base_url>` (e.g. `openai:llama3.2@http://localhost:11434/v1`) or
`openai:<model>@<endpoint name>` for an endpoint described in the endpoints file (see load_endpoints). A named
endpoint may list several servers of the same model (`base_urls`, replicas): remote.replicas spreads requests over them.

API keys are read from the environment (through settings.secret_from_env) when a request is made and live only
in the HTTP client's headers: they are never part of a spec, a revision, an error message, the run log or a CLI
line. Base URLs that may carry credentials (user:password@, a query string or fragment, ;key= path parameters, a
key in the path) are refused for the same reason, with messages that do not repeat them.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from prompt_lab.errors import ModelLoadError
from prompt_lab.models.secrets import has_secret, scrub
from prompt_lab.settings import get_settings, secret_from_env
from prompt_lab.specs import check_fields, failer, spec_field
from prompt_lab.yamlfiles import mapping_node, parse_yaml, read_text_file

PREFIX = "openai:"
GENERIC_KEY_ENV = "PROMPT_LAB_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"


class RemoteModelError(ModelLoadError):
    """A remote endpoint could not be used: unreachable, refused the key, unknown model, bad answer."""


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server: a named entry of the endpoints file, or the address of an ad-hoc spec."""

    name: str = spec_field(help="The endpoint's name in the endpoints file, or its base URL for an ad-hoc spec.")
    base_url: str = spec_field(help="server address, e.g. http://localhost:8000/v1")
    api_key_env: str | None = spec_field(None, help="name of the environment variable holding the API key")
    models: tuple[str, ...] = spec_field((), help="model names to offer in the app's model lists")
    base_urls: tuple[str, ...] = spec_field((), help="instead of base_url: several servers (replicas) of the same "
                                                     "model; requests are spread over them and a replica that fails "
                                                     "is skipped for a while, its requests retried on the others")
    max_concurrency: int = spec_field(4, min=1, help="most requests in flight to each server (base_url, or each of "
                                                     "base_urls)")
    timeout_s: float = spec_field(120.0, min=0.1, help="seconds to wait for one answer")
    max_retries: int = spec_field(3, min=0, help="retries on 429 and 5xx answers, with backoff")
    tokenizer: str | None = spec_field(None, help="local model folder whose tokenizer counts tokens when the "
                                                  "server reports none")

    @property
    def replicas(self) -> tuple[str, ...]:
        """The server addresses requests go to: base_urls, or the one base_url."""
        return self.base_urls or (self.base_url,)

    @property
    def location(self) -> str:
        """Where the model is served, as runs log it: the base URL, or the replicas' URLs joined by commas."""
        return ",".join(self.replicas)

    def api_key(self) -> str | None:
        """The key from the environment (read at use, so a Space secret or an export applies at once)."""
        if self.api_key_env:
            key = secret_from_env(self.api_key_env)
            if not key:
                raise RemoteModelError(f"endpoint '{self.name}' needs an API key in the environment variable "
                                       f"{self.api_key_env}, which is not set")
            return key
        host = urlsplit(self.base_url).hostname or ""
        if host == "api.openai.com" and secret_from_env(OPENAI_KEY_ENV):
            return secret_from_env(OPENAI_KEY_ENV)
        return secret_from_env(GENERIC_KEY_ENV) or None

    @property
    def key_hint(self) -> str:
        """The environment variable a key for this endpoint is read from."""
        if self.api_key_env:
            return self.api_key_env
        host = urlsplit(self.base_url).hostname or ""
        return OPENAI_KEY_ENV if host == "api.openai.com" else GENERIC_KEY_ENV


FILE_FIELDS = {f.name: f.metadata["help"] for f in dataclasses.fields(Endpoint) if f.name != "name"}


def known_keys(*key_envs: str | None) -> list[str]:
    """The API keys set in the environment that a remote backend may send: the generic and OpenAI variables and
    the named ones (an endpoint's api_key_env); what the scrubber masks and what a URL must not hold."""
    names = dict.fromkeys([GENERIC_KEY_ENV, OPENAI_KEY_ENV, *(n for n in key_envs if n)])
    return [key for key in (secret_from_env(n) for n in names) if key]


_KEY_LIKE_SEGMENT = re.compile(r"^((sk|rk|gsk|xai)[-_]|hf_|(api[-_]?key|bearer)\b)", re.IGNORECASE)  # common key shapes
_PLAIN_URL = re.compile(r"^[\w.:/\[\]-]{1,200}$")  # nothing that could hold a credential (no @ ; ? # % =)


def _shown(url: str, keys) -> str:
    """The URL as a message may quote it: as typed when it cannot hold a credential, else a placeholder."""
    return repr(url) if _PLAIN_URL.match(url) and not has_secret(url, keys) else "(not repeated here)"


def _credential_problem(url: str, parts, keys) -> str | None:
    """What in a URL carries, or may carry, a credential; None when nothing does."""
    if "@" in parts.netloc:
        return "user:password@"
    if "?" in url or "#" in url:
        return "a query string or fragment"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "spaces or control characters"
    if ";" in parts.path or "=" in parts.path:
        return "path parameters such as ;key="
    for segment in unquote(parts.path).split("/"):
        if segment and (has_secret(segment, keys) or _KEY_LIKE_SEGMENT.match(segment)):
            return "an API key in the path"
    return None


def normalize_base_url(url: str, where: str = "base_url", keys=None) -> str:
    """http(s) URL without credentials, query or trailing slash; a bare host gets the usual /v1 path.

    A URL that holds a credential anywhere (user:password@, a query or fragment, ;key= path parameters, a path
    segment equal to a key set in the environment or shaped like one) is refused, and the message does not
    repeat it: the key belongs in an environment variable. `keys`: the keys to look for (default known_keys())."""
    url = (url or "").strip()
    keys = known_keys() if keys is None else keys
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number (a password, say)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = _shown(url, keys) if parts is not None else "(not repeated here)"  # a password where a port goes
        raise RemoteModelError(f"{where} {shown} is not an http(s) URL such as http://localhost:8000/v1")
    problem = _credential_problem(url, parts, keys)
    if problem:
        raise RemoteModelError(f"{where} must not carry credentials ({problem}), so it is refused and not repeated "
                               f"here; put the key in an environment variable ({GENERIC_KEY_ENV}, or api_key_env of a "
                               "named endpoint)")
    path = parts.path.rstrip("/")
    if path == "":
        path = "/v1"
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def endpoints_file() -> Path:
    """The endpoints file: settings.endpoints_file (PROMPT_LAB_ENDPOINTS), else <home>/endpoints.yaml."""
    settings = get_settings()
    return settings.endpoints_file or settings.home / "endpoints.yaml"


def entry_lines(text: str) -> dict[str, tuple[int, dict[str, int]]]:
    """For each top-level entry of a YAML mapping: (its line, {field: line}), 1-based; empty if not a mapping.
    The items of a list field are there too, as 'field[i]' (i from 1)."""
    node = mapping_node(text)
    if node is None:
        return {}
    out = {}
    for key, value in node.value:
        fields: dict[str, int] = {}
        for k, v in value.value if isinstance(value, yaml.MappingNode) else ():
            fields[str(k.value)] = k.start_mark.line + 1
            for i, item in enumerate(v.value if isinstance(v, yaml.SequenceNode) else (), start=1):
                fields[f"{k.value}[{i}]"] = item.start_mark.line + 1
        out[str(key.value)] = (key.start_mark.line + 1, fields)
    return out


def _replica_urls(fields, source: str, lines: dict[str, int] | None, fail, keys) -> tuple[str, ...]:
    """The checked, normalized server addresses of an entry: base_url, or each of base_urls (a non-empty list
    without the same server twice). Messages never repeat an address that may hold a credential."""
    def at(key: str) -> str:
        return f", line {lines[key]}" if lines and key in lines else ""

    if "base_url" in fields:
        return (normalize_base_url(fields["base_url"], f"{source}{at('base_url')}: field 'base_url':", keys),)
    urls = fields["base_urls"]
    if not isinstance(urls, list):  # not repeated: a single address with a password is a plausible mistake
        fail("base_urls", f"must be a list of server addresses such as [http://host-a:8000/v1, "
                          f"http://host-b:8000/v1], got {type(urls).__name__}")
    if not urls:
        fail("base_urls", "must list at least one server address")
    out: list[str] = []
    for i, url in enumerate(urls, start=1):
        where = f"{source}{at(f'base_urls[{i}]') or at('base_urls')}: field 'base_urls', item {i}:"
        if not isinstance(url, str):
            raise RemoteModelError(f"{where} must be a server address (text), got {type(url).__name__}")
        out.append(normalize_base_url(url, where, keys))
        if out[-1] in out[:-1]:
            raise RemoteModelError(f"{where} the same server as item {out.index(out[-1]) + 1}; list each replica "
                                   "once")
    return tuple(out)


def endpoint_from_fields(name: str, fields, source: str, lines: dict[str, int] | None = None,
                         line: int | None = None) -> Endpoint:
    """An Endpoint from one entry of the endpoints file (at `line`, its fields at `lines`), every field checked;
    errors read '<source>, line N: field 'x': problem'."""
    fail = failer(source, lines, RemoteModelError)
    at = f", line {line}" if line else ""
    if not isinstance(fields, dict):
        raise RemoteModelError(f"{source}{at}: must be a mapping with at least base_url")
    unknown = sorted(str(k) for k in fields if k not in FILE_FIELDS)
    if unknown:
        fail(unknown[0], f"unknown field; allowed: {', '.join(FILE_FIELDS)}")
    if "base_url" not in fields and "base_urls" not in fields:
        raise RemoteModelError(f"{source}{at}: base_url is missing ({FILE_FIELDS['base_url']}; or base_urls, a "
                               "list of replicas)")
    if "base_url" in fields and "base_urls" in fields:
        fail("base_urls", "give either base_url (one server) or base_urls (a list of replicas), not both")
    models = fields.get("models")
    if models is not None and not (isinstance(models, list) and all(isinstance(m, str) and m for m in models)):
        fail("models", f"must be a list of model names, got {models!r}")
    raw = Endpoint(name=name, **{**fields, "base_url": fields.get("base_url", ""), "base_urls": (),
                                 "models": tuple(models or ())})
    check_fields(raw, fail)
    if raw.api_key_env is not None and not raw.api_key_env.strip():
        fail("api_key_env", "must be the name of an environment variable")
    urls = _replica_urls(fields, source, lines, fail, known_keys(raw.api_key_env))
    return dataclasses.replace(raw, base_url=urls[0], base_urls=urls, timeout_s=float(raw.timeout_s))


def load_endpoints(path: str | Path | None = None) -> dict[str, Endpoint]:
    """Named endpoints from the endpoints file (PROMPT_LAB_ENDPOINTS, else <PROMPT_LAB_HOME>/endpoints.yaml):

        my-vllm:
          base_url: http://gpu-box:8000/v1
          api_key_env: VLLM_API_KEY
          models: [Qwen/Qwen2.5-7B-Instruct]
          max_concurrency: 16
        my-replicas:                # the same model on two servers: requests are spread, failures fail over
          base_urls: [http://gpu-a:8000/v1, http://gpu-b:8000/v1]
          max_concurrency: 8        # per server

    A missing file means no named endpoints. Errors name the file, the line, the endpoint and the field.
    """
    path = Path(path) if path else endpoints_file()
    if not path.is_file():
        return {}
    text = read_text_file(path, "endpoints file", RemoteModelError)
    data = parse_yaml(text, str(path), RemoteModelError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RemoteModelError(f"{path}: must be a mapping of endpoint names to settings")
    lines = entry_lines(text)
    out = {}
    for name, fields in data.items():
        line, field_lines = lines.get(str(name), (None, {}))
        out[str(name)] = endpoint_from_fields(str(name), fields, f"{path}: endpoint '{name}'", field_lines, line)
    return out


_ENDPOINT_NAME = re.compile(r"^[\w.-]{1,100}$")


def parse_spec(spec: str) -> tuple[Endpoint, str]:
    """`openai:<model>@<base_url or endpoint name>` -> (endpoint, model name). Refusals never repeat a server
    address or a name that could hold a credential, and mask any key set in the environment."""
    body = spec.strip()[len(PREFIX):]
    model, sep, where = body.partition("@")
    model, where = model.strip(), where.strip()
    keys = known_keys()
    shown = f"{PREFIX}{scrub(model, keys)}@…"  # the spec as messages name it: the model, never the address
    if not sep or not model or not where:
        raise RemoteModelError(f"model '{scrub(spec, keys) if '@' not in spec else shown}': a remote model is "
                               "written openai:<model>@<base_url> (e.g. openai:llama3.2@http://localhost:11434/v1) or "
                               "openai:<model>@<endpoint name>")
    if "://" in where:
        if get_settings().public_mode:
            raise RemoteModelError("on a public Space only the endpoints its owner configured can be used "
                                   "(openai:<model>@<endpoint name>); ad-hoc server addresses are refused")
        url = normalize_base_url(where, f"model '{shown}': server address", keys)
        return Endpoint(name=url, base_url=url), model
    endpoints = load_endpoints()
    if where in endpoints:
        return endpoints[where], model
    if not _ENDPOINT_NAME.match(where) or has_secret(where, keys):  # user:pass@host, a key: not repeated
        raise RemoteModelError(f"model '{shown}': after the @ comes a server address (http://host:port/v1) or the "
                               "name of an endpoint in the endpoints file; this is neither, so it is not repeated here")
    known = ", ".join(sorted(endpoints)) or "none are configured"
    raise RemoteModelError(f"model '{scrub(spec, keys)}': no endpoint named '{where}' in {endpoints_file()} "
                           f"({known}); give a server address instead, e.g. openai:<model>@http://localhost:8000/v1")


def remote_choices() -> list[str]:
    """`openai:<model>@<endpoint>` for every model listed in the endpoints file (for model pickers)."""
    try:
        endpoints = load_endpoints()
    except ModelLoadError:
        return []
    return [f"{PREFIX}{m}@{name}" for name, e in endpoints.items() for m in e.models]
