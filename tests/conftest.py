"""Shared fixtures: a real Kafka-protocol broker, real PostgreSQL and MariaDB databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker, find_or_start

# Every exchange with a processor fake is checked against contracts/<processor>.openapi.yaml.
pytest_plugins = ["tests.contracts.plugin", "tests.processors.fixtures"]

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
MARIADB_HOST = os.environ.get("TEST_MARIADB_HOST", "127.0.0.1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka_requires(feature): needs a broker feature")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), tmp_path_factory.mktemp("broker"))
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def _fresh_pacers() -> None:
    """A processor's hold or pace from one test never slows the next (pacers are per process)."""
    from connectors.pacing import PACERS

    PACERS.reset()


@pytest.fixture(autouse=True)
def _skip_missing_broker_features(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("kafka_requires")
    if marker is None:
        return
    broker: Broker = request.getfixturevalue("kafka")
    for feature in marker.args:
        if not broker.caps.get(feature, False):
            pytest.skip(f"the {broker.kind} broker lacks {feature}")


def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"erasure_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(scope="module")
def postgres_url_module() -> Iterator[str]:
    yield from _postgres_database()


def _mariadb_database() -> Iterator[str]:
    import pymysql

    name = f"erasure_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host=MARIADB_HOST, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        yield f"mysql+pymysql://root@{MARIADB_HOST}:3306/{name}"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    yield from _mariadb_database()


@pytest.fixture(scope="module")
def mariadb_url_module() -> Iterator[str]:
    yield from _mariadb_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'site.db'}"
