"""Walk the routing tree the way Alertmanager does: depth first, first matching child wins unless ``continue``.

A route that matches but has no matching child is itself a destination. ``continue: true`` on a child lets the
search carry on to its later siblings, which is how one alert fans out to several teams.
"""
from __future__ import annotations

from alerting.config import Route, RoutingConfig


def matching_routes(route: Route, labels: dict[str, str]) -> list[Route]:
    if not route.matches(labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        hits = matching_routes(child, labels)
        found.extend(hits)
        if hits and not child.continue_:
            break
    return found or [route]


def receivers_for(config: RoutingConfig, labels: dict[str, str]) -> list[str]:
    """Receiver names an alert with ``labels`` reaches, in routing order, without repeats."""
    names: list[str] = []
    for route in matching_routes(config.route, labels):
        if route.receiver not in names:
            names.append(route.receiver)
    return names
