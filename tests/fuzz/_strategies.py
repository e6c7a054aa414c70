"""Strategies shared by the fuzz targets: JSON values, mutations of documents and bytes.

Mutations start from a valid input and change a few things, so that the parsers are
exercised past their first check; random values alone rarely get there.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

#: Text that stresses decoders and databases: lone surrogates, NUL, line separators.
AWKWARD_TEXT = st.sampled_from(
    ["", " ", "\x00", "\ud800", "\udfff", "\u2028", "\u0085", "\ufeff", "é", "𝄞", "${X}", "$$"]
)


def texts(keys: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Short text, often awkward, often one of ``keys`` (a format's own field names)."""
    return _texts(tuple(keys))


# Strategies are built once per argument set: building a recursive strategy costs more
# than drawing from it, and the mutations draw them again and again.
@functools.cache
def _texts(keys: tuple[str, ...]) -> st.SearchStrategy[str]:
    choices: list[st.SearchStrategy[str]] = [st.text(max_size=20), AWKWARD_TEXT]
    if keys:
        choices.append(st.sampled_from(list(keys)))
    return st.one_of(choices)


def scalars(keys: Sequence[str] = ()) -> st.SearchStrategy[Any]:
    """JSON scalars, including the extremes Python's json module reads and writes."""
    return _scalars(tuple(keys))


@functools.cache
def _scalars(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([0, -1, 1, 2**31, 2**53, 2**63, -(2**63), 10**30]),
        st.floats(),  # NaN and ±Infinity: json.loads accepts them
        texts(keys),
    )


def json_values(keys: Sequence[str] = (), *, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any JSON value; object keys are often the format's own field names."""
    return _json_values(tuple(keys), max_leaves)


@functools.cache
def _json_values(keys: tuple[str, ...], max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(keys),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(texts(keys), children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


def field_names(node: Any) -> set[str]:
    """Every object key anywhere in the JSON value ``node``."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` (the root is ``()``)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


_OPERATIONS = ["tweak", "tweak", "tweak", "replace", "transplant", "delete", "duplicate", "add"]


def _near(value: Any) -> st.SearchStrategy[Any]:
    """Values close to ``value`` that a lax parser might take for it: 1.0 or true for 1,
    a non-ASCII or cut string for a string, an empty container for a full one."""
    if isinstance(value, bool):
        return st.sampled_from([int(value), not value, str(value).lower(), None])
    if isinstance(value, int):
        near = [float(value), value + 1, value - 1, -value, str(value), 2**64, True, False]
        return st.sampled_from(near)
    if isinstance(value, float):
        return st.sampled_from(
            [
                int(value) if value == value and abs(value) < 1e300 else 0,
                float("nan"),
                float("inf"),
                -value,
            ]
        )
    if isinstance(value, str):
        middle = len(value) // 2
        return st.sampled_from(
            [
                value + "é",
                "",
                value[:middle],
                value.upper(),
                f" {value}",
                value + "\x00",
                value[:middle] + "\ud800" + value[middle:],
                value * 3,
                value[:-1] + "=",
            ]
        )
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], [*value, *value], [value]])
    if isinstance(value, dict):
        return st.sampled_from([{}, [value], dict(list(value.items())[:1])])
    return st.sampled_from(["", 0, False, [], {}])


@st.composite
def mutated(
    draw: st.DrawFn, document: Any, keys: Sequence[str] = (), *, max_mutations: int = 4
) -> Any:
    """``document`` (a JSON value) with one to ``max_mutations`` structural changes.

    Each change picks a node and replaces it with a random value or another node of the
    document, deletes it, duplicates it, or adds a field or item next to it.
    """
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(result)
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(_OPERATIONS))
        if not path:  # the root itself
            if operation in ("replace", "transplant"):
                result = draw(json_values(keys))
            continue
        parent, last = _at(result, path[:-1]), path[-1]
        if operation == "tweak":
            parent[last] = draw(_near(parent[last]))
        elif operation == "replace":
            parent[last] = draw(json_values(keys, max_leaves=8))
        elif operation == "transplant":
            parent[last] = copy.deepcopy(_at(result, draw(st.sampled_from(paths))))
        elif operation == "delete":
            del parent[last]
        elif operation == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif isinstance(parent, dict):
            parent[draw(texts(keys))] = draw(json_values(keys, max_leaves=8))
        else:
            parent.insert(last, draw(json_values(keys, max_leaves=8)))
    return result


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, *, max_mutations: int = 4) -> bytes:
    """``data`` with a few byte-level changes: flips, deletions, insertions, duplicated runs."""
    result = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        size = len(result)
        start = draw(st.integers(0, size))
        end = draw(st.integers(start, min(size, start + 64)))
        operation = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]))
        if operation == "flip" and start < size:
            result[start] ^= draw(st.integers(1, 255))
        elif operation == "delete":
            del result[start:end]
        elif operation == "insert":
            result[start:start] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "duplicate":
            result[start:start] = result[start:end]
        else:
            del result[start:]
    return bytes(result)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut into chunks at random places (some chunks may be empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def dumps(value: Any) -> bytes:
    """``value`` as the JSON bytes a file would hold (NaN and surrogates allowed)."""
    return json.dumps(value).encode()
