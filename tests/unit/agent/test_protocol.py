"""Socket paths, private directories, frames, key (de)serialisation and peer credentials."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from app.agent.keys import AgentKeys
from app.agent.protocol import (
    MAX_REQUEST_BYTES,
    ProtocolError,
    decode_body,
    encode_frame,
    frame_length,
    keys_from_json,
    keys_to_json,
    lock_file_path,
    peer_uid,
    private_dir_problem,
    runtime_dir,
    socket_path,
)
from app.tiers import STORED_TIERS, Tier


def sample_keys() -> AgentKeys:
    return AgentKeys(
        bytes(range(16)),
        {Tier.STANDARD: bytearray(b"s" * 32), Tier.PRIVATE: bytearray(b"p" * 32)},
        {Tier.STANDARD: 3, Tier.PRIVATE: 1},
    )


def test_socket_path_under_xdg_runtime_dir(runtime_dir: Path, tmp_path: Path) -> None:
    path = socket_path(tmp_path / "profile")
    assert path.parent == runtime_dir / "hushchat"
    assert path.name.startswith("agent-") and path.name.endswith(".sock")
    assert len(os.fsencode(path)) < 100
    assert lock_file_path(tmp_path / "profile").with_suffix(".sock") == path


def test_socket_path_is_per_profile_and_follows_resolution(
    runtime_dir: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert socket_path(tmp_path / "link") == socket_path(real)
    assert socket_path(tmp_path / "real" / ".." / "real") == socket_path(real)
    assert socket_path(tmp_path / "other") != socket_path(real)


def test_socket_path_without_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))
    try:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setenv("TMPDIR", str(short))
        monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its answer
        assert runtime_dir() == short / f"hushchat-{os.getuid()}"
        monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/path")
        assert runtime_dir() == short / f"hushchat-{os.getuid()}"
    finally:
        short.rmdir()


def test_socket_path_fits_a_unix_socket_address_however_deep_the_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4)
    deep.mkdir(parents=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    monkeypatch.setenv("TMPDIR", str(deep))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = socket_path(tmp_path / "profile")
    assert path.parent == Path("/tmp") / f"hushchat-{os.getuid()}"
    assert len(os.fsencode(path)) < 104
    with socket.socket(socket.AF_UNIX) as listener:  # binds where the deep path could not
        path.parent.mkdir(mode=0o700, exist_ok=True)
        listener.bind(str(path))
    path.unlink()


def test_private_dir_problem(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    assert private_dir_problem(good) is None
    assert "does not exist" in str(private_dir_problem(tmp_path / "missing"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    assert "readable by others" in str(private_dir_problem(shared))
    (tmp_path / "file").write_text("")
    assert "not a directory" in str(private_dir_problem(tmp_path / "file"))
    (tmp_path / "link").symlink_to(good)
    assert "not a directory" in str(private_dir_problem(tmp_path / "link"))


def test_frames_round_trip() -> None:
    frame = encode_frame({"v": 1, "op": "keys"})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert decode_body(frame[4:]) == {"v": 1, "op": "keys"}


@pytest.mark.parametrize(
    "body", [b"\xff\xfe garbage", b"not json", b"[1, 2]", b'"text"', b"", b"{"]
)
def test_decode_refuses_non_objects(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_body(body)


def test_frame_length_is_bounded() -> None:
    assert frame_length(struct.pack(">I", MAX_REQUEST_BYTES), MAX_REQUEST_BYTES) == 1024
    with pytest.raises(ProtocolError, match="over the limit"):
        frame_length(b"\xff\xff\xff\xff", MAX_REQUEST_BYTES)


def test_keys_round_trip_through_json() -> None:
    keys = sample_keys()
    parsed = keys_from_json(decode_body(encode_frame(keys_to_json(keys))[4:]))
    assert parsed.vault_id == keys.vault_id
    assert parsed.generations == keys.generations
    assert all(parsed.key(tier) == keys.key(tier) for tier in STORED_TIERS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.pop("vault_id"),
        lambda m: m.update(vault_id="!!not base64!!"),
        lambda m: m.update(vault_id="AAAA"),
        lambda m: m["databases"].pop("private"),
        lambda m: m["databases"].update(ephemeral=m["databases"]["standard"]),
        lambda m: m["databases"]["standard"].update(key="AAAA"),
        lambda m: m["databases"]["standard"].update(generation="1"),
        lambda m: m["databases"]["standard"].update(generation=True),
        lambda m: m["databases"]["private"].pop("key"),
        lambda m: m.update(databases=[]),
    ],
)
def test_keys_from_json_refuses_malformed(mutate: object) -> None:
    message = keys_to_json(sample_keys())
    mutate(message)  # type: ignore[operator]
    with pytest.raises(ProtocolError):
        keys_from_json(message)


def test_peer_uid_of_a_socket_pair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.getuid()
        assert peer_uid(left, platform="freebsd13") is None  # unknown: refuse


def test_peer_uid_of_a_non_unix_socket_is_none() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert peer_uid(sock) is None
