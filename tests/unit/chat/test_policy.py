"""The provider policy of the privacy tiers."""

from __future__ import annotations

import pytest

from app.errors import ExitCode, PolicyRefusedError
from app.privacy.policy import decision, refusals_summary, require
from app.store.models import Tier
from providers import Locality

ALLOWED = {
    (Tier.STANDARD, Locality.ON_PREM): True,
    (Tier.STANDARD, Locality.FREE_CLOUD): True,
    (Tier.STANDARD, Locality.PAID_CLOUD): True,
    (Tier.PRIVATE, Locality.ON_PREM): True,
    (Tier.PRIVATE, Locality.FREE_CLOUD): False,
    (Tier.PRIVATE, Locality.PAID_CLOUD): False,
    (Tier.EPHEMERAL, Locality.ON_PREM): True,
    (Tier.EPHEMERAL, Locality.FREE_CLOUD): True,
    (Tier.EPHEMERAL, Locality.PAID_CLOUD): False,
}


@pytest.mark.parametrize(("case", "allowed"), ALLOWED.items())
def test_matrix(case: tuple[Tier, Locality], allowed: bool) -> None:
    tier, locality = case
    verdict = decision(tier, locality, "cloud-x")
    assert verdict.allowed is allowed
    if allowed:
        require(tier, locality, "cloud-x")
    else:
        assert "cloud-x" in verdict.reason
        with pytest.raises(PolicyRefusedError) as caught:
            require(tier, locality, "cloud-x")
        assert caught.value.exit_code == ExitCode.POLICY


def test_refusals_are_said_once_with_the_providers_grouped() -> None:
    """Issue 12 item 11: "Not available here" repeated one sentence per provider."""
    text = refusals_summary(
        Tier.PRIVATE,
        [
            ("openai", Locality.PAID_CLOUD),
            ("groq", Locality.FREE_CLOUD),
            ("anthropic", Locality.PAID_CLOUD),
        ],
    )
    assert text.count("Private chats only use on-prem models") == 1
    assert "openai and anthropic are paid cloud" in text
    assert "groq is free cloud" in text
    assert refusals_summary(Tier.PRIVATE, []) == ""
