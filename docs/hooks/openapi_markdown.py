"""Render an OpenAPI 3.1 document (the sync server's) as one Markdown page.

Endpoints grouped by tag, each with its method, path, summary, description, security,
parameters, request body and responses (status, description, media type, schema), then
every component schema with its fields. Schema names link to their section, whose
anchor is ``schema-<name>`` (set with the ``attr_list`` extension).
"""

from __future__ import annotations

import json
from typing import Any

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_REF_PREFIX = "#/components/schemas/"


def _cell(text: object) -> str:
    """Text made safe for one Markdown table cell: one line, pipes escaped.

    A pipe inside a code span needs no escape (the table extension keeps code spans
    whole) and would show its backslash, so only pipes outside backticks are escaped.
    """
    parts = " ".join(str(text).split()).split("`")
    return "`".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def _anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() else "-" for c in name).lower()


def schema_type(schema: dict[str, Any]) -> str:
    """A short Markdown description of a schema's type (references become links)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        name = ref.removeprefix(_REF_PREFIX)
        return f"[{name}](#{_anchor(name)})"
    for combiner, word in (("anyOf", " or "), ("oneOf", " or "), ("allOf", " and ")):
        if combiner in schema:
            return word.join(schema_type(part) for part in schema[combiner])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(schema_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return "array of " + schema_type(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "object of " + schema_type(schema["additionalProperties"])
    if kind is None:
        return "any"
    text = f"{kind}"
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _constraints(schema: dict[str, Any]) -> str:
    keys = (
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "default",
    )
    parts = [f"{key}: `{_value(schema[key])}`" for key in keys if key in schema]
    for part in schema.get("anyOf", []):
        if isinstance(part, dict) and part.get("type") != "null":
            parts.extend(f"{key}: `{_value(part[key])}`" for key in keys if key in part)
    return "; ".join(dict.fromkeys(parts))


def _describe(description: object, schema: dict[str, Any]) -> str:
    text = _cell(description or schema.get("description", ""))
    constraints = _constraints(schema)
    if constraints:
        text = f"{text} ({_cell(constraints)})" if text else _cell(constraints)
    return text


def _content(content: dict[str, Any]) -> list[str]:
    return [f"`{media}`: {schema_type(body.get('schema', {}))}" for media, body in content.items()]


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    out = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        out += [f"**{op['summary']}**", ""]
    if op.get("description"):
        out += [op["description"].strip(), ""]
    if op.get("deprecated"):
        out += ["!!! warning", "    Deprecated.", ""]
    if op.get("security"):
        schemes = sorted({name for entry in op["security"] for name in entry})
        out += ["Authentication: " + ", ".join(f"`{s}`" for s in schemes), ""]
    params = op.get("parameters", [])
    if params:
        out += [
            "| Parameter | In | Required | Type | Description |",
            "|---|---|---|---|---|",
        ]
        for param in params:
            schema = param.get("schema", {})
            out.append(
                f"| `{param['name']}` | {param['in']} | "
                f"{'yes' if param.get('required') else 'no'} | {_cell(schema_type(schema))} | "
                f"{_describe(param.get('description'), schema)} |"
            )
        out.append("")
    body = op.get("requestBody")
    if body:
        required = "required" if body.get("required") else "optional"
        out += [f"Request body ({required}): " + "; ".join(_content(body.get("content", {}))), ""]
    responses = op.get("responses", {})
    if responses:
        out += ["| Status | Description | Body |", "|---|---|---|"]
        for status in sorted(responses):
            response = responses[status]
            body_text = "; ".join(_content(response.get("content", {}))) or "none"
            out.append(
                f"| {status} | {_cell(response.get('description', ''))} | {_cell(body_text)} |"
            )
        out.append("")
    return out


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name} {{#{_anchor(name)}}}", ""]
    if schema.get("description"):
        out += [schema["description"].strip(), ""]
    properties: dict[str, Any] = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        out += ["| Field | Type | Required | Description |", "|---|---|---|---|"]
        for field, sub in properties.items():
            out.append(
                f"| `{field}` | {_cell(schema_type(sub))} | "
                f"{'yes' if field in required else 'no'} | {_describe(None, sub)} |"
            )
        out.append("")
        if schema.get("additionalProperties") is False:
            out += ["No other fields are accepted.", ""]
    else:
        out += [f"Type: {schema_type(schema)}", ""]
    return out


def render(document: dict[str, Any], download: str) -> str:
    """The Markdown page for ``document``; ``download`` is the JSON file's site path."""
    info = document.get("info", {})
    out = [
        "# Server API reference",
        "",
        f"{info.get('title', 'API')}, version {info.get('version', '?')}, "
        f"OpenAPI {document.get('openapi', '?')}. Generated at build time from the document "
        f"the server produces; download it as [openapi.json]({download}). A running server "
        "also serves it at `/openapi.json`.",
        "",
    ]
    if info.get("description"):
        out += [info["description"].strip(), ""]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, op))
    out += ["## Endpoints", ""]
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                summary = _cell(item[method].get("summary", ""))
                out.append(f"- `{method.upper()} {path}`: {summary}")
    out.append("")
    for tag, operations in by_tag.items():
        out += [f"## {tag.capitalize()}", ""]
        for path, method, op in operations:
            out += _operation(path, method, op)
    schemes = document.get("components", {}).get("securitySchemes", {})
    if schemes:
        out += ["## Security schemes", ""]
        for name, scheme in schemes.items():
            kind = scheme.get("scheme") or scheme.get("type", "")
            out += [f"- `{name}`: {kind}. {_cell(scheme.get('description', ''))}".rstrip()]
        out.append("")
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        out += ["## Schemas", ""]
        for name in sorted(schemas):
            out += _schema(name, schemas[name])
    return "\n".join(out)
