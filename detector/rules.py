"""Rule files: what to test, on which scopes, and who cares (category, severity).

A rule file is YAML. The loader is strict, like Prometheus' rulefmt: unknown keys,
wrong types and out-of-range values are errors, and every error in a file is reported
at once as ``file:line:column: rule "name": message`` so a broken file is fixed in one
pass. See ``rules/default.yaml`` for the documented rule pack.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .counts import SCOPE_FIELDS
from .feedback_loops import FEEDBACK_LOOPS
from .rates import METRICS
from .registry import STAT_TESTS, applicable_tests

CATEGORIES = ("technical", "compliance", "performance", "complaints", "security")
SEVERITIES = ("critical", "warning", "info")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Settings:
    window: float = 300.0            # seconds per tumbling event-time window
    allowed_lateness: float = 600.0  # events later than this behind the newest are dropped (counted)
    scope_ttl: float = 7 * 86400.0   # idle scopes are forgotten after this long (unless firing)


@dataclass(frozen=True)
class Rule:
    name: str
    test: str
    metric: str
    scope: tuple[str, ...]
    category: str
    severity: str
    description: str = ""
    min_volume: int = 0
    min_sends: int = 0
    warmup_messages: int = 0
    warmup_windows: int = 1
    resolve_windows: int = 3
    resolve_idle_windows: int = 12   # a firing rate alert resolves after this many windows without traffic
    # cusum
    shift: float = 2.5
    #: More shifts charted beside ``shift`` (``shift: [3, 15]`` in a rule file): a bank of charts,
    #: one per shift, the false-alarm budget split evenly between them (:func:`detector.detectors.bank`).
    bank: tuple[float, ...] = ()
    p1: float | None = None
    arl0: float = 1e7
    fa_per_scope_day: float | None = None   # false-alarm budget per scope and day; ARL0 follows per scope
    baseline_floor: float = 1e-4
    baseline_cap: float | None = None
    #: scope fields of the parent a sparse scope is pooled under while it warms up (empirical-Bayes
    #: prior from its siblings' learned baselines, :mod:`detector.shrinkage`); () for none
    pool_under: tuple[str, ...] = ()
    # window tests
    q: float = 0.01
    span_windows: int = 1
    min_span_windows: int = 0        # policy: also judge sub-spans, the span halved down to this (0: none)
    min_effect: float = 1.5
    # policy
    rate: float = 0.0
    alpha: float = 0.05
    method: str = "clopper-pearson"
    # drift
    baseline_days: int = 28
    lag_median: float = 0.0          # seconds; > 0 judges the span against its delayed-feedback exposure
    lag_sigma: float = 1.5
    lag_fastest: float = 0.0         # seconds; median of the fastest plausible lag (discounts the span's own deliveries)
    lag_learn: bool = True           # replace the lag prior by the lag fitted on matched complaints (detector/lag.py)
    # volume
    factor: float = 3.0
    seasonal: bool = False
    min_expected: float = 0.0
    ewma: float = 0.1
    min_active: float = 0.0          # share of warm-up windows with traffic before a volume rule arms
    run_windows: int = 1             # surge: evidence accumulates over runs of up to this many windows
    trickle: float = 0.05            # silence: the rate a stopped flow still shows (retries of earlier mail)

    @property
    def scope_fields(self) -> tuple[str, ...]:
        return self.scope


@dataclass
class RuleSet:
    rules: list[Rule]
    settings: Settings = field(default_factory=Settings)
    mailbox_providers: dict[str, list[str]] = field(default_factory=dict)
    source: str = "<memory>"
    #: Valid but probably not what was meant, as ``file:line:column: rule "name": message``.
    warnings: list[str] = field(default_factory=list)
    #: Mailbox providers whose complaints and deliveries the complaint rate counts
    #: (:mod:`detector.feedback_loops`; a rule file's ``feedback_loops:`` list replaces them).
    feedback_loops: frozenset[str] = FEEDBACK_LOOPS

    def scopes(self) -> list[tuple[str, ...]]:
        """Distinct scope definitions, in rule order (each is counted once), then the ESP's own
        stream (``provider``) where a silence rule's scope names the ESP: a window in which the
        ESP posted nothing at all is unobserved, not silent (:data:`CHANNEL_SCOPE`)."""
        seen: dict[tuple[str, ...], None] = {}
        for r in self.rules:
            seen.setdefault(r.scope, None)
        if any(r.test == "silence" and "provider" in r.scope for r in self.rules):
            seen.setdefault(CHANNEL_SCOPE, None)
        return list(seen)


#: The scope of an ESP's whole event stream: when it posts nothing, every scope it feeds is unobserved.
CHANNEL_SCOPE: tuple[str, ...] = ("provider",)

_TOP_KEYS = ("settings", "rules", "mailbox_providers", "feedback_loops")


class RuleError(ValueError):
    """All errors of one or more rule files; ``errors`` holds the formatted lines."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors

    def __reduce__(self):  # survive pickling (process pools) as a list, not a string split into letters
        return (RuleError, (self.errors,))


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a duration like 5m, 1h, 30s or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value).strip())
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h, 7d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


