"""The ``proxy``, ``proxy_locality`` and ``stream_idle_timeout`` settings of an ``llms`` entry
(issue 10, items 1 and 7): validation, the locality the tier policy sees, the spec."""

from __future__ import annotations

import pytest

from app.config import Config, parse_config
from app.errors import ConfigError
from app.privacy import policy
from app.tiers import Tier
from providers import Locality


def parse(entry: str) -> Config:
    return parse_config(f"llms:\n  - provider_name: p\n    type: openai\n{entry}", "cfg.yml", {})


def problems(entry: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(entry)
    return str(caught.value)


LOCAL = "    base_url: http://127.0.0.1:8080/v1\n    model_name: m\n"
CLOUD = "    base_url: https://api.example.com/v1\n    model_name: m\n"


def test_no_proxy_by_default_and_a_60_second_idle_timeout() -> None:
    entry = parse(LOCAL).llms[0]
    assert entry.proxy is None and entry.proxy_locality is None
    spec = entry.to_spec()
    assert spec.proxy is None and spec.stream_idle_timeout == 60.0


def test_stream_idle_timeout_reaches_the_spec_and_must_be_positive() -> None:
    assert (
        parse(LOCAL + "    stream_idle_timeout: 1.5\n").llms[0].to_spec().stream_idle_timeout == 1.5
    )
    assert "cfg.yml:6: llms[0].stream_idle_timeout:" in problems(
        LOCAL + "    stream_idle_timeout: 0\n"
    )


def test_a_local_proxy_is_on_prem_by_default() -> None:
    entry = parse(LOCAL + "    proxy: http://10.0.0.2:3128\n").llms[0]
    assert entry.effective_locality is Locality.ON_PREM
    assert entry.to_spec().proxy == "http://10.0.0.2:3128"
    assert policy.decision(Tier.PRIVATE, entry.effective_locality).allowed


def test_a_proxy_elsewhere_must_declare_its_locality() -> None:
    text = problems(LOCAL + "    proxy: http://user:hunter2@proxy.example.com:3128\n")
    assert "cfg.yml:6: llms[0].proxy_locality: required because the proxy" in text
    assert "http://proxy.example.com:3128" in text and "hunter2" not in text


@pytest.mark.parametrize(
    ("server", "proxy", "effective"),
    [
        (Locality.ON_PREM, Locality.ON_PREM, Locality.ON_PREM),
        (Locality.ON_PREM, Locality.FREE_CLOUD, Locality.FREE_CLOUD),
        (Locality.ON_PREM, Locality.PAID_CLOUD, Locality.PAID_CLOUD),
        (Locality.FREE_CLOUD, Locality.ON_PREM, Locality.FREE_CLOUD),
        (Locality.FREE_CLOUD, Locality.PAID_CLOUD, Locality.PAID_CLOUD),
        (Locality.PAID_CLOUD, Locality.FREE_CLOUD, Locality.PAID_CLOUD),
        (Locality.PAID_CLOUD, Locality.ON_PREM, Locality.PAID_CLOUD),
    ],
)
def test_the_policy_sees_the_less_private_of_server_and_proxy(
    server: Locality, proxy: Locality, effective: Locality
) -> None:
    entry = parse(
        CLOUD + f"    locality: {server}\n    proxy: http://proxy.example.com:3128\n"
        f"    proxy_locality: {proxy}\n"
    ).llms[0]
    assert entry.effective_locality is effective
    assert entry.to_spec().locality is effective
    for tier in Tier:
        assert policy.decision(tier, entry.effective_locality).allowed == (
            policy.decision(tier, server).allowed and policy.decision(tier, proxy).allowed
        )


def test_a_private_chat_through_a_cloud_proxy_is_refused() -> None:
    entry = parse(
        LOCAL + "    proxy: http://127.0.0.1:3128\n    proxy_locality: paid_cloud\n"
    ).llms[0]
    assert entry.effective_locality is Locality.PAID_CLOUD
    verdict = policy.decision(Tier.PRIVATE, entry.effective_locality, entry.provider_name)
    assert not verdict.allowed and "paid cloud" in verdict.reason


def test_proxy_locality_without_a_proxy_is_a_mistake() -> None:
    text = problems(LOCAL + "    proxy_locality: on_prem\n")
    assert "cfg.yml:6: llms[0].proxy_locality: set, but there is no proxy" in text


@pytest.mark.parametrize(
    "proxy", ["socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://", "http://u:secret@[::1"]
)
def test_a_proxy_must_be_an_http_url(proxy: str) -> None:
    text = problems(LOCAL + f"    proxy: '{proxy}'\n")
    assert "llms[0].proxy:" in text and "proxy URL" in text
    assert "secret" not in text


def test_least_private_agrees_with_the_tiers() -> None:
    assert policy.least_private(Locality.ON_PREM) is Locality.ON_PREM
    assert policy.least_private(Locality.FREE_CLOUD, Locality.ON_PREM) is Locality.FREE_CLOUD
    assert policy.least_private(Locality.FREE_CLOUD, Locality.PAID_CLOUD) is Locality.PAID_CLOUD
