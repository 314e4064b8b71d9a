"""The part of GJSON path syntax that KServe InferenceGraph conditions commonly use, evaluated on parsed JSON.

KServe picks a Switch step when `gjson.Get(request, condition).Exists()`. Supported here:
- dotted paths with object keys and array indexes: `parameters.segment`, `instances.0.SPECIALISME`
  (`\\.` escapes a dot inside a key);
- `#` on an array (exists when the value is an array);
- first-match queries on arrays: `instances.#(SPECIALISME=="Cardiologie")`,
  `instances.#(age>45)`, `inputs.#(name=="SPECIALISME").data.#(=="Cardiologie")` (an empty key
  compares the element itself), with operators == != < <= > >= % !% (% is GJSON's
  wildcard match with * and ?) and JSON literals (strings in double quotes, numbers,
  true/false/null); a query without an operator tests that the key exists.
Anything else (`#(...)#` all-match queries, `..`, `@` modifiers, `|` pipes, wildcards in
keys, multipaths) is rejected when the graph is loaded rather than silently meaning
something different from the cluster.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_OPERATORS = ("==", "!=", "<=", ">=", "!%", "<", ">", "%")
_QUERY = re.compile(r"^#\((?P<body>.*)\)$", re.DOTALL)


class ConditionError(ValueError):
    """A condition outside the supported GJSON subset."""


@dataclass(frozen=True)
class Query:
    path: tuple[Any, ...]  # components inside the query, may be empty (the element itself)
    operator: str | None
    value: Any


def _split_components(expression: str) -> list[str]:
    parts, current, depth, escaped = [], [], 0, False
    in_string = False
    for char in expression:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
            if in_string:
                current.append(char)
        elif char == '"' and depth:
            in_string = not in_string
            current.append(char)
        elif in_string:
            current.append(char)
        elif char == "(":
            depth += 1
            current.append(char)
        elif char == ")":
            depth -= 1
            current.append(char)
        elif char == "." and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0 or in_string:
        raise ConditionError(f"unbalanced parentheses or quotes in {expression!r}")
    parts.append("".join(current))
    return parts


def _literal(text: str, expression: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ConditionError(
            f'{text!r} in {expression!r} is not a JSON literal (quote strings: "Cardiologie")'
        ) from None


def _parse_query(body: str, expression: str) -> Query:
    in_string = False
    for i, char in enumerate(body):
        if char == '"':
            in_string = not in_string
        if in_string:
            continue
        for op in _OPERATORS:
            if body.startswith(op, i):
                key = body[:i].strip()
                path = tuple(_parse_path(key, expression)) if key else ()
                return Query(path, op, _literal(body[i + len(op) :].strip(), expression))
    return Query(tuple(_parse_path(body.strip(), expression)), None, None)


def _parse_path(expression: str, whole: str) -> list[Any]:
    if not expression:
        raise ConditionError("empty path")
    unquoted = re.sub(r'"(?:\\.|[^"\\])*"', '""', expression)
    if any(token in unquoted for token in ("..", "|", "@", "{", "[")) or unquoted.startswith("!"):
        raise ConditionError(
            f"{whole!r} uses GJSON syntax the local router does not support (.., |, @, {{}}, [])"
        )
    components: list[Any] = []
    for part in _split_components(expression):
        match = _QUERY.match(part)
        if part.endswith(")#"):
            raise ConditionError(f"{whole!r}: all-match queries '#(...)#' are not supported; use '#(...)'")
        if match:
            components.append(_parse_query(match.group("body"), whole))
        elif part == "#":
            components.append("#")
        elif "*" in part or "?" in part or "#" in part or "(" in part:
            raise ConditionError(f"{whole!r}: wildcards and other special keys ({part!r}) are not supported")
        elif part == "":
            raise ConditionError(f"{whole!r} has an empty path component")
        else:
            components.append(part)
    return components


def _compare(left: Any, operator: str, right: Any) -> bool:
    if operator in ("%", "!%"):
        matched = isinstance(left, str) and isinstance(right, str) and fnmatch.fnmatchcase(left, right)
        return matched if operator == "%" else not matched
    comparable = (isinstance(left, str) and isinstance(right, str)) or (
        isinstance(left, int | float)
        and isinstance(right, int | float)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    )
    if operator == "==":
        return comparable and left == right or (left is right and left in (None, True, False))
    if operator == "!=":
        return not (comparable and left == right or (left is right and left in (None, True, False)))
    if not comparable:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]


def _resolve(value: Any, components: tuple[Any, ...] | list[Any]) -> Any:
    for component in components:
        if isinstance(component, Query):
            if not isinstance(value, list):
                return _MISSING
            value = next((item for item in value if _query_matches(item, component)), _MISSING)
        elif component == "#":
            if not isinstance(value, list):
                return _MISSING
            value = len(value)
        elif isinstance(value, dict):
            value = value.get(component, _MISSING)
        elif isinstance(value, list) and component.isdigit():
            index = int(component)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _query_matches(item: Any, query: Query) -> bool:
    found = _resolve(item, query.path)
    if found is _MISSING:
        return False
    return True if query.operator is None else _compare(found, query.operator, query.value)


@dataclass(frozen=True)
class Condition:
    """A parsed condition; `exists_in(document)` is what KServe's `gjson.Get(...).Exists()` answers."""

    expression: str
    components: tuple[Any, ...]

    def exists_in(self, document: Any) -> bool:
        return _resolve(document, self.components) is not _MISSING


def parse_condition(expression: str) -> Condition:
    """Parse `expression` or raise ConditionError saying which part is unsupported."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConditionError("condition must be a non-empty string")
    return Condition(expression, tuple(_parse_path(expression.strip(), expression)))