class _Collector:
    def __init__(self, path: str):
        self.path = path
        self.errors: list[str] = []

    def add(self, node: yaml.Node | None, message: str, rule: str | None = None) -> None:
        if node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        else:
            line, col = 1, 1
        where = f'rule "{rule}": ' if rule else ""
        self.errors.append(f"{self.path}:{line}:{col}: {where}{message}")


def _plain(node: yaml.Node) -> Any:
    """Python value of a scalar/sequence/mapping node (no tags beyond YAML core)."""
    return yaml.safe_load(yaml.serialize(node))


def _mapping(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    return {k.value: (k, v) for k, v in node.value}


# key -> kind of value; which tests a key applies to is the test table's (detector/registry.py)
_RULE_KEYS: dict[str, str] = {
    "name": "name", "description": "str", "test": "test", "metric": "metric", "scope": "scope",
    "category": "category", "severity": "severity", "min_volume": "count", "min_sends": "count",
    "warmup": "warmup", "resolve": "resolve", "enabled": "bool",
    "shift": "shift", "p1": "prob", "arl0": "arl0", "false_alarms_per_scope_day": "prob",
    "baseline_floor": "prob", "baseline_cap": "prob", "pool_under": "scope",
    "q": "prob", "span": "duration", "max_run": "duration", "min_span": "duration",
    "min_effect": "ratio", "rate": "prob", "alpha": "prob", "baseline_days": "count",
    "method": "method", "lag": "lag",
    "factor": "ratio", "seasonal": "bool", "min_expected": "nonneg", "ewma": "prob",
    "min_active": "share", "trickle": "share",
}
_REQUIRED = ("name", "test", "metric", "scope", "category", "severity")


def _check_value(kind: str, node: yaml.Node, value: Any, window: float) -> Any:
    """Validate one value; return the converted value or raise ValueError."""
    def number() -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        return float(value)

    if kind == "name":
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise ValueError("must match [a-z][a-z0-9_]*")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value.strip()
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind in ("test", "category", "severity", "method"):
        allowed = {"test": tuple(STAT_TESTS), "category": CATEGORIES, "severity": SEVERITIES,
                   "method": ("clopper-pearson", "wilson")}[kind]
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value
    if kind == "metric":
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r} (known: {', '.join(METRICS)})")
        return value
    if kind == "scope":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of event fields")
        for f in value:
            if f not in SCOPE_FIELDS:
                raise ValueError(f"unknown scope field {f!r} (allowed: {', '.join(SCOPE_FIELDS)})")
        if len(set(value)) != len(value):
            raise ValueError("lists a field twice")
        return tuple(value)
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("must be a non-negative integer")
        return value
    if kind == "prob":
        v = number()
        if not 0 < v < 1:
            raise ValueError(f"must be between 0 and 1 (exclusive), got {v}")
        return v
    if kind == "share":
        v = number()
        if not 0 <= v <= 1:
            raise ValueError(f"must be between 0 and 1, got {v}")
        return v
    if kind == "shift":
        values = value if isinstance(value, list) else [value]
        out = []
        for value in values:
            v = number()
            if v <= 1:
                raise ValueError(f"must be > 1 (the out-of-control rate is shift x baseline), got {v}")
            out.append(v)
        if not out or len(set(out)) != len(out):
            raise ValueError("must be a number or a list of distinct numbers (a bank of charts)")
        return sorted(out) if isinstance(values, list) and len(values) > 1 else out[0]
    if kind == "ratio":
        v = number()
        if v < 1:
            raise ValueError(f"must be >= 1, got {v}")
        return v
    if kind == "nonneg":
        v = number()
        if v < 0:
            raise ValueError("must be >= 0")
        return v
    if kind == "arl0":
        v = number() if not isinstance(value, str) else float(value)
        if v <= 1:
            raise ValueError("must be > 1 (messages between false alarms per scope)")
        return v
    if kind == "duration":
        seconds = parse_duration(value)
        windows = seconds / window
        if abs(windows - round(windows)) > 1e-9 or round(windows) < 1:
            raise ValueError(f"must be a whole number of windows ({window:g}s each)")
        return int(round(windows))
    raise AssertionError(kind)


