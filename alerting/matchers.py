"""Label matchers in Alertmanager's syntax: ``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``.

Regexes are anchored (the whole value must match), as in Alertmanager, so ``severity=~crit`` does not match
``critical``. A missing label is the empty string, so ``campaign!=""`` means "has a campaign".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPLIT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # one of = != =~ !~
    value: str
    _regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher string; ValueError with the reason if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"matcher must be a string like label=value, got {type(text).__name__}")
    m = _SPLIT.match(text)
    if not m:
        raise ValueError(f"invalid matcher {text!r}: expected label=value, label!=value, label=~regex or label!~regex")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(name, op, value, regex)


def parse_label_args(args: list[str]) -> dict[str, str]:
    """``["severity=critical", "campaign=spring"]`` -> labels dict (only ``=`` allowed), for ``route test``."""
    labels: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not _LABEL.fullmatch(name):
            raise ValueError(f"invalid label {arg!r}: expected name=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        labels[name] = value
    return labels
