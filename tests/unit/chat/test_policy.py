"""The provider policy of the privacy tiers."""

from __future__ import annotations

import pytest

from app.errors import ExitCode, PolicyRefusedError
from app.privacy.policy import decision, require
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
