"""The secret scrubber on its own: every spelling a server may echo a key in is masked, and nothing else."""
import base64
from urllib.parse import quote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from prompt_lab.models.secrets import MASK, scrub, secret_forms

KEY_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+.")
keys = st.text(KEY_CHARS, min_size=6, max_size=48)


def key_only_span(before: int, key_len: int) -> tuple[int, int]:
    """[first, end) of the base64 characters whose 6 bits all come from the key's bytes, worked out from the bit
    positions alone (independently of how the scrubber computes it)."""
    first_bit, end_bit = before * 8, (before + key_len) * 8
    pure = [i for i in range((end_bit + 5) // 6) if first_bit <= 6 * i and 6 * i + 6 <= end_bit]
    return pure[0], pure[-1] + 1


@settings(max_examples=300, deadline=None)
@example(key="sk-abW", before=b"", after=b"", encode=base64.b64encode)  # its encoding ends in "X" ("c2stYWJX")
@given(key=keys, before=st.binary(max_size=7), after=st.binary(max_size=7),
       encode=st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
def test_a_key_inside_base64_is_masked_at_every_alignment(key, before, after, encode):
    encoded = encode(before + key.encode() + after).decode()
    first, end = key_only_span(len(before), len(key))
    scrubbed = scrub(encoded, [key])
    head, tail = scrubbed.partition(MASK)[0], scrubbed.rpartition(MASK)[2]
    assert MASK in scrubbed and encoded.startswith(head) and encoded.endswith(tail)
    # every character that only the key could have produced is under the mask
    assert len(head) <= first and len(encoded) - len(tail) >= end


@settings(max_examples=100, deadline=None)
@given(key=keys)
def test_a_key_as_is_in_any_case_or_url_encoded_is_masked(key):
    for echoed in (key, key.upper(), key.lower(), quote(key, safe=""), quote(f"Bearer {key}", safe="")):
        scrubbed = scrub(f"server said <{echoed}>", [key])
        assert scrubbed == f"server said <{MASK}>", echoed


def test_a_six_character_key_is_masked_and_shorter_placeholders_are_not():
    assert scrub("key abc123 leaked", ["abc123"]) == f"key {MASK} leaked"
    assert scrub("key abc12 leaked", ["abc12"]) == "key abc12 leaked"
    assert all(len(form) >= 6 for form in secret_forms("abcdef"))


def test_an_encoded_bearer_header_is_masked_whole():
    key = "sk/live+key"
    echoed = quote(f"Bearer {key}", safe="")
    assert echoed == "Bearer%20sk%2Flive%2Bkey"
    assert scrub(f"header={echoed}", [key]) == f"header={MASK}"


def test_longer_forms_are_masked_before_the_key_inside_them():
    forms = secret_forms("sk/live+key")
    assert forms == sorted(forms, key=len, reverse=True)
    assert forms[0] == quote("Bearer sk/live+key", safe="")


def test_nothing_to_scrub_leaves_the_text_alone():
    assert scrub("", ["secret-key"]) == ""
    assert scrub(None, ["secret-key"]) is None
    assert scrub("plain answer", []) == "plain answer"
    assert scrub("plain answer", [None, ""]) == "plain answer"
    assert scrub("a secret-key and another-key", ["secret-key", "another-key"]) == f"a {MASK} and {MASK}"
