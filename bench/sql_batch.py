"""The site database's erasure alone: one person per transaction, then batches, CPU and time per person.

    python bench/sql_batch.py [--people 2000] [--batch 64] [--site-db sqlite|postgres|mariadb]

Seeds the demo's site schema (accounts with profiles, addresses, messages, orders, invoices,
cards, fraud signals: holds archived and marked in place) twice with the same people, erases
them one per `erase` call, then in `erase_batch` calls of `--batch`, in this process, and reports
CPU milliseconds (this process: SQLAlchemy and the driver; the database server's own work is
not counted) and wall milliseconds per person for each, and the statements each sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.base import BatchItem, TaskContext  # noqa: E402
from connectors.stores.sql_store import ARCHIVE_TABLE, SqlStoreConnector, SqlStoreSettings  # noqa: E402
from pipeline.devstack.demo import Person, seed_site_database, site_metadata, site_rules  # noqa: E402
from pipeline.policy import load_policy  # noqa: E402
from schemas import Identity, SubjectIdentities  # noqa: E402

PG_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def people(count: int) -> list[Person]:
    return [Person(f"Bench Person {i}", f"sqlbench.{i}@example.test", f"+3365{i:07d}", orders=i % 3,
                   card_added_days_ago=30 if i % 4 == 0 else None, fraud_signal=i % 5 == 0)
            for i in range(count)]


def database(kind: str, work: Path) -> tuple[str, Any]:
    """A fresh database's URL, and how to drop it."""
    if kind == "sqlite":
        return f"sqlite:///{work / 'site.db'}", lambda: None
    name = f"bench_sql_{uuid.uuid4().hex[:8]}"
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop_pg() -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop_pg
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")

    def drop_maria() -> None:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    return f"mysql+pymysql://root@127.0.0.1:3306/{name}", drop_maria


def reseed(url: str, seeded: list[Person]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {ARCHIVE_TABLE}"))
    site_metadata.drop_all(engine)
    engine.dispose()
    seed_site_database(url, seeded)


def items(seeded: list[Person]) -> list[BatchItem]:
    policy, _ = load_policy(None)
    received = datetime.now(UTC) - timedelta(days=1)
    return [BatchItem(SubjectIdentities(identities=[Identity(identity_type="email", identity_value=p.email)]),
                      TaskContext(request_id=str(uuid.uuid4()), system="site-db", attempt=1,
                                  received_at=received, retention=policy)) for p in seeded]


def measure(url: str, work: list[BatchItem], batch: int) -> dict[str, float]:
    """Erase every item (one per call when `batch` is 0); per person: CPU ms, wall ms, statements."""
    settings = SqlStoreSettings.model_validate({"url": url, "tables": site_rules()})
    store = SqlStoreConnector("site-db", settings)
    statements = [0]

    def counted(*_: Any) -> None:
        statements[0] += 1

    sa.event.listen(store._engine, "before_cursor_execute", counted)
    store.erase(work[0].subject, work[0].context)  # reflection and the first connection: not measured
    rest = work[1:]
    statements[0] = 0
    cpu, wall = time.process_time(), time.perf_counter()
    if batch:
        for start in range(0, len(rest), batch):
            store.erase_batch(rest[start:start + batch])
    else:
        for item in rest:
            store.erase(item.subject, item.context)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()
    return {"cpu_ms_per_person": round(1000 * cpu / len(rest), 3),
            "wall_ms_per_person": round(1000 * wall / len(rest), 3),
            "statements_per_person": round(statements[0] / len(rest), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--site-db", choices=("sqlite", "postgres", "mariadb"), default="sqlite")
    args = parser.parse_args()
    seeded = people(args.people)
    url, drop = database(args.site_db, Path(tempfile.mkdtemp(prefix="erasure-sqlbench-")))
    try:
        reseed(url, seeded)
        one = measure(url, items(seeded), 0)
        reseed(url, seeded)
        batched = measure(url, items(seeded), args.batch)
    finally:
        drop()
    print(json.dumps({"site_db": args.site_db, "people": args.people, "batch": args.batch,
                      "one_per_transaction": one, "batched": batched}, indent=2))


if __name__ == "__main__":
    main()
