"""What every command shares: its settings, its logging, and how a setup error reaches the operator."""

from __future__ import annotations

import logging
from typing import Any

import click

from pipeline.settings import Settings, load_settings
from pipeline.wiring import SetupError


class CliError(click.ClickException):
    """A failure the operator can fix: click prints `Error: <message>` and exits with 1."""


class ErasureGroup(click.Group):
    """The `erasure` group: a `SetupError` from any command below becomes a `CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SetupError as exc:
            raise CliError(str(exc)) from None


def settings() -> Settings:
    return load_settings()


# Libraries whose DEBUG and INFO lines carry URLs, headers or bodies: processors' URLs hold e-mails
# (`GET /v3/contacts/ada%40example.net`), so they log warnings only, whatever ERASURE_LOG_LEVEL says.
QUIET_LIBRARIES = ("urllib3", "requests", "httpx", "httpcore", "hpack", "kafka", "aiokafka", "uvicorn.access")


def configure_logging(settings: Settings) -> None:
    """The one logging set-up: our loggers at ERASURE_LOG_LEVEL, chatty libraries pinned to WARNING."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
