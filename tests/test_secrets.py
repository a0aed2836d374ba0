"""The secret scrubber on its own: every spelling a server may echo a key in is masked, and nothing else."""
import base64
from urllib.parse import quote, quote_plus

from hypothesis import example, given, settings
from hypothesis import strategies as st

from prompt_lab.models.secrets import MASK, has_secret, scrub, scrub_cut, secret_forms

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


def test_hex_in_either_case_and_form_encoding_are_masked():
    key = "sk-live-0123456789abcdef"
    assert scrub(f"h={key.encode().hex()} H={key.encode().hex().upper()}", [key]) == f"h={MASK} H={MASK}"
    assert scrub(f"auth={quote_plus(f'Bearer {key}')}", [key]) == f"auth={MASK}"
    assert scrub(f"path=/x/{quote('sk/live+key-1')}/", ["sk/live+key-1"]) == f"path=/x/{MASK}/"


def test_a_key_cut_short_by_the_server_is_masked_from_twelve_characters_on():
    key = "sk-echo-3b1f9c2d7e6a5b4c3d2e1f0a"
    assert scrub(f"your key is {key[:-1]}", [key]) == f"your key is {MASK}"  # all but the last character
    assert scrub(f"tail: {key[-14:]}!", [key]) == f"tail: {MASK}!"
    assert scrub(f"hex cut: {key.encode().hex()[:30]}", [key]) == f"hex cut: {MASK}"
    # OpenAI-style hints (a few characters of each end) stay readable
    assert scrub(f"Incorrect API key provided: {key[:7]}****{key[-4:]}", [key]) == \
        f"Incorrect API key provided: {key[:7]}****{key[-4:]}"


def test_masking_keeps_its_place_in_text_whose_lower_case_is_longer():
    key = "sk-echo-3b1f9c2d7e6a5b4c3d2e1f0a"
    text = f"İİİ {key} after"  # 'İ'.lower() is two characters: indices must not drift
    assert scrub(text, [key]) == f"İİİ {MASK} after"


def test_scrub_cut_masks_a_key_that_straddles_the_cut_before_cutting():
    key = "sk-echo-3b1f9c2d7e6a5b4c3d2e1f0a"
    body = "x" * (301 - len(key)) + key + "y" * 40  # the key ends at character 301
    cut = scrub_cut(body, [key], 300)
    assert cut == "x" * (301 - len(key)) + MASK + "y" * (300 - (301 - len(key)) - len(MASK)) + "…"
    assert scrub_cut("short " + key, [key], 300) == f"short {MASK}"
    assert scrub_cut("z" * 10_000 + key, [key], 50) == "z" * 50 + "…"
    assert has_secret(f"/v1/{key.upper()}", [key]) and not has_secret("/v1/models", [key, None])
