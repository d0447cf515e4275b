"""Build a Notifier for every integration in a routing config (resolving secrets once, at startup)."""
from __future__ import annotations

from alerting.config import RoutingConfig
from alerting.receivers.alertmanager import AlertmanagerNotifier
from alerting.receivers.base import Notifier, RenderContext
from alerting.receivers.email import EmailNotifier
from alerting.receivers.opsgenie import OpsgenieNotifier
from alerting.receivers.pagerduty import PagerDutyNotifier
from alerting.receivers.slack import SlackNotifier
from alerting.receivers.teams import TeamsNotifier
from alerting.receivers.webhook import WebhookNotifier

NOTIFIERS: dict[str, type[Notifier]] = {
    "slack": SlackNotifier, "pagerduty": PagerDutyNotifier, "opsgenie": OpsgenieNotifier, "msteams": TeamsNotifier,
    "webhook": WebhookNotifier, "alertmanager": AlertmanagerNotifier, "email": EmailNotifier,
}


def build_notifiers(config: RoutingConfig, environ: dict[str, str] | None = None) -> dict[str, list[Notifier]]:
    """Receiver name -> its notifiers. Raises SecretError naming every missing variable/file (never a value)."""
    from alerting.secrets import SecretError

    ctx = RenderContext(source=config.source, dashboard_url=config.dashboard_url, router_url=config.router_url)
    out: dict[str, list[Notifier]] = {}
    problems: list[str] = []
    for name, receiver in config.receivers.items():
        out[name] = []
        for integration in receiver.integrations:
            try:
                out[name].append(NOTIFIERS[integration.kind](integration, ctx, environ))
            except SecretError as exc:
                problems.append(f"{integration.id}: {exc}")
    if problems:
        raise SecretError("missing secrets:\n  " + "\n  ".join(problems))
    return out
