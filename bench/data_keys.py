"""The ledger's data-key lookups alone: one per task, then one per batch, CPU and time per key.

    python bench/data_keys.py [--keys 2000] [--batch 64]

Grants `--keys` wrapped data keys in a fresh SQLite ledger (the one `bench/run.py` runs with),
reads each back with `KeyStore.data_key` (what a connector lane did per task), then with
`KeyStore.data_keys` in lists of `--batch` ids (what it does per batch now), in this process,
and reports CPU and wall milliseconds per key for each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.crypto import new_data_key  # noqa: E402
from pipeline.keywrap import AesGcmKeyWrapper  # noqa: E402
from pipeline.ledger import open_ledger  # noqa: E402


def per_key_ms(count: int, run: Callable[[], None]) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return {"cpu_ms_per_key": round(1000 * (time.process_time() - cpu) / count, 4),
            "wall_ms_per_key": round(1000 * (time.perf_counter() - wall) / count, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="erasure-bench-keys-"))
    ledger = open_ledger(f"sqlite:///{work / 'ledger.db'}", AesGcmKeyWrapper.generate())
    keys = {str(uuid.uuid4()): new_data_key() for _ in range(args.keys)}
    ledger.grant_data_keys(keys, datetime.now(UTC))
    ids = list(keys)
    batches = [ids[i:i + args.batch] for i in range(0, len(ids), args.batch)]
    try:
        single = per_key_ms(len(ids), lambda: [ledger.keys.data_key(rid) for rid in ids] and None)
        bulk = per_key_ms(len(ids), lambda: [ledger.keys.data_keys(b) for b in batches] and None)
        assert all(ledger.keys.data_keys(b) == {rid: keys[rid] for rid in b} for b in batches)
    finally:
        ledger.close()
    print(json.dumps({"keys": len(ids), "batch": args.batch, "one_per_task": single,
                      "one_per_batch": bulk}, indent=2))


if __name__ == "__main__":
    main()
