"""Walk a composed YAML node tree and collect *every* problem with its ``file:line:column``.

PyYAML's ``compose()`` keeps each node's start mark; validating nodes rather than loaded dicts is what lets the
routing loader point at the exact offending key, and report all errors at once like ``promtool check rules``.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from alerting.durations import parse_duration

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ConfigErrors(ValueError):
    """All the problems found in one file; ``str()`` gives one ``file:line:column: message`` per line."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = sorted(errors, key=lambda e: (e.line, e.column))
        super().__init__("\n".join(str(e) for e in self.errors))


class Checker:
    """Typed accessors over nodes; every accessor records an error instead of raising and returns None."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[ConfigError] = []

    def error(self, node: Node, message: str) -> None:
        mark = node.start_mark
        self.errors.append(ConfigError(self.path, mark.line + 1, mark.column + 1, message))

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.errors.append(ConfigError(self.path, line, col, f"YAML syntax error: {exc.problem}"))
            return None

    def mapping(self, node: Node, allowed: set[str], what: str) -> dict[str, tuple[Node, Node]] | None:
        """Keys of a mapping node -> (key node, value node); unknown and duplicate keys are errors."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"{what}: keys must be strings")
            elif key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})")
            elif key in out:
                self.error(key_node, f"duplicate key {key!r} in {what}")
            else:
                out[key] = (key_node, value_node)
        return out

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list")
            return None
        return list(node.value)

    def _scalar(self, node: Node, tags: tuple[str, ...], what: str, kind: str):
        if not isinstance(node, ScalarNode) or node.tag not in tags:
            self.error(node, f"{what} must be {kind}")
            return None
        return SafeConstructor().construct_object(node)

    def string(self, node: Node, what: str) -> str | None:
        value = self._scalar(node, (_STR,), what, "a string")
        if value == "":
            self.error(node, f"{what} must not be empty")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        return self._scalar(node, (_BOOL,), what, "true or false")

    def integer(self, node: Node, what: str) -> int | None:
        return self._scalar(node, (_INT,), what, "an integer")

    def duration(self, node: Node, what: str) -> float | None:
        text = self._scalar(node, (_STR, _INT), what, "a duration like 30s, 15m or 4h")
        if text is None:
            return None
        try:
            return parse_duration(str(text))
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    def strings(self, node: Node, what: str) -> list[str] | None:
        items = self.sequence(node, what)
        if items is None:
            return None
        values = [self.string(item, f"{what} item") for item in items]
        return None if any(v is None for v in values) else values
