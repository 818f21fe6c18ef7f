"""The cloud service: REST API, MQTT ingest, command dispatch, persistence.

The composition root needs only :func:`create_app`, :class:`CloudSettings` and the typed state keys
of :mod:`cloud_sync.service.state`; see ``docs/cloud-api.md`` for the HTTP surface.
"""

from cloud_sync.service.app import create_app
from cloud_sync.service.settings import BrokerSettings, CloudSettings

__all__ = ["BrokerSettings", "CloudSettings", "create_app"]
