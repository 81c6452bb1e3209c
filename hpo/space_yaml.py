"""Safe reading of YAML text (search-space files and ``--set`` values).

Guards against what a careless or hostile file could do: duplicate keys (YAML keeps the last
silently), nesting deep enough to exhaust the stack, recursive aliases, and alias bombs (a few
lines that expand to millions of values). Every refusal is one :class:`~hpo.errors.UserError` line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from hpo.errors import UserError, one_line
from hpo.space_hyperparameters import is_number

#: Deepest nesting of lists and mappings a space file may have (a real one needs 5).
MAX_NESTING = 32
#: Most values a space file may hold with its aliases expanded (guards against alias bombs).
MAX_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads ``1e-5`` (no dot) as a float, as people write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str):
    """A command-line value read as YAML (``0.01``, ``1e-3``, ``sgd``, ``true``); the text itself
    when it is not valid YAML (or nested too deeply, or holds a duplicate key)."""
    try:
        return load_yaml(text, "--set")
    except UserError:
        return text


def load_yaml(text: str, where: str) -> Any:
    """YAML text as Python values (``1e-5`` read as a float), refusing with one line naming
    ``where`` and the line: syntax errors, duplicate keys (YAML would keep the last silently),
    nesting deeper than :data:`MAX_NESTING`, recursive aliases, and more than
    :data:`MAX_VALUES` values once aliases are expanded."""
    try:
        _check_nesting(text, where)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(loader, node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{where}: not valid YAML{line}: {one_line(problem)}") from None
    except RecursionError:  # not expected after the checks above; never a traceback
        raise UserError(f"{where}: not valid YAML: nested too deeply") from None


def _check_nesting(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_NESTING, from the parser's events (which need no recursion;
    building the values does)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise UserError(f"{where}: line {event.start_mark.line + 1}: lists and mappings nested more than "
                                f"{MAX_NESTING} deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _node_children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_nodes(loader: "_Loader", root, where: str) -> None:
    """Duplicate keys, recursive aliases, and the size and depth of the document with its aliases
    expanded: one pass over the node graph, without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list = [(root, False, "")]
    while stack:
        node, done, path = stack.pop()
        key = id(node)
        if done:
            children = _node_children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            on_path.discard(key)
            if size[key] > MAX_VALUES:
                raise UserError(f"{where}: line {node.start_mark.line + 1}: more than {MAX_VALUES} values once "
                                f"aliases (*name) are expanded")
            if depth[key] > MAX_NESTING + 1:
                raise UserError(f"{where}: line {node.start_mark.line + 1}: lists and mappings nested more than "
                                f"{MAX_NESTING} deep once aliases (*name) are expanded")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True, path))
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(loader, node, path, where)
            entries = []
            for key_node, value_node in node.value:
                label = _key_label(loader, key_node)
                entries += [(key_node, path), (value_node, f"{path}.{label}" if path else label)]
        else:
            entries = [(child, f"{path}[{i}]") for i, child in enumerate(_node_children(node))]
        for child, child_path in reversed(entries):
            if id(child) in on_path:
                raise UserError(f"{where}: line {child.start_mark.line + 1}: {child_path or 'the document'}: "
                                f"an alias refers to a value that holds it (a recursive alias)")
            if id(child) not in size:
                stack.append((child, False, child_path))


def _key_label(loader: "_Loader", key_node) -> str:
    if isinstance(key_node, yaml.ScalarNode):
        return str(key_node.value)
    return "?"


def _check_duplicate_keys(loader: "_Loader", node, path: str, where: str) -> None:
    seen: list[tuple[Any, int]] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue  # '<<' merges may override; a non-scalar key is refused when built
        key = loader.construct_object(key_node, deep=True)
        for other, line in seen:
            if type(other) is type(key) and other == key or (
                    is_number(other) and is_number(key) and other == key):
                inside = f" in {path}" if path else ""
                raise UserError(f"{where}: line {key_node.start_mark.line + 1}: duplicate key {key!r}{inside} "
                                f"(first at line {line}); YAML would keep only the last")
        seen.append((key, key_node.start_mark.line + 1))