def _load_rule(node: yaml.Node, errs: _Collector, window: float) -> Rule | None:
    if not isinstance(node, yaml.MappingNode):
        errs.add(node, "each rule must be a mapping")
        return None
    keys = _mapping(node)
    name_entry = keys.get("name")
    rname = name_entry[1].value if name_entry and isinstance(name_entry[1], yaml.ScalarNode) else None
    n_before = len(errs.errors)
    test_entry = keys.get("test")
    test = test_entry[1].value if test_entry and isinstance(test_entry[1], yaml.ScalarNode) else None
    for req in _REQUIRED:
        if req not in keys:
            errs.add(node, f"missing required key {req!r}", rname)
    values: dict[str, Any] = {}
    for key, (knode, vnode) in keys.items():
        kind = _RULE_KEYS.get(key)
        if kind is None:
            errs.add(knode, f"unknown key {key!r}", rname)
            continue
        tests = applicable_tests(key)
        if tests and test in STAT_TESTS and test not in tests:
            errs.add(knode, f"key {key!r} does not apply to test {test!r} (only {', '.join(tests)})", rname)
            continue
        if kind == "lag":
            if not isinstance(vnode, yaml.MappingNode):
                errs.add(vnode, "lag must be a mapping {median: DURATION, sigma: NUMBER}", rname)
                continue
            for sk, (sknode, svnode) in _mapping(vnode).items():
                try:
                    if sk == "median":
                        values["lag_median"] = parse_duration(_plain(svnode))
                        if values["lag_median"] <= 0:
                            raise ValueError("must be > 0")
                    elif sk == "sigma":
                        v = _plain(svnode)
                        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 5:
                            raise ValueError("must be a number in (0, 5]")
                        values["lag_sigma"] = float(v)
                    elif sk == "fastest":
                        values["lag_fastest"] = parse_duration(_plain(svnode))
                        if values["lag_fastest"] <= 0:
                            raise ValueError("must be > 0")
                    elif sk == "learn":
                        values["lag_learn"] = _check_value("bool", svnode, _plain(svnode), window)
                    else:
                        errs.add(sknode, f"unknown key lag.{sk} (allowed: median, sigma, fastest, learn)", rname)
                except ValueError as exc:
                    errs.add(svnode, f"lag.{sk} {exc}", rname)
            continue
        if kind in ("warmup", "resolve"):
            if not isinstance(vnode, yaml.MappingNode):
                errs.add(vnode, f"{key} must be a mapping", rname)
                continue
            allowed = ("messages", "windows") if kind == "warmup" else ("windows", "idle_windows")
            for sk, (sknode, svnode) in _mapping(vnode).items():
                if sk not in allowed:
                    errs.add(sknode, f"unknown key {key}.{sk} (allowed: {', '.join(allowed)})", rname)
                    continue
                try:
                    values[f"{key}_{sk}"] = _check_value("count", svnode, _plain(svnode), window)
                except ValueError as exc:
                    errs.add(svnode, f"{key}.{sk} {exc}", rname)
            continue
        try:
            values[key] = _check_value(kind, vnode, _plain(vnode), window)
        except ValueError as exc:
            errs.add(vnode, f"{key} {exc}", rname)
    if len(errs.errors) > n_before:
        return None
    metric = METRICS[values["metric"]]
    measures = STAT_TESTS[values["test"]].measures
    if measures == "volume" and not metric.is_volume:
        errs.add(keys["metric"][1], f"test {values['test']!r} needs a volume metric, {metric.name!r} is a rate", rname)
        return None
    if measures == "rate" and metric.is_volume:
        errs.add(keys["metric"][1], f"test {values['test']!r} needs a rate metric, {metric.name!r} is a volume", rname)
        return None
    if STAT_TESTS[values["test"]].sequential and not metric.sequenceable:
        errs.add(keys["metric"][1], f"test {values['test']!r} charts message by message, which {metric.name!r} does not allow "
                 f"({metric.description}): use binomial, betabinomial or policy", rname)
        return None
    if values["test"] == "policy" and "rate" not in values:
        errs.add(node, "a policy rule needs 'rate' (the policy threshold, e.g. 0.003)", rname)
        return None
    if values.get("baseline_cap") is not None and values["baseline_cap"] < values.get("baseline_floor", 1e-4):
        errs.add(keys["baseline_cap"][1], "baseline_cap must be >= baseline_floor", rname)
        return None
    if "pool_under" in values and not set(values["pool_under"]) < set(values["scope"]):
        errs.add(keys["pool_under"][1], "pool_under must name some, not all, of the rule's scope fields "
                 f"(the parent scope its scopes are pooled under; scope is [{', '.join(values['scope'])}])", rname)
        return None
    if values.get("lag_fastest", 0.0) > values.get("lag_median", 0.0) > 0:
        errs.add(keys["lag"][1], "lag.fastest must not exceed lag.median (it bounds the lag from below)", rname)
        return None
    if values.get("resolve_windows") == 0:
        errs.add(keys["resolve"][1], "resolve.windows must be >= 1", rname)
        return None
    if values.pop("enabled", True) is False:
        return None
    if isinstance(values.get("shift"), list):
        if "p1" in values:
            errs.add(keys["shift"][1], "a bank of shifts and p1 exclude each other (p1 fixes one chart)", rname)
            return None
        values["shift"], values["bank"] = values["shift"][0], tuple(values["shift"][1:])
    if values["test"] == "surge" and "span" in values:
        if "max_run" in values:
            errs.add(keys["span"][1], "a surge rule takes max_run (span is its older name), not both", rname)
            return None
        values["max_run"] = values.pop("span")   # a pooled span is the longest run the scan judges
    if values.get("min_span", 0) > values.get("span", 1):
        errs.add(keys["min_span"][1], "min_span must not exceed span", rname)
    for src, dst in (("span", "span_windows"), ("max_run", "run_windows"), ("min_span", "min_span_windows"),
                     ("false_alarms_per_scope_day", "fa_per_scope_day")):
        if src in values:
            values[dst] = values.pop(src)
    values["scope"] = tuple(values["scope"])
    return Rule(**values)


