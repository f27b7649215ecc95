"""Peak RSS of `erasure sweep` (dry run, then the real run) over many covered rows.

    python bench/sweep_memory.py --rows 100000 [--db sqlite|postgres] [--code /work/main]

Seeds a site table whose rows are all covered by one retention rule (one person each), then runs
`erasure sweep --dry-run` and `erasure sweep` each in a child process of its own, with `--code`'s
pipeline on PYTHONPATH (a checkout before a change, to compare), and reports each child's peak
resident set from the kernel (`wait4`'s ru_maxrss) and its wall time. A child that only imports
the CLI gives the floor. The real run needs a broker: KAFKA_BOOTSTRAP_SERVERS, or an embedded
Tansu is started. Figures vary with the machine: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.crypto import init_keys  # noqa: E402
from pipeline.devstack.broker import find_or_start  # noqa: E402
from pipeline.kafka_clients import ensure_topics  # noqa: E402
from pipeline.signing import SWEEP  # noqa: E402
from pipeline.signing_keys import ensure_signers  # noqa: E402
from pipeline.streaming import topics  # noqa: E402

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INSERT_CHUNK = 5_000


def seed(url: str, table_name: str, rows: int) -> None:
    engine = sa.create_engine(url)
    table = sa.Table(table_name, sa.MetaData(),
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("email", sa.String(254)), sa.Column("phone", sa.String(40)),
                     sa.Column("status", sa.String(20), nullable=False),
                     sa.Column("created_at", sa.DateTime, nullable=False),
                     sa.Column("last_login_at", sa.DateTime))
    table.metadata.drop_all(engine)
    table.metadata.create_all(engine)
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1500)
    with engine.begin() as conn:
        for start in range(0, rows, INSERT_CHUNK):
            conn.execute(table.insert(), [
                {"id": n, "email": f"member{n}@bench.example", "phone": f"+3361{n:08d}", "status": "active",
                 "created_at": long_ago - timedelta(days=1), "last_login_at": long_ago + timedelta(seconds=n)}
                for n in range(start, min(rows, start + INSERT_CHUNK))])
    engine.dispose()


def measured(code: Path, env: dict[str, str], args: list[str]) -> dict[str, object]:
    """Run `erasure <args>` in a child; its peak RSS (MB), wall time (s) and last output line."""
    script = ("import sys; from pipeline.cli import main; main(sys.argv[1:])" if args
              else "import pipeline.cli")
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=code, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": str(code)})
    assert child.stdout is not None
    output = child.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, None):
        raise SystemExit(f"erasure {' '.join(args)} failed ({child.returncode}):\n{output[-2000:]}")
    lines = [line for line in output.replace("\r", "\n").splitlines() if line.strip()]
    return {"command": " ".join(["erasure", *args]) if args else "import pipeline.cli",
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.monotonic() - started, 1),
            "said": [line for line in lines if "people" in line or "submitted" in line][:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose pipeline runs")
    parser.add_argument("--skip-run", action="store_true", help="the dry run only (no broker)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep-memory-"))
    table = f"bench_members_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{work / 'site.db'}" if options.db == "sqlite" else POSTGRES_URL
    seed(url, table, options.rows)
    init_keys(work / "home" / "keys")
    keys = work / "home" / "keys"  # the sweeps sign their requests (the router plans no unsigned one)
    ensure_signers(keys / "signers.json", keys / "signing", [SWEEP])
    (work / "systems.yaml").write_text(yaml.safe_dump({"systems": [
        {"id": "site-db", "kind": "internal", "location": "France", "data_categories": ["account"],
         "connector": {"type": "sql", "url_env": "SWEEP_BENCH_SITE_URL", "tables": [
             {"table": table, "match": {"email": "email", "phone": "phone"}, "action": "delete"}]},
         "retention_sweeps": [{
             "name": "inactive-members", "description": "members without login for 3 years", "table": table,
             "identities": {"email": "email", "phone": "phone"},
             "older_than": {"column": "last_login_at", "fallback_column": "created_at", "period": "P3Y"},
             "where": {"status": "active"}}]}]}))
    broker = None if options.skip_run else find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                                                         work / "broker")
    env = {**os.environ, "ERASURE_HOME_DIR": str(work / "home"),
           "ERASURE_SYSTEMS_FILE": str(work / "systems.yaml"),
           "DATABASE_URL": f"sqlite:///{work / 'ledger.db'}", "SWEEP_BENCH_SITE_URL": url}
    results = [measured(options.code, env, [])]
    try:
        if broker is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
            ensure_topics(broker.bootstrap, [topics.REQUESTS], 4)
        results.append(measured(options.code, env, ["sweep", "--dry-run"]))
        if broker is not None:
            results.append(measured(options.code, env, ["sweep", "--rate-per-s", "1000000"]))
            results.append(measured(options.code, env, ["sweep", "--dry-run"]))
    finally:
        if broker is not None:
            broker.stop()
        if options.db == "postgres":
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            engine.dispose()
    print(json.dumps({"rows": options.rows, "db": options.db, "code": str(options.code), "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
