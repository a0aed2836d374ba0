"""What an OpenAI-compatible server said, as text fit for a message: an error answer's own words, the root cause of
a failed connection, and its model list (GET /models) or why it gave none. Whatever comes from the server is
scrubbed of every key (models.secrets) before it is cut to length."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from prompt_lab.models.secrets import scrub, scrub_cut

MAX_LISTED = 20  # model ids kept from a list


def error_detail(response) -> str:
    """The server's own words in an error answer (`error.message`, `detail`, the JSON, or the text), unscrubbed:
    callers scrub and cut it."""
    try:
        data = response.json()
        detail = data.get("error", data.get("detail", data)) if isinstance(data, dict) else data
        if isinstance(detail, dict):
            detail = detail.get("message") or json.dumps(detail)
    except (ValueError, json.JSONDecodeError):
        detail = response.text
    return str(detail).strip()


def root_reason(exc: BaseException) -> str:
    """The innermost cause of an exception chain, as text (a transport error wraps the socket's own)."""
    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    return str(cause) or type(cause).__name__


@dataclass(frozen=True)
class ModelListing:
    """The model ids a server lists, or, when it lists none, why: `problem` is None when it answered a list."""

    ids: list[str] = field(default_factory=list)
    problem: str | None = None


def list_models(client, secrets) -> ModelListing:
    """GET models on an httpx client whose base URL is the server's: the ids (at most MAX_LISTED), or the reason
    there are none, e.g. "401 Unauthorized: <the server's message>", every form of `secrets` masked."""
    import httpx

    try:
        response = client.get("models", timeout=5)
    except httpx.HTTPError as exc:
        return ModelListing(problem=f"the request failed ({type(exc).__name__}: "
                                    f"{scrub_cut(root_reason(exc), secrets, 200)})")
    if not response.is_success:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        detail = scrub_cut(error_detail(response), secrets, 300)
        return ModelListing(problem=f"{status}: {detail}" if detail else status)
    try:
        return ModelListing([scrub(str(m["id"]), secrets) for m in response.json().get("data", [])[:MAX_LISTED]])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ModelListing(problem=f"the answer is not a model list ({scrub_cut(response.text, secrets, 200)!r})")
