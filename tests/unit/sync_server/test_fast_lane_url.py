"""The fast lane's request URL is Starlette's, for every scheme, server and Host header."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import URL

from sync_server import fastlane

_HOSTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "sync.example.org",
            "sync.example.org:8443",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "Sync.Example.ORG",
            "",
            "bad host",
            "host:notaport",
            "host:99999",
            "evil.example/path?x#y",
            "例え.jp",
        ]
    ),
    st.text(max_size=30),
)
_SERVERS = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["127.0.0.1", "::1", "10.0.0.5", "fe80::1"]), st.integers(1, 65535)),
    st.sampled_from([("127.0.0.1", 80), ("127.0.0.1", 443), ("::1", 80)]),
)
_QUERIES = st.one_of(
    st.just(b""),
    st.builds(
        lambda cursor, limit: f"cursor={cursor}&limit={limit}".encode(),
        st.integers(0, 10**12),
        st.integers(1, 1000),
    ),
)


def _scope(scheme: str, server: Any, host: str | None, path: str, query: bytes) -> dict[str, Any]:
    headers = [(b"user-agent", b"x")]
    if host is not None:
        headers.append((b"host", host.encode("utf-8")))
        headers.append((b"host", b"second.example"))  # only the first counts
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": scheme,
        "path": path,
        "query_string": query,
        "headers": headers,
    }
    if server is not None:
        scope["server"] = server
    return scope


@given(
    scheme=st.sampled_from(["http", "https"]),
    server=_SERVERS,
    host=_HOSTS,
    path=st.sampled_from([fastlane.PUSH_PATH, fastlane.CHANGES_PATH]),
    query=_QUERIES,
)
def test_the_lane_url_is_starlettes(
    scheme: str, server: Any, host: str | None, path: str, query: bytes
) -> None:
    scope = _scope(scheme, server, host, path, query)
    headers = fastlane._headers(scope)
    # Twice: once computed, once from what was kept for this scheme, server and host.
    assert fastlane._url(scope, headers) == str(URL(scope=scope))
    assert fastlane._url(scope, headers) == str(URL(scope=scope))


def test_what_is_kept_per_host_is_bounded() -> None:
    """The Host header is the client's: at most ``_BASES_KEPT`` entries, ever."""
    for n in range(fastlane._BASES_KEPT * 3):
        scope = _scope("http", ("127.0.0.1", 8000), f"host{n}.example", fastlane.PUSH_PATH, b"")
        assert (
            fastlane._url(scope, fastlane._headers(scope)) == f"http://host{n}.example/v1/sync/push"
        )
        assert len(fastlane._BASES) <= fastlane._BASES_KEPT
