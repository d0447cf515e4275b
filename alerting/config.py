"""Routing file loader: YAML -> frozen dataclasses, shaped like Alertmanager's ``route``/``receivers`` tree.

Settings a child route leaves out are inherited from its parent at load time, so a resolved ``Route`` carries its
effective values. Validation rejects unknown keys and returns every error as ``file:line:column: message``.
Secrets are only ever referenced (``*_env`` / ``*_file``); an inline secret is an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode

from alerting.matchers import Matcher, parse_matcher
from alerting.secrets import SecretRef
from alerting.yamlcheck import Checker, ConfigError, ConfigErrors

LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Per integration kind: field -> type. "secret" must be given as <field>_env or <field>_file; "secret_or_str"
# also accepts an inline value (not secret by itself, e.g. a generic webhook URL).
_COMMON = {"send_resolved": "bool", "timeout": "duration"}
INTEGRATION_FIELDS: dict[str, dict[str, str]] = {
    "slack": {"url": "secret", "channel": "str", "username": "str"},
    "pagerduty": {"routing_key": "secret", "url": "str", "client": "str", "client_url": "str"},
    "opsgenie": {"api_key": "secret", "api_url": "str", "team": "str", "tags": "strlist"},
    "msteams": {"url": "secret"},
    "webhook": {"url": "secret_or_str", "secret": "secret", "max_alerts": "int"},
    "alertmanager": {"url": "str", "bearer_token": "secret?"},
    "email": {"to": "strlist", "from": "str", "smarthost": "str", "username": "str", "password": "secret?",
              "starttls": "bool", "hello": "str"},
}
REQUIRED_FIELDS = {
    "slack": {"url"}, "pagerduty": {"routing_key"}, "opsgenie": {"api_key"}, "msteams": {"url"},
    "webhook": {"url", "secret"}, "alertmanager": {"url"}, "email": {"to", "from", "smarthost"},
}
DEFAULT_URLS = {"pagerduty": "https://events.pagerduty.com/v2/enqueue", "opsgenie": "https://api.opsgenie.com"}

ROUTE_KEYS = {"receiver", "matchers", "continue", "group_by", "group_wait", "group_interval", "repeat_interval",
              "escalate_after", "escalate_to", "routes"}
ROOT_DEFAULTS = {"group_by": (), "group_wait": 0.0, "group_interval": 300.0, "repeat_interval": 4 * 3600.0,
                 "escalate_after": None, "escalate_to": None}


@dataclass(frozen=True)
class Integration:
    """One delivery target inside a receiver, e.g. the first Slack config of receiver ``email-ops``."""

    receiver: str
    kind: str
    index: int
    settings: dict[str, Any] = field(hash=False, compare=False)

    @property
    def id(self) -> str:
        """Stable name used as the ledger key: ``email-ops/slack/0``."""
        return f"{self.receiver}/{self.kind}/{self.index}"

    @property
    def send_resolved(self) -> bool:
        return self.settings.get("send_resolved", True)


@dataclass(frozen=True)
class Receiver:
    name: str
    integrations: tuple[Integration, ...]
    escalate_to: str | None = None
    escalate_after: float | None = None


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    escalate_after: float | None
    escalate_to: str | None
    routes: tuple["Route", ...]
    line: int

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class StopTheFire:
    """Optional pause hook on matching (default: critical firing) alerts; dry-run unless ``dry_run: false``."""

    kind: str  # webhook | sendgrid
    settings: dict[str, Any] = field(hash=False, compare=False)
    matchers: tuple[Matcher, ...] = ()
    dry_run: bool = True


@dataclass(frozen=True)
class RoutingConfig:
    path: str
    receivers: dict[str, Receiver] = field(hash=False)
    route: Route
    dashboard_url: str | None = None
    router_url: str | None = None
    source: str = "ddetect"
    stop_the_fire: StopTheFire | None = None


def load_routing(path: str | Path) -> RoutingConfig:
    """Load and validate a routing file; raises ConfigErrors listing every problem."""
    path = str(path)
    return parse_routing(Path(path).read_text(), path)


def parse_routing(text: str, path: str = "<string>") -> RoutingConfig:
    ck = Checker(path)
    root = ck.compose(text)
    if root is None:
        if not ck.errors:
            ck.errors.append(ConfigError(path, 1, 1, "routing file is empty"))
        raise ConfigErrors(ck.errors)
    top = ck.mapping(root, {"global", "receivers", "route", "stop_the_fire"}, "routing file") or {}
    glob = _parse_global(ck, top.get("global"))
    receivers = _parse_receivers(ck, top.get("receivers"), root)
    route = None
    if "route" not in top:
        ck.error(root, "missing required key 'route'")
    else:
        route = _parse_route(ck, top["route"][1], ROOT_DEFAULTS, receivers, is_root=True)
    stop = _parse_stop(ck, top.get("stop_the_fire"))
    _check_escalation_chains(ck, receivers)
    if ck.errors:
        raise ConfigErrors(ck.errors)
    return RoutingConfig(path=path, receivers={n: r for n, (r, _) in receivers.items()}, route=route,
                         stop_the_fire=stop, **glob)


def _parse_global(ck: Checker, item) -> dict:
    if item is None:
        return {}
    fields = ck.mapping(item[1], {"dashboard_url", "router_url", "source"}, "global") or {}
    out = {}
    for key, (_, node) in fields.items():
        value = ck.string(node, f"global.{key}")
        if value is not None:
            out[key] = value
    return out


def _parse_receivers(ck: Checker, item, root) -> dict[str, tuple[Receiver, Any]]:
    out: dict[str, tuple[Receiver, Any]] = {}
    if item is None:
        ck.error(root, "missing required key 'receivers'")
        return out
    allowed = {"name", "escalate_to", "escalate_after"} | {f"{k}_configs" for k in INTEGRATION_FIELDS}
    for node in ck.sequence(item[1], "receivers") or []:
        fields = ck.mapping(node, allowed, "receiver")
        if fields is None:
            continue
        if "name" not in fields:
            ck.error(node, "receiver is missing required key 'name'")
            continue
        name = ck.string(fields["name"][1], "receiver name")
        if name is None:
            continue
        if name in out:
            ck.error(fields["name"][1], f"receiver {name!r} is defined twice")
            continue
        integrations = []
        for key, (_, value) in fields.items():
            if key.endswith("_configs"):
                kind = key[: -len("_configs")]
                for i, cfg in enumerate(ck.sequence(value, f"receiver {name!r} {key}") or []):
                    settings = _parse_integration(ck, cfg, kind, f"receiver {name!r} {key}[{i}]")
                    if settings is not None:
                        integrations.append(Integration(name, kind, len([x for x in integrations if x.kind == kind]),
                                                        settings))
        esc_to = ck.string(fields["escalate_to"][1], "escalate_to") if "escalate_to" in fields else None
        esc_after = ck.duration(fields["escalate_after"][1], "escalate_after") if "escalate_after" in fields else None
        if ('escalate_to' in fields) != ('escalate_after' in fields):
            ck.error(node, f"receiver {name!r}: escalate_to and escalate_after go together")
        out[name] = (Receiver(name, tuple(integrations), esc_to, esc_after), fields.get("escalate_to"))
    for name, (rec, esc_node) in out.items():
        if rec.escalate_to is not None and rec.escalate_to not in out:
            ck.error(esc_node[1], f"receiver {name!r}: escalate_to names unknown receiver {rec.escalate_to!r}")
    return out


def _parse_integration(ck: Checker, node, kind: str, what: str) -> dict | None:
    settings = _parse_fields(ck, node, {**INTEGRATION_FIELDS[kind], **_COMMON}, REQUIRED_FIELDS[kind], what)
    if settings is None:
        return None
    if kind in DEFAULT_URLS:
        settings.setdefault("url" if kind == "pagerduty" else "api_url", DEFAULT_URLS[kind])
    if kind == "email" and "smarthost" in settings and not re.fullmatch(r"[^:\s]+:\d+", settings["smarthost"]):
        ck.error(node, f"{what}.smarthost must be host:port")
    return settings


def _parse_fields(ck: Checker, node, spec: dict[str, str], required: set[str], what: str) -> dict | None:
    """Typed fields of one mapping; secret fields only as <name>_env / <name>_file."""
    allowed = set()
    for name, typ in spec.items():
        if typ.startswith("secret"):
            allowed |= {f"{name}_env", f"{name}_file"}
            if typ == "secret_or_str":
                allowed.add(name)
        else:
            allowed.add(name)
    secret_inline = {n for n, t in spec.items() if t in ("secret", "secret?")}
    if isinstance(node, MappingNode):
        for key_node, _ in node.value:
            if getattr(key_node, "value", None) in secret_inline:
                ck.error(key_node, f"{what}: {key_node.value} is a secret; give {key_node.value}_env "
                                   f"(environment variable name) or {key_node.value}_file (path), never the value")
        node_copy = type(node)(node.tag, [(k, v) for k, v in node.value if getattr(k, "value", None)
                                          not in secret_inline], node.start_mark, node.end_mark)
    else:
        node_copy = node
    fields = ck.mapping(node_copy, allowed, what)
    if fields is None:
        return None
    settings: dict[str, Any] = {}
    for name, typ in spec.items():
        if typ.startswith("secret"):
            env, file, lit = fields.get(f"{name}_env"), fields.get(f"{name}_file"), fields.get(name)
            given = [x for x in (env, file, lit) if x is not None]
            if len(given) > 1:
                ck.error(given[1][0], f"{what}: give only one of {name}_env, {name}_file"
                                      + (f", {name}" if typ == "secret_or_str" else ""))
            elif given:
                value = ck.string(given[0][1], f"{what}.{given[0][0].value}")
                if value is not None:
                    settings[name] = SecretRef(env=value if env else None, file=value if file else None,
                                               literal=value if lit else None)
            continue
        if name not in fields:
            continue
        value_node = fields[name][1]
        conv = {"str": ck.string, "bool": ck.boolean, "duration": ck.duration, "int": ck.integer,
                "strlist": ck.strings}[typ]
        value = conv(value_node, f"{what}.{name}")
        if value is not None:
            settings[name] = value
    inline = {getattr(k, "value", None) for k, _ in node.value} if isinstance(node, MappingNode) else set()
    for name in required:
        if name in inline and name in secret_inline:
            continue  # already reported as an inline secret
        if name not in settings and name not in fields and f"{name}_env" not in fields and f"{name}_file" not in fields:
            hint = f" (as {name}_env or {name}_file)" if spec[name].startswith("secret") else ""
            ck.error(node, f"{what}: missing required {name}{hint}")
    return settings


def _parse_route(ck: Checker, node, parent: dict, receivers: dict, is_root: bool = False) -> Route | None:
    fields = ck.mapping(node, ROUTE_KEYS, "route")
    if fields is None:
        return None
    eff = dict(parent)
    if is_root:
        for key in ("matchers", "continue"):
            if key in fields:
                ck.error(fields[key][0], f"the root route must not have {key!r} (it receives every alert)")
        if "receiver" not in fields:
            ck.error(node, "the root route needs a 'receiver' (the fallback for unmatched alerts)")
    receiver = parent.get("receiver")
    if "receiver" in fields:
        receiver = ck.string(fields["receiver"][1], "route receiver")
        if receiver is not None and receiver not in receivers:
            ck.error(fields["receiver"][1], f"route receiver {receiver!r} is not defined in receivers")
    matchers = []
    if "matchers" in fields:
        for item in ck.sequence(fields["matchers"][1], "matchers") or []:
            text = ck.string(item, "matcher")
            if text is not None:
                try:
                    matchers.append(parse_matcher(text))
                except ValueError as exc:
                    ck.error(item, str(exc))
    cont = ck.boolean(fields["continue"][1], "continue") if "continue" in fields else False
    if "group_by" in fields:
        group_by = ck.strings(fields["group_by"][1], "group_by")
        for label in group_by or []:
            if label != "..." and not LABEL_NAME.fullmatch(label):
                ck.error(fields["group_by"][1], f"group_by: {label!r} is not a valid label name")
        eff["group_by"] = tuple(group_by or ())
    for key in ("group_wait", "group_interval", "repeat_interval", "escalate_after"):
        if key in fields:
            eff[key] = ck.duration(fields[key][1], key)
    if "escalate_to" in fields:
        target = ck.string(fields["escalate_to"][1], "escalate_to")
        if target is not None and target not in receivers:
            ck.error(fields["escalate_to"][1], f"escalate_to names unknown receiver {target!r}")
        eff["escalate_to"] = target
    if ("escalate_to" in fields or "escalate_after" in fields) and (eff["escalate_to"] is None) != (
            eff["escalate_after"] is None):
        ck.error(node, "route: escalate_to and escalate_after go together (set both, here or on a parent route)")
    eff["receiver"] = receiver
    children = []
    if "routes" in fields:
        for child in ck.sequence(fields["routes"][1], "routes") or []:
            parsed = _parse_route(ck, child, eff, receivers)
            if parsed is not None:
                children.append(parsed)
    return Route(receiver=receiver, matchers=tuple(matchers), continue_=bool(cont), group_by=eff["group_by"],
                 group_wait=eff["group_wait"], group_interval=eff["group_interval"],
                 repeat_interval=eff["repeat_interval"], escalate_after=eff["escalate_after"],
                 escalate_to=eff["escalate_to"], routes=tuple(children), line=node.start_mark.line + 1)


def _parse_stop(ck: Checker, item) -> StopTheFire | None:
    if item is None:
        return None
    fields = ck.mapping(item[1], {"dry_run", "matchers", "webhook", "sendgrid"}, "stop_the_fire")
    if fields is None:
        return None
    kinds = [k for k in ("webhook", "sendgrid") if k in fields]
    if len(kinds) != 1:
        ck.error(item[1], "stop_the_fire needs exactly one of 'webhook' or 'sendgrid'")
        return None
    kind = kinds[0]
    spec = {"webhook": {"url": "secret_or_str", "secret": "secret"},
            "sendgrid": {"api_key": "secret", "api_url": "str", "batch_id_label": "str"}}[kind]
    required = {"url", "secret"} if kind == "webhook" else {"api_key"}
    settings = _parse_fields(ck, fields[kind][1], spec, required, f"stop_the_fire.{kind}")
    if settings is None:
        return None
    if kind == "sendgrid":
        settings.setdefault("api_url", "https://api.sendgrid.com")
        settings.setdefault("batch_id_label", "sendgrid_batch_id")
    matchers = [parse_matcher("severity=critical")]
    if "matchers" in fields:
        matchers = []
        for node in ck.sequence(fields["matchers"][1], "stop_the_fire.matchers") or []:
            text = ck.string(node, "matcher")
            if text is None:
                continue
            try:
                matchers.append(parse_matcher(text))
            except ValueError as exc:
                ck.error(node, str(exc))
    dry = ck.boolean(fields["dry_run"][1], "dry_run") if "dry_run" in fields else True
    return StopTheFire(kind=kind, settings=settings, matchers=tuple(matchers), dry_run=dry is not False)


def _check_escalation_chains(ck: Checker, receivers: dict) -> None:
    for start, (rec, node) in receivers.items():
        seen, cur = [start], rec.escalate_to
        while cur is not None and cur in receivers:
            if cur in seen:
                ck.error(node[1] if node else node, f"escalation chain loops: {' -> '.join(seen + [cur])}")
                break
            seen.append(cur)
            cur = receivers[cur][0].escalate_to
