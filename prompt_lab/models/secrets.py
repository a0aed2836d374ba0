"""The one scrubber for secrets (API keys) in text that leaves a remote backend: error messages, answers, model
names, log lines. It runs before anything is cut to length (scrub_cut), so no prefix of a key survives a
truncation, and it masks long runs of a key too, so a key the server itself cut short does not get through."""
from __future__ import annotations

import base64
import string
from functools import lru_cache
from urllib.parse import quote, quote_plus

MASK = "[key]"
_MIN_LENGTH = 6  # shorter "keys" (test placeholders) would mask ordinary words
FRAGMENT = 12  # a run of this many characters of a key's form is masked wherever it appears (a cut-off echo)
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # unlike str.lower(), keeps every index


def _base64_forms(raw: bytes) -> set[str]:
    """The characters of raw's base64 that do not depend on the bytes around it, at each of the three byte
    alignments it can have inside a longer encoded string (standard and URL-safe alphabets)."""
    forms = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = (offset * 4 + 2) // 3  # characters that also carry the bytes before the key
            forms.add(encoded[start:len(encoded) - (1 if (len(raw) + offset) % 3 else 0)])
    return forms


def secret_forms(secret: str) -> list[str]:
    """The spellings a server may echo a key in, longest first: as is (matched in any case), URL-encoded (also
    as a Bearer header), hex, and base64 at every alignment. Matching ignores case, so upper- and lower-case
    echoes and upper-case hex are caught too."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), quote(f"Bearer {secret}", safe=""),
             quote_plus(f"Bearer {secret}"), secret.encode().hex()}
    forms |= _base64_forms(secret.encode())
    return sorted((f for f in forms if len(f) >= _MIN_LENGTH), key=len, reverse=True)


@lru_cache(maxsize=32)
def _patterns(secret: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(the secret's forms in lower case, every FRAGMENT-long run of them), worked out once per secret."""
    forms = tuple(f.translate(_LOWER) for f in secret_forms(secret))
    runs = frozenset(f[i:i + FRAGMENT] for f in forms if len(f) > FRAGMENT for i in range(len(f) - FRAGMENT + 1))
    return forms, runs


def _spans(text: str, secret: str) -> list[tuple[int, int]]:
    """[start, end) of every form of the secret in text, and of every FRAGMENT-long run of a form."""
    forms, runs = _patterns(secret)
    lower, spans = text.translate(_LOWER), []
    for form in forms:
        start = lower.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = lower.find(form, start + 1)
    spans += [(i, i + FRAGMENT) for i in range(len(lower) - FRAGMENT + 1) if lower[i:i + FRAGMENT] in runs]
    return spans


def scrub(text: str, secrets) -> str:
    """`text` with every form of every secret (see secret_forms), and every long run of one, replaced by
    "[key]"; overlapping or touching matches become one mask."""
    if not text:
        return text
    spans = sorted(s for secret in secrets if secret and len(secret) >= _MIN_LENGTH for s in _spans(text, secret))
    if not spans:
        return text
    out, end = [], 0
    merged: list[list[int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    for start, stop in merged:
        out += [text[end:start], MASK]
        end = stop
    out.append(text[end:])
    return "".join(out)


def scrub_cut(text: str, secrets, limit: int) -> str:
    """The first `limit` characters of the scrubbed text (with "…" when cut): scrubbed first, so a key that
    straddles the cut is masked whole. Only the part that can reach the excerpt is scanned."""
    text = str(text)
    longest = max((len(f) for s in secrets if s and len(s) >= _MIN_LENGTH for f in secret_forms(s)), default=0)
    clean = scrub(text[:limit + longest + 1], secrets)
    return clean if len(clean) <= limit and len(text) <= limit + longest + 1 else clean[:limit] + "…"


def has_secret(text: str, secrets) -> bool:
    """Whether text holds any form of any of the secrets (a URL or a name that must be refused, not echoed)."""
    return scrub(text, secrets) != text
