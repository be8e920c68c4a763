"""Generate the reference parts of docs/ from the code: ``python scripts/gen_docs.py`` (``--check`` to verify).

* ``docs/configuration.md``: every section and key of the config, walked from the pydantic models of
  ``fluxway.config`` (nested models, lists of models and unions of models, discriminated or not): the
  type with its bounds, the default and the description. A key's description is its
  ``Field(description=...)``, else the attribute docstring under it, else the ``#`` comments right
  above it (or at the end of its line); a class docstring introduces its section. A key with none of
  them is an error: the reference names every key.
* ``docs/providers.md``, between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``:
  the provider types (``PRESETS`` and the native ``ADAPTERS`` of ``fluxway.adapters.registry``), each
  probed through its real adapter: endpoints from ``supports()``, URL and auth header from a built
  call, dropped and renamed fields from its preset.

Development tooling: nothing in the gateway imports it. ``tests/test_generated_docs.py`` fails when a
committed file differs from what this script renders.
"""

from __future__ import annotations

import argparse
import ast
import enum
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import annotated_types
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python scripts/gen_docs.py"
CONFIG_DOC = "docs/configuration.md"
PROVIDERS_DOC = "docs/providers.md"


class DocsError(Exception):
    """The docs cannot be generated (a key without a description, a missing marker, ...)."""


# ---------------------------------------------------------------------------------------------
# Descriptions from the source


def _comments(source: str) -> dict[int, str]:
    """Line number (1-based) -> the text of the comment on that line."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _class_notes(cls: type) -> dict[str, str]:
    """Field name -> its note in the class body (attribute docstring, comments above or at the end)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments = _comments(source)
    tree = ast.parse(source)
    klass = tree.body[0]
    if not isinstance(klass, ast.ClassDef):
        return {}
    notes: dict[str, str] = {}
    body = klass.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        parts: list[str] = []
        row = node.lineno - 1
        above: list[str] = []
        while row >= 1 and lines[row - 1].strip().startswith("#"):
            text = comments.get(row, "")
            if text.startswith("---"):  # a divider between groups of keys, not about this one
                break
            above.append(text)
            row -= 1
        parts.extend(reversed(above))
        end = node.end_lineno or node.lineno
        parts.extend(comments[r] for r in range(node.lineno, end + 1) if r in comments)
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            parts.insert(0, inspect.cleandoc(nxt.value.value))
        if parts:
            notes[node.target.id] = " ".join(p for p in parts if p)
    return notes


def _description(model: type[BaseModel], name: str, info: FieldInfo) -> str | None:
    if info.description:
        return info.description
    for klass in model.__mro__:
        if isinstance(klass, type) and name in inspect.get_annotations(klass):
            return _class_notes(klass).get(name)
    return None


def _doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


# ---------------------------------------------------------------------------------------------
# Types


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _item(tp: Any) -> Any | None:
    """The element type of a list-like annotation (``tuple[X, ...]``, ``list[X]``, sets), else None."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin in (list, set, frozenset) and args:
        return args[0]
    return None


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The model classes a field's value may be (directly, in a list, in a union), in order."""
    tp = _strip(tp)
    if _is_model(tp):
        return [tp]
    if _is_union(tp):
        return [m for a in typing.get_args(tp) for m in _models_in(a)]
    item = _item(tp)
    if item is not None:
        return _models_in(item)
    if typing.get_origin(tp) is dict:
        return _models_in(typing.get_args(tp)[1])
    return []


def _discriminator(tp: Any) -> str | None:
    """The discriminator key of a (possibly list-wrapped) annotated union, if it declares one."""
    item = _item(_strip(tp))
    if item is not None:
        return _discriminator(item)
    if typing.get_origin(tp) is typing.Annotated:
        for meta in typing.get_args(tp)[1:]:
            disc = getattr(meta, "discriminator", None)
            if isinstance(disc, str):
                return disc
    return None


def _literal(value: Any) -> str:
    return json.dumps(value.value if isinstance(value, enum.Enum) else value)


