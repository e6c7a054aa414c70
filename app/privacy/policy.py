"""The provider policy of the privacy tiers (DESIGN §3), enforced by the chat service.

| tier      | providers allowed                  |
|-----------|------------------------------------|
| standard  | any                                |
| private   | on-prem only                       |
| ephemeral | on-prem or free cloud              |

The UI uses ``decision`` to show forbidden entries disabled with the reason; the
chat service calls ``require`` before any request leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import PolicyRefusedError
from app.tiers import Tier  # not app.store: app.config imports this module
from providers import Locality

ALLOWED: dict[Tier, frozenset[Locality]] = {
    Tier.STANDARD: frozenset(Locality),
    Tier.PRIVATE: frozenset({Locality.ON_PREM}),
    Tier.EPHEMERAL: frozenset({Locality.ON_PREM, Locality.FREE_CLOUD}),
}

_WHY = {
    Tier.PRIVATE: "Private chats only use on-prem models, so nothing leaves your network",
    Tier.EPHEMERAL: "Ephemeral chats only use on-prem or free models",
}


def least_private(*localities: Locality) -> Locality:
    """The least private of ``localities``: the one the fewest tiers allow.

    A provider reached through a proxy is judged by this of the server's and the
    proxy's localities, since the chat's words pass through both.
    """
    return min(localities, key=lambda locality: sum(locality in a for a in ALLOWED.values()))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def decision(tier: Tier, locality: Locality, provider_name: str = "this provider") -> Decision:
    """Whether ``tier`` may use a provider of ``locality``, and why not."""
    if locality in ALLOWED[tier]:
        return Decision(True)
    where = locality.value.replace("_", " ")
    return Decision(False, f"{_WHY[tier]}; {provider_name} is {where}")


def refusals_summary(tier: Tier, refused: list[tuple[str, Locality]]) -> str:
    """One sentence for every provider ``tier`` refuses (name, locality): the reason once,
    then which providers it rules out, grouped by where they run ("" for none)."""
    if not refused:
        return ""
    groups: dict[Locality, list[str]] = {}
    for name, locality in refused:
        groups.setdefault(locality, []).append(name)
    parts = [
        f"{_names(names)} {'is' if len(names) == 1 else 'are'} {where.value.replace('_', ' ')}"
        for where, names in groups.items()
    ]
    return f"{_WHY.get(tier, 'This tier refuses them')}; {'; '.join(parts)}."


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def require(tier: Tier, locality: Locality, provider_name: str) -> None:
    """Raise PolicyRefusedError (exit 5) when ``tier`` may not use the provider."""
    verdict = decision(tier, locality, provider_name)
    if not verdict.allowed:
        raise PolicyRefusedError(
            f"refused: {verdict.reason}. Choose an on-prem provider for this chat, or move the "
            "chat to a tier that allows this one"
        )
