"""Pull metric names (and the label names they are matched on) out of a PromQL expression.

Not a PromQL parser: enough lexing to find selectors in the expressions this repository
writes (rules, dashboards). Prometheus itself checks the syntax (promtool, and the
integration test queries every dashboard expression against a real server).
"""
from __future__ import annotations

import re

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}
_TOKEN = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\}|\()?")
_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def metric_selectors(expr: str) -> list[tuple[str, tuple[str, ...]]]:
    """``[(metric_name, (matched label names...)), ...]`` in order of appearance."""
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub("", text)
    text = _RANGE.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables outside strings
    text = _GROUPING.sub(" ", text)
    out = []
    for match in _TOKEN.finditer(text):
        name, follow = match.group(1), match.group(2)
        if name.lower() in _KEYWORDS or follow == "(":
            continue
        labels = tuple(_LABEL.findall(follow)) if follow else ()
        out.append((name, labels))
    return out


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in metric_selectors(expr)}