def type_text(tp: Any, link: Callable[[type[BaseModel]], str]) -> str:
    """A YAML-minded name for an annotation: ``int``, ``"a" or "b"``, ``list of string``, a linked object."""
    tp = _strip(tp)
    if tp is None or tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(f"`{_literal(a)}`" for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join(type_text(a, link) for a in typing.get_args(tp))
    item = _item(tp)
    if item is not None:
        return f"list of {type_text(item, link)}"
    if typing.get_origin(tp) is dict:
        key, value = typing.get_args(tp) or (str, Any)
        return f"map of {type_text(key, link)} to {type_text(value, link)}"
    if _is_model(tp):
        return link(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " or ".join(f"`{_literal(m)}`" for m in tp)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", repr(tp))


_BOUNDS: tuple[tuple[type, str, str], ...] = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def bounds_text(info: FieldInfo) -> str:
    """The field's constraints (``>= 0``, ``at least 1 long``, ``matches ^[a-z]+$``), comma-separated."""
    out: list[str] = []
    for meta in info.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                out.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, annotated_types.MinLen):
            out.append(f"at least {meta.min_length} long")
        if isinstance(meta, annotated_types.MaxLen):
            out.append(f"at most {meta.max_length} long")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"matches `{pattern}`")
    return ", ".join(out)


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.get_default(call_default_factory=True, validated_data={})
    else:
        value = info.default
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel) and value == type(value)():
        return "its defaults"
    return f"`{json.dumps(to_jsonable_python(value), ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# The configuration reference


@dataclass
class _Section:
    path: str  # `providers[]`, `server.cors`
    model: type[BaseModel]
    label: str = ""  # `type: anthropic` for a union member
    note: str = ""  # the field's description, for a section reached through one
    also: list[str] = field(default_factory=list)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class _Walk:
    sections: list[_Section] = field(default_factory=list)
    by_model: dict[type[BaseModel], _Section] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def anchor(self, s: _Section) -> str:
        return _anchor(f"{s.path} {s.label}")

    def link(self, model: type[BaseModel]) -> str:
        s = self.by_model[model]
        title = f"{s.path} ({s.label})" if s.label else s.path
        return f"object: [`{title}`](#{self.anchor(s)})"

    def visit(self, model: type[BaseModel], path: str, label: str = "", note: str = "") -> None:
        if model in self.by_model:
            known = self.by_model[model]
            if path != known.path and path not in known.also:
                known.also.append(path)
            return
        section = _Section(path, model, label, note)
        self.by_model[model] = section
        self.sections.append(section)
        for name, info in model.model_fields.items():
            tp = info.annotation
            members = _models_in(tp)
            disc = _discriminator(info.rebuild_annotation()) if len(members) > 1 else None
            list_like = _item(_strip(tp)) is not None or (
                _is_union(_strip(tp)) and any(_item(a) is not None for a in typing.get_args(_strip(tp)))
            )
            sub = f"{path}.{name}" if path else name
            if list_like:
                sub += "[]"
            for m in members:
                member_label = ""
                if len(members) > 1:
                    member_label = self._member_label(m, disc)
                self.visit(m, sub, member_label, _description(model, name, info) or "")

    @staticmethod
    def _member_label(model: type[BaseModel], disc: str | None) -> str:
        own = getattr(model, "doc_label", None)  # a member whose tag is not one Literal names itself
        if isinstance(own, str):
            return own
        disc = disc or ("type" if "type" in model.model_fields else None)  # a callable discriminator
        if disc and disc in model.model_fields:
            tp = _strip(model.model_fields[disc].annotation)
            if typing.get_origin(tp) is typing.Literal:
                return f"{disc}: " + " / ".join(str(_literal(a)).strip('"') for a in typing.get_args(tp))
        return model.__name__

    def table(self, s: _Section) -> Iterator[str]:
        yield "| key | type | default | description |"
        yield "|---|---|---|---|"
        for name, info in s.model.model_fields.items():
            where = f"{s.path}.{name}" if s.path else name
            desc = _description(s.model, name, info)
            if not desc:
                self.missing.append(f"{s.model.__module__}.{s.model.__qualname__}.{name} ({where})")
                desc = ""
            kind = type_text(info.annotation, self.link)
            bounds = bounds_text(info)
            if bounds:
                kind += f", {bounds}"
            yield f"| `{name}` | {_cell(kind)} | {_cell(default_text(info))} | {_cell(desc)} |"


