"""What every command shares: its settings, its logging, and how a setup error reaches the operator."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from pipeline.wiring import SetupError

if TYPE_CHECKING:
    from pipeline.settings import Settings


class CliError(click.ClickException):
    """A failure the operator can fix: click prints `Error: <message>` and exits with 1."""


class ErasureGroup(click.Group):
    """The `erasure` group: a `SetupError` from any command below becomes a `CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SetupError as exc:
            raise CliError(str(exc)) from None


class LazyChoice(click.Choice[str]):
    """A choice whose values live in a module imported only when they are needed (parsing the
    option, or its command's help), not when `erasure` starts."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        super().__init__(())

    @property
    def choices(self) -> Sequence[str]:
        return tuple(self._load())

    @choices.setter
    def choices(self, _ignored: Sequence[str]) -> None:
        """click.Choice sets it in its constructor; the loader is the source."""


def settings() -> Settings:
    from pipeline.settings import load_settings  # pydantic-settings: only for commands that run

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
