"""How deep and how costly a query is, measured on its document before it is validated or run.

Depth counts nested fields (``{ keys { edges { node { id } } } }`` is 4 deep). Cost: every field
costs 1, and a paginated field (one that takes ``first``) costs 1 plus its selection's cost times its
page size: ``keys(first: 10) { edges { node { id name } } }`` costs 1 + 10 * (1 + 1 + 2) = 41.
Introspection fields (``__schema``, ``__type``, ``__typename``) count for nothing, so the standard
introspection query always passes. Fragments count where they are spread (each measured once); a
fragment cycle stops the walk (validation reports it). Unknown fields cost 1 each (validation
reports them too), so the measure works on any document that parses. The selections written in
the document are capped too: validation compares same-named ones pairwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    value_from_ast_untyped,
)

from fluxway.api.graphql.errors import QUERY_TOO_COSTLY, QUERY_TOO_DEEP, error
from fluxway.config_observability import GraphqlConfig


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    cfg: GraphqlConfig
    done: dict[str, tuple[int, int]] = field(default_factory=dict)  # fragment -> (depth, cost)
    open: set[str] = field(default_factory=set)

    def page(self, node: FieldNode) -> int:
        """The page size a paginated field asks for, as the resolver will take it (capped)."""
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            v: Any = arg.value
            if isinstance(v, VariableNode):
                v = self.variables.get(v.name.value)
            elif isinstance(v, IntValueNode):
                v = int(v.value)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                return min(v, self.cfg.max_page_size)
            return self.cfg.max_page_size if v is not None else self.cfg.default_page_size
        return self.cfg.default_page_size

    def selections(self, sel: SelectionSetNode | None, parent: Any) -> tuple[int, int]:
        depth = cost = 0
        for node in sel.selections if sel is not None else ():
            if isinstance(node, FieldNode):
                d, c = self.field(node, parent)
            elif isinstance(node, InlineFragmentNode):
                cond = self.schema.get_type(node.type_condition.name.value) if node.type_condition else parent
                d, c = self.selections(node.selection_set, cond)
            elif isinstance(node, FragmentSpreadNode):
                d, c = self.spread(node.name.value)
            else:  # pragma: no cover - the three kinds of selection
                continue
            depth, cost = max(depth, d), cost + c
        return depth, cost

    def field(self, node: FieldNode, parent: Any) -> tuple[int, int]:
        name = node.name.value
        if name.startswith("__"):
            return 0, 0
        fdef = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
        child = get_named_type(fdef.type) if fdef is not None else None
        d, c = self.selections(node.selection_set, child)
        times = self.page(node) if fdef is not None and "first" in fdef.args else 1
        return 1 + d, 1 + times * c

    def spread(self, name: str) -> tuple[int, int]:
        if name in self.done:
            return self.done[name]
        frag = self.fragments.get(name)
        if frag is None or name in self.open:
            return 0, 0
        self.open.add(name)
        result = self.selections(frag.selection_set, self.schema.get_type(frag.type_condition.name.value))
        self.open.discard(name)
        self.done[name] = result
        return result


def measure(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    cfg: GraphqlConfig,
) -> tuple[int, int]:
    """The depth and cost of ``operation`` (its variables' values taken as given, else their defaults)."""
    root = schema.get_root_type(operation.operation)
    defaults = {d.variable.name.value: value_from_ast_untyped(d.default_value)
                for d in operation.variable_definitions or () if d.default_value is not None}
    return _Walk(schema, fragments, {**defaults, **variables}, cfg).selections(operation.selection_set, root)


def selections(doc: DocumentNode) -> int:
    """The selections written in ``doc`` (fields, inline fragments, spreads), each counted once."""
    n = 0
    todo = [d.selection_set for d in doc.definitions if isinstance(d, ExecutableDefinitionNode)]
    while todo:
        sel = todo.pop()
        for node in sel.selections:
            n += 1
            inner = getattr(node, "selection_set", None)
            if inner is not None:
                todo.append(inner)
    return n


def check(
    schema: GraphQLSchema, doc: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any],
    cfg: GraphqlConfig,
) -> GraphQLError | None:
    """An error when ``doc`` has more selections than the config allows (validation compares them
    pairwise), or ``operation`` is deeper or costlier, else None."""
    n = selections(doc)
    if n > cfg.max_selections:
        return error(f"the query has {n} selections; at most {cfg.max_selections} are allowed",
                     QUERY_TOO_COSTLY, selections=n, maxSelections=cfg.max_selections)
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    depth, cost = measure(schema, operation, fragments, variables, cfg)
    if depth > cfg.max_depth:
        return error(f"the query is {depth} levels deep; at most {cfg.max_depth} are allowed",
                     QUERY_TOO_DEEP, depth=depth, maxDepth=cfg.max_depth)
    if cost > cfg.max_cost:
        return error(f"the query costs {cost}; at most {cfg.max_cost} is allowed (a field costs 1, a paginated "
                     "field's selection its page size times over: ask for smaller pages or fewer fields)",
                     QUERY_TOO_COSTLY, cost=cost, maxCost=cfg.max_cost)
    return None