_CONFIG_INTRO = """\
<!-- Generated by `{command}` from the pydantic models in src/fluxway/config.py: edit those, not this file. -->

# Configuration reference

A YAML file (`fluxway serve --config FILE`, or `FLUXWAY_CONFIG`); `fluxway check --config FILE`
validates one. `${{VAR}}` and `${{VAR:-default}}` are expanded in every string first. Unknown keys,
wrong types, values out of bounds and dangling references (a target's unknown provider, a fallback to
an unknown model) are errors, each reported with its path (`models[1].targets[0].provider: ...`).
Relative paths (the SQLite file, the spool) are relative to the config file's folder. A sample:
`examples/fluxway.yaml`.

Keys ending in `[]` are lists: `providers[].timeout` is the `timeout` key of each entry of
`providers`. "its defaults" means the section may be left out.
"""


def render_config(root_model: type[BaseModel]) -> str:
    walk = _Walk()
    walk.visit(root_model, "")
    out = [_CONFIG_INTRO.format(command=COMMAND)]
    for s in walk.sections:
        if s.path:
            title = f"`{s.path}` ({s.label})" if s.label else f"`{s.path}`"
            out.append(f'<a id="{walk.anchor(s)}"></a>\n\n## {title}\n')
        else:
            out.append("## Top level\n")
        intro = _doc(s.model) or s.note  # the class's own words, else the field's that leads here
        if intro:
            out.append(intro + "\n")
        if s.also:
            out.append("Also used at " + ", ".join(f"`{p}`" for p in s.also) + ".\n")
        out.append("\n".join(walk.table(s)) + "\n")
    if walk.missing:
        raise DocsError(
            ["config keys without a description (add a comment above the field or Field(description=...)):"]
            + [f"  {m}" for m in walk.missing]
        )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The provider table


PROBE_KEY = "probe-key-0123456789"
PROBE_MODEL = "MODEL"
PROBE_BASE = "https://probe.invalid"


@dataclass(frozen=True)
class TypeRow:
    type: str
    adapter: str  # its module
    preset: Any  # the Preset it runs with, if any
    base_url: str | None  # None: the config's base_url is required
    chat_path: str  # the chat call's path (and query) under the base URL, model as {model}
    auth: str
    endpoints: dict[str, bool]
    stream_usage: str


def _provider_config(type_: str, base_url: str | None) -> Any:
    """A provider entry of this type, validated by the config's own models (whatever their shape)."""
    from fluxway.config import Config

    entry: dict[str, Any] = {"name": "probe", "type": type_, "api_keys": [PROBE_KEY]}
    if base_url:
        entry["base_url"] = base_url
    annotation = Config.model_fields["providers"].rebuild_annotation()
    cfg = TypeAdapter(annotation).validate_python([entry])[0]
    for name in ("region", "project", "location"):  # a regional / per-project endpoint: show the template
        if name in type(cfg).model_fields and getattr(cfg, name) is None:
            cfg = cfg.model_copy(update={name: "{" + name + "}"})
    return cfg


