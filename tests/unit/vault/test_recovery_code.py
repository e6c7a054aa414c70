"""Recovery code: format, round trip, and the per-group checksum."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.vault.errors import RecoveryCodeTypoError, WrongSecretError
from app.vault.recovery_code import RecoveryCode


def test_format_is_four_lines_of_four_six_digit_groups() -> None:
    code = RecoveryCode.generate()
    lines = code.formatted().splitlines()
    assert len(lines) == 4
    assert all(re.fullmatch(r"\d{6}-\d{6}-\d{6}-\d{6}", line) for line in lines)
    assert "<hidden>" in repr(code)


@given(st.binary(min_size=32, max_size=32))
def test_round_trip(secret: bytes) -> None:
    code = RecoveryCode(secret)
    assert RecoveryCode.parse(code.formatted()).secret == secret
    assert RecoveryCode.parse(" ".join(code.groups())).secret == secret
    assert RecoveryCode.parse("".join(code.groups())).secret == secret


def test_known_answer() -> None:
    code = RecoveryCode(bytes(range(32)))
    assert code.groups()[:3] == ["000011", "005666", "011321"]


def test_every_single_digit_typo_is_caught_with_its_group() -> None:
    code = RecoveryCode.generate()
    digits = "".join(code.groups())
    for position in range(len(digits)):
        for replacement in "0123456789":
            if replacement == digits[position]:
                continue
            typo = digits[:position] + replacement + digits[position + 1 :]
            with pytest.raises(RecoveryCodeTypoError, match=f"Group {position // 6 + 1} "):
                RecoveryCode.parse(typo)


def test_adjacent_transpositions_are_caught() -> None:
    code = RecoveryCode(bytes.fromhex("1234" * 16))
    digits = "".join(code.groups())
    for position in range(len(digits) - 1):
        if position % 6 == 5 or digits[position] == digits[position + 1]:
            continue
        swapped = (
            digits[:position] + digits[position + 1] + digits[position] + digits[position + 2 :]
        )
        with pytest.raises(RecoveryCodeTypoError):
            RecoveryCode.parse(swapped)


def test_swapped_groups_are_caught() -> None:
    groups = RecoveryCode.generate().groups()
    groups[0], groups[1] = groups[1], groups[0]
    with pytest.raises(RecoveryCodeTypoError, match="Group 1 "):
        RecoveryCode.parse("-".join(groups))


@pytest.mark.parametrize("drop", [0, 7, 15])
def test_missing_group_is_reported(drop: int) -> None:
    groups = RecoveryCode.generate().groups()
    del groups[drop]
    with pytest.raises(RecoveryCodeTypoError, match="96 digits"):
        RecoveryCode.parse("-".join(groups))


@pytest.mark.parametrize(
    "text", ["", "abc", "\uff11\uff12\uff13\uff14\uff15\uff16" * 16, "000000-" * 15 + "00000x"]
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(RecoveryCodeTypoError):
        RecoveryCode.parse(text)


def test_typo_error_is_a_wrong_secret_error() -> None:
    assert issubclass(RecoveryCodeTypoError, WrongSecretError)


def test_secret_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        RecoveryCode(b"short")