def load_rules_text(text: str, path: str = "<string>") -> RuleSet:
    """Parse and validate a rule file's text; raise :class:`RuleError` listing all errors."""
    errs = _Collector(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleError([f"{path}:{line}:{col}: invalid YAML: {problem}"]) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise RuleError([f"{path}:1:1: a rule file must be a mapping with a 'rules' list"])
    top = _mapping(root)
    for key, (knode, _) in top.items():
        if key not in _TOP_KEYS:
            errs.add(knode, f"unknown top-level key {key!r} (allowed: {', '.join(_TOP_KEYS)})")

    settings = Settings()
    if "settings" in top:
        snode = top["settings"][1]
        if not isinstance(snode, yaml.MappingNode):
            errs.add(snode, "settings must be a mapping")
        else:
            kw = {}
            for key, (knode, vnode) in _mapping(snode).items():
                if key not in ("window", "allowed_lateness", "scope_ttl"):
                    errs.add(knode, f"unknown settings key {key!r} (allowed: window, allowed_lateness, scope_ttl)")
                    continue
                try:
                    kw[key] = parse_duration(_plain(vnode))
                except ValueError as exc:
                    errs.add(vnode, f"settings.{key} {exc}")
            settings = Settings(**kw)

    providers: dict[str, list[str]] = {}
    if "mailbox_providers" in top:
        pnode = top["mailbox_providers"][1]
        value = _plain(pnode)
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(d, str) for d in v)
                for k, v in value.items()):
            errs.add(pnode, "mailbox_providers must map a provider name to a list of domains")
        else:
            providers = value

    loops = FEEDBACK_LOOPS
    if "feedback_loops" in top:
        lnode = top["feedback_loops"][1]
        value = _plain(lnode)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            errs.add(lnode, "feedback_loops must be a list of mailbox provider names (e.g. [yahoo, microsoft]); "
                            "it replaces the default " + ", ".join(sorted(FEEDBACK_LOOPS)))
        else:
            loops = frozenset(v.strip().lower() for v in value)

    rules: list[Rule] = []
    if "rules" not in top:
        errs.add(root, "missing 'rules' list")
    else:
        rnode = top["rules"][1]
        if not isinstance(rnode, yaml.SequenceNode):
            errs.add(rnode, "rules must be a list")
        else:
            names: dict[str, yaml.Node] = {}
            charted: dict[tuple[str, ...], Rule] = {}  # per scope: a CUSUM rule, for its trials' basis
            for item in rnode.value:
                rule = _load_rule(item, errs, settings.window)
                if rule is None:
                    continue
                if rule.name in names:
                    errs.add(item, "duplicate rule name (first defined at line "
                             f"{names[rule.name].start_mark.line + 1})", rule.name)
                    continue
                if STAT_TESTS[rule.test].sequential:
                    other = charted.setdefault(rule.scope, rule)
                    if METRICS[other.metric].first_attempt_basis != METRICS[rule.metric].first_attempt_basis:
                        errs.add(item, f"cusum on {rule.metric!r} charts other trials than rule {other.name!r} "
                                 f"({other.metric!r}) on the same scope [{', '.join(rule.scope)}]: first attempts "
                                 "versus every outcome; give one of them another scope", rule.name)
                        continue
                names[rule.name] = item
                rules.append(rule)
    if errs.errors:
        raise RuleError(errs.errors)
    warn = _Collector(path)
    for rule in rules:
        for message in rule_warnings(rule):
            warn.add(names[rule.name], message, rule.name)
    return RuleSet(rules=rules, settings=settings, mailbox_providers=providers, feedback_loops=loops, source=path,
                   warnings=warn.errors)


def rule_warnings(rule: Rule) -> list[str]:
    """What a valid rule silently does not do."""
    out = []
    if rule.test == "cusum" and rule.baseline_cap is None:
        out.append("warning: cusum without baseline_cap charts nothing while the scope warms up "
                   f"({rule.warmup_messages} messages): a new campaign's first send to a stale list is "
                   "not caught; set baseline_cap (the rate never accepted as normal)")
    if rule.test in ("surge", "silence") and rule.min_active == 0 and rule.scope == ("campaign",):
        out.append("warning: min_active is 0, so bulk campaigns are judged as flows: a newsletter's end can "
                   "page silence and its next send a surge; set min_active (e.g. 0.8) and a day of warm-up")
    return out


def load_rules(path: str | Path) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError([f"{path}:1:1: cannot read rule file: {exc.strerror}"]) from None
    return load_rules_text(text, str(path))


def default_rules_path() -> Path:
    """The shipped rule pack (``rules/default.yaml`` in a checkout or the installed copy)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "rules" / "default.yaml", here / "data" / "default.yaml"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("rules/default.yaml not found")
