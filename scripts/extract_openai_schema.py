"""Extract the Responses API's schemas from OpenAI's published OpenAPI document into a JSON Schema
(Draft 2020-12) that ``jsonschema`` validates with: ``python scripts/extract_openai_schema.py``.

The source is ``openapi.json`` of the repository ``openai/openai-openapi``, read from a bare git
mirror (``--repo``, at ``--rev``) or from a file (``--document`` with ``--commit`` and ``--date``).
The roots kept are the Response object (``Response``), the stream events (``ResponseStreamEvent``),
the input item page (``ResponseItemList``) and the error bodies (``ErrorResponse``, ``Error``: the
404 of ``DELETE /v1/responses/{id}``; its 200 has no schema in the document), with every component
they reference, transitively. OpenAPI specifics are rewritten:

* ``$ref: #/components/schemas/X`` -> ``#/$defs/X``; ``$recursiveRef: "#"`` (Draft 2019-09, in
  ``CompoundFilter``) -> a ``$ref`` to the component it sits in, its ``$recursiveAnchor`` dropped;
* ``nullable: true`` (OpenAPI 3.0) -> ``null`` added to ``type`` / ``enum``, or ``anyOf`` with null;
* ``discriminator`` -> when every branch of its ``oneOf`` / ``anyOf`` requires the property and
  fixes it to values no other branch has, the union becomes ``if``/``then`` per value (so a wrong
  event names its missing field rather than "not valid under any of the given schemas"), else the
  keyword is dropped and the union is kept as it is;
* annotations (``description``, ``title``, ``example(s)``, ``default``, ``x-*``) are dropped.

The output, ``tests/fixtures/openai_responses/openapi-subset.json``, is deterministic: its header
(``x-source``) names the repository, the path, the commit and the commit's date, so re-running this on
the same commit gives the same bytes (``tests/support/test_responses_schema.py`` checks that when the
mirror is present). Development tooling: nothing in the gateway imports it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "openai_responses" / "openapi-subset.json"
MIRROR = Path("/work/.mirror/openai+openai-openapi/repo")
SOURCE_REPO = "openai/openai-openapi"
SOURCE_PATH = "openapi.json"
ROOTS = ("Response", "ResponseStreamEvent", "ResponseItemList", "ErrorResponse", "Error")
COMPONENT = "#/components/schemas/"

# keywords whose value is a schema / a list of schemas / a map of name -> schema
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
        "unevaluatedProperties", "unevaluatedItems", "additionalItems", "contentSchema")
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_DROPPED = ("description", "title", "example", "examples", "default", "$recursiveAnchor", "discriminator")


def referenced(schema: Any) -> set[str]:
    """The component names a schema's ``$ref`` / ``$recursiveRef`` point at (directly)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMPONENT):
                found.add(ref[len(COMPONENT):])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def closure(components: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    """Every component the roots reach, sorted; a missing one is an error."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in components:
            raise SystemExit(f"component {name!r} is referenced but not in the document")
        seen.add(name)
        todo.extend(referenced(components[name]) - seen)
    return sorted(seen)


def _resolve(components: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith(COMPONENT):
        schema = components[schema["$ref"][len(COMPONENT):]]
    return schema


def _values(components: dict[str, Any], branch: Any, prop: str) -> tuple[list[Any], bool] | None:
    """The values a branch fixes ``prop`` to and whether it requires it (through ``allOf``), or None."""
    schema = _resolve(components, branch)
    if not isinstance(schema, dict):
        return None
    parts = [schema, *(_resolve(components, s) for s in schema.get("allOf", []))]
    values: list[Any] | None = None
    required = False
    for part in parts:
        if not isinstance(part, dict):
            continue
        required = required or prop in part.get("required", [])
        spec = _resolve(components, part.get("properties", {}).get(prop))
        if isinstance(spec, dict):
            if "const" in spec:
                values = [spec["const"]]
            elif isinstance(spec.get("enum"), list):
                values = list(spec["enum"])
    return None if values is None else (values, required)


def _discriminated(components: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """A ``discriminator`` union as ``if``/``then`` per value, or None when it cannot be mapped exactly."""
    disc = node.get("discriminator")
    union = "oneOf" if "oneOf" in node else "anyOf" if "anyOf" in node else None
    if not isinstance(disc, dict) or union is None or disc.get("mapping"):
        return None
    prop = disc.get("propertyName")
    if not isinstance(prop, str):
        return None
    cases: list[tuple[Any, Any]] = []
    for branch in node[union]:
        found = _values(components, branch, prop)
        if found is None or not found[1]:
            return None
        cases.extend((value, branch) for value in found[0])
    values = [value for value, _ in cases]
    if len(set(map(json.dumps, values))) != len(values):
        return None  # two branches share a value: only the union itself says which fits
    rest = {k: v for k, v in node.items() if k not in (union, "discriminator")}
    return {
        **rest,
        "type": "object",
        "required": [prop],
        "properties": {prop: {"enum": values}},
        "allOf": [*rest.get("allOf", []),
                  *({"if": {"properties": {prop: {"const": value}}}, "then": branch} for value, branch in cases)],
    }


def convert(components: dict[str, Any], node: Any, owner: str) -> Any:
    """One schema node, OpenAPI -> Draft 2020-12 (``owner``: the component it belongs to)."""
    if isinstance(node, list):
        return [convert(components, item, owner) for item in node]
    if not isinstance(node, dict):
        return node
    mapped = _discriminated(components, node)
    if mapped is not None:
        node = mapped
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key.startswith("x-") or key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = "#/$defs/" + value[len(COMPONENT):] if value.startswith(COMPONENT) else value
        elif key == "$recursiveRef":
            if value != "#":
                raise SystemExit(f"{owner}: $recursiveRef {value!r} is not supported")
            out["$ref"] = f"#/$defs/{owner}"
        elif key in _ONE:
            out[key] = convert(components, value, owner)
        elif key in _MANY:
            out[key] = [convert(components, item, owner) for item in value]
        elif key in _MAP:
            out[key] = {name: convert(components, sub, owner) for name, sub in value.items()}
        else:
            out[key] = value  # enum, const, required, type, bounds, format ...: data, not schemas
    if node.get("nullable") is True:
        out = _nullable(out)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
        return schema
    if isinstance(kind, list):
        schema["type"] = kind if "null" in kind else [*kind, "null"]
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def extract(document: dict[str, Any], commit: str, date: str) -> dict[str, Any]:
    components: dict[str, Any] = document["components"]["schemas"]
    names = closure(components, ROOTS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by scripts/extract_openai_schema.py from OpenAI's published OpenAPI document; "
                    "do not edit: re-run the script on a newer commit instead.",
        "x-source": {"repository": SOURCE_REPO, "path": SOURCE_PATH, "commit": commit, "date": date,
                     "openapi": document.get("openapi"), "version": document.get("info", {}).get("version"),
                     "roots": list(ROOTS)},
        "$defs": {name: convert(components, components[name], name) for name in names},
    }


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def from_mirror(repo: Path, rev: str) -> dict[str, Any]:
    commit = _git(repo, "rev-parse", f"{rev}^{{commit}}").strip()
    date = _git(repo, "show", "-s", "--format=%cI", commit).strip()
    document = json.loads(_git(repo, "show", f"{commit}:{SOURCE_PATH}"))
    return extract(document, commit, date)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, default=MIRROR, help="a git clone/mirror of openai/openai-openapi")
    parser.add_argument("--rev", default="HEAD", help="the commit to read openapi.json at (default HEAD)")
    parser.add_argument("--document", type=Path, help="read openapi.json from this file instead of --repo")
    parser.add_argument("--commit", help="with --document: the commit it was taken from")
    parser.add_argument("--date", help="with --document: that commit's date (ISO 8601)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out differs instead of writing it")
    args = parser.parse_args(argv)
    if args.document is not None:
        if not args.commit or not args.date:
            parser.error("--document needs --commit and --date (the header names the source)")
        schema = extract(json.loads(args.document.read_text()), args.commit, args.date)
    else:
        schema = from_mirror(args.repo, args.rev)
    text = render(schema)
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is not what {SOURCE_REPO}@{schema['x-source']['commit'][:7]} gives", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"{args.out}: {len(schema['$defs'])} definitions from {SOURCE_REPO}@{schema['x-source']['commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
