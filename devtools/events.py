"""Lambda events for a request, from the real documents in test-support/fixtures/events/ (the
ones the Rust test suites forge their events from).

    from devtools import events
    payload = events.http_api("GET", "/health")
"""
import json

from devtools.paths import ROOT

FIXTURES = ROOT / "test-support" / "fixtures" / "events"


def http_api(method: str, path: str) -> dict:
    """An API Gateway HTTP API (payload 2.0) event for a route without path parameters."""
    event = json.loads((FIXTURES / "http-api.json").read_text())
    route_key = f"{method} {path}"
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = None
    event["headers"].pop("content-length", None)
    return event
