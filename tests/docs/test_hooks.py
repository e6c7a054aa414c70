"""The site's hooks one function at a time: the README's links, the API page's Markdown."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.docs import ROOT

sys.path.insert(0, str(ROOT / "docs" / "hooks"))

from generated_pages import readme_as_index
from openapi_markdown import render, schema_type

pytestmark = pytest.mark.docs

README = (
    "See [docs/sync.md](docs/sync.md#in-the-window) and ![shot](docs/images/a.png); "
    "[`.config.yml.example`](.config.yml.example) documents it; "
    "[web](https://example.org/x.md) and [here](#configuration) stay."
)


def test_readme_links_into_docs_become_site_links_and_others_text() -> None:
    assert readme_as_index(README, None) == (
        "See [docs/sync.md](sync.md#in-the-window) and ![shot](images/a.png); "
        "`.config.yml.example` documents it; "
        "[web](https://example.org/x.md) and [here](#configuration) stay."
    )


def test_readme_links_outside_docs_point_at_the_repository_when_known() -> None:
    fixed = readme_as_index(README, "https://github.com/o/hushchat/")
    assert (
        "[`.config.yml.example`](https://github.com/o/hushchat/blob/HEAD/.config.yml.example)"
        in fixed
    )
    assert "[docs/sync.md](sync.md#in-the-window)" in fixed


def test_schema_types() -> None:
    assert schema_type({"$ref": "#/components/schemas/PushRequest"}) == (
        "[PushRequest](#schema-pushrequest)"
    )
    assert schema_type(
        {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
    ) == ("string (date-time) or null")
    assert schema_type({"type": "array", "items": {"type": "integer"}}) == "array of integer"
    assert schema_type({"enum": ["saved", "conflict"]}) == "one of `saved`, `conflict`"
    assert schema_type({}) == "any"


def test_render_lists_operations_parameters_responses_and_schemas() -> None:
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "T", "version": "1"},
        "paths": {
            "/v1/things/{id}": {
                "get": {
                    "tags": ["things"],
                    "summary": "Read a thing",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "description": "either | or",
                            "schema": {"type": "string", "pattern": "^a|b$"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        },
                        "404": {"description": "Not Found"},
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {
                    "type": "object",
                    "description": "A thing.",
                    "properties": {"n": {"type": "integer", "default": 0}},
                    "required": ["n"],
                }
            }
        },
    }
    page = render(document, "openapi.json")
    assert "[openapi.json](openapi.json)" in page
    assert "- `GET /v1/things/{id}`: Read a thing" in page
    assert "### `GET /v1/things/{id}`" in page
    # A pipe in a code span stays as it is (the table keeps code spans whole); one in
    # text is escaped, so the row keeps its columns.
    assert "| `id` | path | yes | string | either \\| or (pattern: `^a|b$`) |" in page
    assert "| 200 | OK | `application/json`: [Thing](#schema-thing) |" in page
    assert "| 404 | Not Found | none |" in page
    assert "### Thing {#schema-thing}" in page
    assert "| `n` | integer | yes | default: `0` |" in page
