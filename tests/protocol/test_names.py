"""Reversible text form of non-UTF-8 names (SPEC §5): protocol/names.py. Tier 1, pure."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveresponse.protocol.names import canonical, escape_bytes, escape_output, escape_text, unescape_to_bytes


@given(st.binary())
def test_round_trip(raw: bytes) -> None:
    assert unescape_to_bytes(escape_bytes(raw)) == raw


@given(st.binary())
def test_escaped_text_is_valid_utf8(raw: bytes) -> None:
    text = escape_bytes(raw)
    assert text.encode("utf-8", errors="strict").decode("utf-8") == text


@given(st.lists(st.sampled_from([b"\\", b"x", b"5", b"c", b"f", b"F", b"\xff", b"\xc3", b"\xa9", b"a"])).map(b"".join))
def test_round_trip_of_backslash_heavy_bytes(raw: bytes) -> None:
    assert unescape_to_bytes(escape_bytes(raw)) == raw


@given(st.text().filter(lambda t: "\\" not in t and not any(c < " " or c == "\x7f" for c in t)))
def test_valid_utf8_without_backslashes_is_unchanged(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # lone surrogates in st.text() are not valid UTF-8
    assert escape_bytes(raw) == text
    assert unescape_to_bytes(text) == raw


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"bad\xff", "bad\\xff"),
        (b"two\nlines", "two\\x0alines"),  # a control character is shown escaped: it can be typed back
        (b"x\x1b]0;title\x07", "x\\x1b]0;title\\x07"),  # and never drives the analyst's terminal
        (b"\xff\xfe", "\\xff\\xfe"),
        (b"caf\xc3\xa9", "café"),
        (b"caf\xc3", "caf\\xc3"),
        (b"\\x41", "\\x5cx41"),
        (b"a\\x4", "a\\x4"),  # not followed by two hex digits: left alone
        (b"C:\\Users\\x\\", "C:\\Users\\x\\"),
        (b"\\xzz", "\\xzz"),
        (b"\\\xff", "\\\\xff"),
        (b"", ""),
    ],
)
def test_examples(raw: bytes, text: str) -> None:
    assert escape_bytes(raw) == text
    assert unescape_to_bytes(text) == raw


def test_escape_text_takes_fsdecoded_names() -> None:
    assert escape_text(os.fsdecode(b"bad\xff")) == "bad\\xff"
    assert escape_text("plain") == "plain"


def test_unescape_accepts_upper_case_hex() -> None:
    assert unescape_to_bytes("bad\\xFF") == b"bad\xff"


@given(st.binary())
def test_output_form_round_trips_and_keeps_lines(raw: bytes) -> None:
    text = escape_output(raw)
    assert unescape_to_bytes(text) == raw
    assert text.count("\n") == raw.count(b"\n")


def test_canonical_form_of_a_typed_name() -> None:
    assert canonical("/tmp/\\x41b") == "/tmp/Ab"
    assert canonical("/tmp/two\\x0alines") == "/tmp/two\\x0alines"
    assert canonical("/tmp/\\x5cx41") == "/tmp/\\x5cx41"
