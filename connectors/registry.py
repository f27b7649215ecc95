"""Connector types by name, as systems.yaml refers to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from connectors.base import Connector
from connectors.brevo import BrevoConnector, BrevoSettings
from connectors.files_store import FilesStoreConnector, FilesStoreSettings
from connectors.kafka_topic import KafkaTopicConnector, KafkaTopicSettings
from connectors.manual import ManualConnector, ManualSettings
from connectors.redis_store import RedisStoreConnector, RedisStoreSettings
from connectors.sql_store import SqlStoreConnector, SqlStoreSettings

ConnectorFactory = Callable[[str, Any], Connector]

CONNECTOR_TYPES: dict[str, tuple[type[BaseModel], ConnectorFactory]] = {
    "brevo": (BrevoSettings, BrevoConnector),
    "sql": (SqlStoreSettings, SqlStoreConnector),
    "redis": (RedisStoreSettings, RedisStoreConnector),
    "files": (FilesStoreSettings, FilesStoreConnector),
    "kafka_topic": (KafkaTopicSettings, KafkaTopicConnector),
    "manual": (ManualSettings, ManualConnector),
}


def settings_model(connector_type: str) -> type[BaseModel]:
    return CONNECTOR_TYPES[connector_type][0]


def build_connector(system: str, connector_type: str, settings: BaseModel) -> Connector:
    return CONNECTOR_TYPES[connector_type][1](system, settings)
