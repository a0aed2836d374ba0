"""Links that open a run: `?run=42` (a compare run in Compare, an evaluation in Evaluate, a search in Search) and
`?compare=12,14` (two evaluation runs paired in History), with `present=1` for the presenter view.

A link names run-log ids, never session state, so it works after a restart. Locally anyone who can reach the app
sees every run and a link needs nothing more. On a public Space runs are each visitor's own, so a link carries a
capability: `key`, an HMAC of the run ids with a secret kept in the data dir (the same after a restart). Whoever
holds the link may read those runs (and only those) for the rest of their page session; without a valid key the
runs read as missing, as another visitor's runs always do.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from prompt_lab.access import visitors
from prompt_lab.errors import PromptLabError
from prompt_lab.settings import get_settings

MAX_RUNS = 2  # a link names one run or a pair
KEY_LENGTH = 22  # characters of the URL-safe key (128 bits)
IDS_RE = re.compile(r"[1-9][0-9]{0,11}(,[1-9][0-9]{0,11})?")


@dataclass(frozen=True)
class Link:
    view: str  # "run" (one run, shown in the tab of its kind) | "compare" (two evaluation runs paired) | "" (none)
    run_ids: tuple[int, ...] = ()
    key: str = ""
    present: bool = False

    @property
    def granted(self) -> bool:
        """Whether this link's key opens its runs (always, locally)."""
        return bool(self.run_ids) and (not get_settings().public_mode or hmac.compare_digest(self.key, link_key(
            self.run_ids)))


def _secret() -> bytes:
    # The browser-token secret serves both: a random value made once per data dir, readable by its owner only.
    return hashlib.sha256(b"prompt-lab links\0" + visitors.browser_secret().encode()).digest()


def link_key(run_ids) -> str:
    """The capability for exactly these run ids, in this order."""
    message = ",".join(str(int(i)) for i in run_ids).encode()
    digest = hmac.new(_secret(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:KEY_LENGTH]


def query_string(run_ids, present: bool = False) -> str:
    """The query string of a link to these runs (one: `?run=N`; two evaluation runs: `?compare=A,B`), with its key
    on a public Space. Whether the asker may see the runs is the run log's to say (reporting.export.share_query)."""
    ids = [int(i) for i in run_ids]
    if not 1 <= len(ids) <= MAX_RUNS:
        raise PromptLabError(f"A link names one run or two evaluation runs, not {len(ids)}.")
    params = {"run": str(ids[0])} if len(ids) == 1 else {"compare": f"{ids[0]},{ids[1]}"}
    if get_settings().public_mode:
        params["key"] = link_key(ids)
    if present:
        params["present"] = "1"
    return "?" + urlencode(params, safe=",")


def parse(params) -> Link:
    """The link a page was opened with (its query parameters, a mapping). A malformed value is refused in words;
    no run parameter at all is Link("")."""
    get = lambda name: str(params.get(name) or "").strip()  # noqa: E731
    present = get("present").lower() in ("1", "true", "yes", "on")
    run, pair, key = get("run"), get("compare"), get("key")
    if run and pair:
        raise PromptLabError("This link names both a run and a pair (run= and compare=); use one of them.")
    if not run and not pair:
        return Link("", (), "", present)
    text = run or pair
    if not IDS_RE.fullmatch(text) or (run and "," in run) or (pair and "," not in pair):
        shown = text if len(text) <= 40 else text[:40] + "..."
        expected = "a run id, e.g. ?run=42" if run else "two evaluation run ids, e.g. ?compare=12,14"
        raise PromptLabError(f"This link's {'run' if run else 'compare'}={shown!r} is not {expected}.")
    if not re.fullmatch(r"[A-Za-z0-9_-]{0,64}", key):
        raise PromptLabError("This link's key is damaged (letters, digits, '-' and '_' only); ask for the link again.")
    ids = tuple(int(i) for i in text.split(","))
    return Link("run" if run else "compare", ids, key, present)
