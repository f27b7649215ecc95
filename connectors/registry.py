"""Connector types by name, as systems.yaml refers to them.

Small classes for what needs code (branching, job polling, token refresh, stores);
YAML specs (`connectors/specs/*.yaml`) for processors that fit one lookup and one
erase call. The runtime does not care which.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import BaseModel, model_validator

from connectors.base import ConfigError, Connector
from connectors.pacing import PACERS, RateLimit
from connectors.processors.declarative import (
    DeclarativeConnector,
    DeclarativeSettings,
    ProcessorSpec,
    settings_for,
    shipped_specs,
)

ConnectorFactory = Callable[[str, Any], Connector]

# type -> (module, settings class, connector class)
CLASS_CONNECTORS: dict[str, tuple[str, str, str]] = {
    "brevo": ("connectors.processors.brevo", "BrevoSettings", "BrevoConnector"),
    "sql": ("connectors.stores.sql_store", "SqlStoreSettings", "SqlStoreConnector"),
    "redis": ("connectors.stores.redis_store", "RedisStoreSettings", "RedisStoreConnector"),
    "files": ("connectors.stores.files_store", "FilesStoreSettings", "FilesStoreConnector"),
    "kafka_topic": ("connectors.stores.kafka_topic", "KafkaTopicSettings", "KafkaTopicConnector"),
    "manual": ("connectors.manual", "ManualSettings", "ManualConnector"),
    "stripe": ("connectors.processors.stripe", "StripeSettings", "StripeConnector"),
    "mailchimp": ("connectors.processors.mailchimp", "MailchimpSettings", "MailchimpConnector"),
    "zendesk": ("connectors.processors.zendesk", "ZendeskSettings", "ZendeskConnector"),
    "sendgrid": ("connectors.processors.sendgrid", "SendgridSettings", "SendgridConnector"),
    "segment": ("connectors.processors.segment", "SegmentSettings", "SegmentConnector"),
    "mixpanel": ("connectors.processors.mixpanel", "MixpanelSettings", "MixpanelConnector"),
    "auth0": ("connectors.processors.auth0", "Auth0Settings", "Auth0Connector"),
    "opendsr": ("connectors.processors.opendsr", "OpenDsrSettings", "OpenDsrConnector"),
    "ga4": ("connectors.processors.ga4", "Ga4Settings", "Ga4Connector"),
}


def _declared_settings_model(spec: ProcessorSpec) -> type[BaseModel]:
    class Settings(DeclarativeSettings):
        @model_validator(mode="after")
        def _matches_spec(self) -> Settings:
            settings_for(spec, self.model_dump())
            return self

    Settings.__name__ = Settings.__qualname__ = f"{spec.name.title()}Settings"
    return Settings


@cache
def connector_types() -> dict[str, tuple[type[BaseModel], ConnectorFactory]]:
    types: dict[str, tuple[type[BaseModel], ConnectorFactory]] = {}
    for name, (module_name, settings_name, class_name) in CLASS_CONNECTORS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # not shipped in this build
        types[name] = (getattr(module, settings_name), getattr(module, class_name))
    for name, spec in shipped_specs().items():
        if name in types:
            raise ConfigError(f"connectors/specs/{name}.yaml: a class connector already has type {name!r}")

        def factory(system: str, settings: Any, spec: ProcessorSpec = spec) -> Connector:
            return DeclarativeConnector(system, spec, settings)

        types[name] = (_declared_settings_model(spec), factory)
    return types


def settings_model(connector_type: str) -> type[BaseModel]:
    return connector_types()[connector_type][0]


def build_connector(system: str, connector_type: str, settings: BaseModel,
                    rate_limit: RateLimit | None = None) -> Connector:
    """The system's connector, its lane paced at `rate_limit` or its processor's published limit."""
    PACERS.configure(system, connector_type, rate_limit)
    return connector_types()[connector_type][1](system, settings)
