"""Tracing: spans per stage (retrieval, Claude, geocode, cache) sent to Application Insights.

``configure`` turns on azure-monitor-opentelemetry when a connection string is
set; otherwise ``span`` costs one attribute check. The import of the exporter is
lazy so that a local run and the tests never pay for it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

log = logging.getLogger("core.telemetry")
_tracer: Any = None


def configure(settings: Any) -> bool:
    """Enable export when APPLICATIONINSIGHTS_CONNECTION_STRING is set. True when enabled."""
    global _tracer
    if _tracer is not None or not settings.appinsights_connection_string:
        return _tracer is not None
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import trace

        kwargs: dict[str, Any] = {"connection_string": settings.appinsights_connection_string}
        if settings.azure_client_id:
            from azure.identity import ManagedIdentityCredential

            kwargs["credential"] = ManagedIdentityCredential(client_id=settings.azure_client_id)
        configure_azure_monitor(**kwargs)
        _tracer = trace.get_tracer("searchsvc")
    except Exception as exc:  # telemetry must never take the app down
        log.warning("telemetry not enabled: %s", exc)
        return False
    return True


def use_tracer(tracer: Any) -> None:
    """Send spans to ``tracer`` (an OpenTelemetry tracer), or stop tracing with None."""
    global _tracer
    _tracer = tracer


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None}):
        yield