def _probe(type_: str) -> TypeRow:
    from fluxway.adapters import registry
    from fluxway.adapters.presets import PRESETS
    from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, Target, UpstreamError

    needs_base = False
    try:
        adapter = registry.create_adapter(_provider_config(type_, None))
    except ValueError:  # the type has no default base URL
        needs_base = True
        adapter = registry.create_adapter(_provider_config(type_, PROBE_BASE))
    req = CanonicalRequest(Endpoint.CHAT, "m", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    call = adapter.build(req, Target("probe", PROBE_MODEL), Credentials(PROBE_KEY))
    parts = urlsplit(call.url)
    origin = f"{parts.scheme}://{parts.netloc}"
    preset = getattr(adapter, "preset", None)
    if needs_base:
        base_url = None
    elif preset is not None and preset.base_url:
        base_url = preset.base_url
    else:
        base_url = origin
    path = call.url[len(base_url or PROBE_BASE) :].replace(PROBE_MODEL, "{model}")
    auth = "none"
    for name, value in call.headers.items():
        if PROBE_KEY in value:
            auth = "`Authorization: Bearer`" if value == "Bearer " + PROBE_KEY else f"`{name}`"
    if auth != "none" and not registry.requires_api_key(type_):
        try:
            adapter.build(req, Target("probe", PROBE_MODEL), Credentials(None))
            auth += ", key optional"
        except UpstreamError:  # keyless means credentials of another kind (Bedrock: AWS SigV4)
            auth += ", or the type's own credentials (its section below)"
    if preset is not None:
        stream_usage = "asks (`stream_options.include_usage`)" if preset.stream_usage else "counted by Fluxway"
    else:
        stream_usage = "in the provider's stream"
    return TypeRow(
        type=type_,
        adapter=type(adapter).__module__,
        preset=preset if type_ in PRESETS else None,
        base_url=base_url,
        chat_path=path,
        auth=auth,
        endpoints={e.value: adapter.supports(e) for e in Endpoint},
        stream_usage=stream_usage,
    )


def provider_rows() -> list[TypeRow]:
    from fluxway.adapters.presets import PRESETS
    from fluxway.adapters.registry import ADAPTERS

    return [_probe(t) for t in (*PRESETS, *ADAPTERS)]


def _types_table(rows: list[TypeRow]) -> str:
    ends = " | ".join(rows[0].endpoints)
    head = f"| type | adapter | default base URL | chat call | auth | {ends} | stream usage |"
    out = [head, "|" + "---|" * (6 + len(rows[0].endpoints))]
    for r in rows:
        module = r.adapter.removeprefix("fluxway.adapters.").split(".", 1)[0]  # a package adapter: its package
        auth = r.auth
        ends = " | ".join("yes" if ok else "—" for ok in r.endpoints.values())
        base = r.base_url or "(your `base_url`)"
        out.append(
            f"| `{r.type}` | `{module}` | {base} | `{_cell(r.chat_path)}` | {_cell(auth)} | {ends} | {r.stream_usage} |"
        )
    return "\n".join(out)


def _presets_table(rows: list[TypeRow]) -> str:
    out = ["| preset | dropped | renamed |", "|---|---|---|"]
    for r in rows:
        if r.preset is None:
            continue
        dropped = ", ".join(sorted(r.preset.drop)) or "—"
        renamed = ", ".join(f"{a} → {b}" for a, b in r.preset.rename) or "—"
        out.append(f"| `{r.type}` | {dropped} | {renamed} |")
    return "\n".join(out)


def provider_blocks() -> dict[str, str]:
    rows = provider_rows()
    return {"provider-types": _types_table(rows), "preset-params": _presets_table(rows)}


def fill_markers(text: str, blocks: dict[str, str], where: str) -> str:
    """``text`` with each ``<!-- BEGIN GENERATED: name -->`` ... ``<!-- END GENERATED: name -->`` refilled."""
    for name, body in blocks.items():
        begin = f"<!-- BEGIN GENERATED: {name} (`{COMMAND}`) -->"
        end = f"<!-- END GENERATED: {name} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise DocsError([f"{where}: no {begin} ... {end} block"])
        filled = f"{begin}\n{body}\n{end}"
        text = pattern.sub(lambda _m: filled, text)  # noqa: B023 (used at once, in this iteration)
    return text


# ---------------------------------------------------------------------------------------------


def render(root: Path = ROOT) -> dict[str, str]:
    """Path (relative to the repo) -> what the file must hold."""
    from fluxway.config import Config

    providers = (root / PROVIDERS_DOC).read_text(encoding="utf-8")
    return {
        CONFIG_DOC: render_config(Config),
        PROVIDERS_DOC: fill_markers(providers, provider_blocks(), PROVIDERS_DOC),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    try:
        files = render()
    except DocsError as exc:
        print("\n".join(exc.args[0]), file=sys.stderr)
        return 1
    stale = [p for p, text in files.items() if not (ROOT / p).exists() or (ROOT / p).read_text("utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        (ROOT / p).write_text(files[p], encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
