"""The spec parser under hostile text: only SpecError, the budget before any weight, one pass."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlens.budget import Budget
from convlens.spec import LAYER_WORDS, SpecError, parse_spec
from tests.memory import peak_kib

SMALL = Budget(max_params=10**6, max_activation_values=10**6, max_multiply_adds=10**8,
               max_layers=50, max_input_values=10**5)

_HUGE = "9" * 400


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        (f"input 28x28x1 | conv2d {_HUGE} 3", 24, "too large"),
        (f"input 28x28x1 | conv2d 2 {_HUGE}", 26, "too large"),
        ("input 28x28x1 | conv2d 2 " + "9" * 5000, 26, "too large"),
        (f"input {_HUGE}x2", 7, "too large"),
        (f"input 8x8x1 | batchnorm axis=-{_HUGE}", 30, "too large"),
        ("input 8x8x1 | conv2d 2 3 strides=99999999999", 34, "too large"),
        ("input 784 | dense 600000", 13, "max_params"),
        ("input 12000x12000x3 | flatten", 1, "max_input_values"),
        ("input 100000x100000x3 | conv2d 2 3", 1, "max_input_values"),
        ("input 4 | dense 1000000000000", 17, "too large"),
        ("input 8x8x3 | conv2d 2 1000000 padding=same", 15, "max_params"),
        ("input 8x8x3 | zeropad 2147483647", 15, "max_activation_values"),
        ("input 4 | dense 3 name=a | dense 4 name=a", 28, "already used"),
        ("input 4 | dense 2000000000", 11, "max_params"),
        ("input 8x8x1 | conv2d 2 9", 15, "larger than its input"),
    ],
)
def test_bad_text_is_one_spec_error_at_its_column(text, column, words):
    with pytest.raises(SpecError) as info:
        parse_spec(text, budget=SMALL)
    assert info.value.column == column
    assert words in str(info.value)
    assert len(str(info.value)) < 600


def test_the_library_default_budget_refuses_what_no_machine_holds():
    with pytest.raises(SpecError, match=r"column 11 .*max_params"):
        parse_spec("input 4 | dense 2000000000")
    with pytest.raises(SpecError, match="max_input_values"):
        parse_spec("input 100000x100000x3 | conv2d 2 3")
    with pytest.raises(SpecError, match="max_layers"):
        parse_spec("input 4 | " + " | ".join(["relu"] * 51), budget=SMALL)


def test_budget_refusal_allocates_nothing():
    peak = peak_kib("""
        from convlens.spec import SpecError, parse_spec
        for text in ["input 784 | dense 600000 | dense 600000", "input 12000x12000x3 | flatten",
                     "input 784 | dense 200000000", "input 1000x1000x3 | conv2d 512 3 | "
                     "conv2d 512 3 | conv2d 512 3"]:
            try:
                parse_spec(text)
            except SpecError as error:
                assert "over budget" in str(error), error
            else:
                raise AssertionError(text)
    """, cap_bytes=2**31)
    assert peak < 300 * 1024, f"peak {peak} KiB"


_TOKENS = st.one_of(
    st.sampled_from(LAYER_WORDS),
    st.sampled_from(["|", "x", "=", "-1", "0", "3", "1e309", "nan", "none", "same", "relu",
                     "strides=", "name=", "padding=", "axis=", "multiplier=", "²", "٣",
                     "output_padding=", "keepdims=true", "max_value=", "3x3x3x3"]),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TOKENS, max_size=14).map(" ".join))
def test_any_text_gives_a_model_or_a_spec_error(text):
    try:
        parse_spec(text, budget=SMALL)
    except SpecError as error:
        assert error.column >= 1
    # anything else (OverflowError, MemoryError, KeyError...) fails the test


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TOKENS, max_size=10).map(" ".join))
def test_any_layer_after_an_input_gives_a_model_or_a_spec_error(text):
    try:
        parse_spec("input 6x6x2 | " + text, budget=SMALL)
    except SpecError:
        pass


def _calls_to_parse(layers: int) -> int:
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event == "call":
            calls += 1

    text = "input 4 | " + " | ".join(["dense 4 relu"] * layers)
    sys.setprofile(count)
    try:
        parse_spec(text)
    finally:
        sys.setprofile(None)
    return calls


def test_parsing_is_linear_in_the_number_of_layers():
    # Python-level calls (generator steps included) for n and 4n layers: linear work gives
    # a ratio of 4; the old per-layer `add` with its name scan gave about 4 * (1 + n/k).
    small, large = _calls_to_parse(250), _calls_to_parse(1000)
    assert large / small < 4.2, (small, large)


def test_twenty_thousand_layers_build():
    model = parse_spec("input 4 | " + " | ".join(["dense 4"] * 20_000))
    assert len(model.layers) == 20_000
    assert model.count_params() == 20_000 * 20
