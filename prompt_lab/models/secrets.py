"""The one scrubber for secrets (API keys) in text that leaves a remote backend: error messages, answers, model
names. It runs before anything is cut to length, so no prefix of a key survives a truncation."""
from __future__ import annotations

import base64
import re
from urllib.parse import quote

MASK = "[key]"
_MIN_LENGTH = 6  # shorter "keys" (test placeholders) would mask ordinary words


def secret_forms(secret: str) -> list[str]:
    """The spellings a server may echo a key in: as is (any case), URL-encoded, and base64 at each of the three
    byte alignments it can have inside a longer encoded string (standard and URL-safe alphabets)."""
    forms = {secret, quote(secret, safe=""), quote(f"Bearer {secret}", safe="")}
    raw = secret.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = (offset * 4 + 2) // 3  # characters that also carry the bytes before the key
            stable = encoded[start:len(encoded) - (1 if (len(raw) + offset) % 3 else 0)]
            if len(stable) >= _MIN_LENGTH:
                forms.add(stable)
    return sorted((f for f in forms if len(f) >= _MIN_LENGTH), key=len, reverse=True)


def scrub(text: str, secrets) -> str:
    """`text` with every form of every secret replaced by "[key]" (case-insensitively)."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= _MIN_LENGTH:
            for form in secret_forms(secret):
                text = re.sub(re.escape(form), MASK, text, flags=re.IGNORECASE)
    return text
