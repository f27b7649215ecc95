"""`erasure systems check`: credentials and reachability of every system, erasing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.devstack.demo import DEMO_PEOPLE, demo_systems, seed_brevo, seed_site_database
from pipeline.devstack.fake_brevo import FakeBrevo


def run_check(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "systems", "check"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "ERASURE_HOME_DIR": str(tmp_path), **env})


def test_table_with_each_system_then_a_failure_named(tmp_path: Path) -> None:
    fake = FakeBrevo({"good-key"})
    fake.start()
    try:
        site = f"sqlite:///{tmp_path / 'site.db'}"
        seed_site_database(site)
        seed_brevo(fake.url, "good-key")
        before = fake.contact_count()
        systems = tmp_path / "systems.yaml"
        systems.write_text(yaml.safe_dump(demo_systems(site, fake.url, uploads_dir=tmp_path)))
        env = {"ERASURE_SYSTEMS_FILE": str(systems), "ERASURE_DEMO_BREVO_API_KEY": "good-key"}
        ok = run_check(tmp_path, env)
        assert ok.returncode == 0, ok.stderr
        lines = ok.stdout.splitlines()
        assert lines[0].split()[:3] == ["system", "kind", "type"]
        assert {line.split()[0] for line in lines[1:]} == {"site-db", "brevo", "uploads"}
        assert all(" ok:" in line for line in lines[1:])
        bad = run_check(tmp_path, {**env, "ERASURE_DEMO_BREVO_API_KEY": "wrong-key"})
        assert bad.returncode != 0
        brevo = next(line for line in bad.stdout.splitlines() if line.startswith("brevo"))
        assert "FAILED (auth)" in brevo and "ERASURE_DEMO_BREVO_API_KEY" in brevo
        assert fake.contact_count() == before == sum(p.in_brevo for p in DEMO_PEOPLE), "nothing erased"
    finally:
        fake.stop()
