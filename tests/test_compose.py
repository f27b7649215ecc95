"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from pipeline.cli import main
from pipeline.register import load_systems
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY_IMAGES = ("apache/kafka", "postgres", "prom/prometheus")


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"ERASURE_{name.upper()}")
        alias = field.validation_alias
        if alias is not None:
            names.update(str(choice) for choice in getattr(alias, "choices", [alias]))
    return names


def secrets_named_in(systems_file: Path) -> set[str]:
    names = set()
    for entry in load_systems(systems_file).systems:
        for key, value in (entry.connector.model_extra or {}).items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
    return names


def resolve_command(words: list[str]) -> tuple[click.Command, list[str]]:
    """The subcommand the words name, and the words left over as its arguments."""
    command: click.Command = main
    depth = 0
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        depth += 1
    return command, words[depth:]


def erasure_services() -> dict[str, dict]:  # type: ignore[type-arg]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: spec for name, spec in compose["services"].items()
            if not str(spec.get("image", "")).startswith(THIRD_PARTY_IMAGES)}


def test_every_service_runs_a_real_erasure_subcommand() -> None:
    services = erasure_services()
    assert {"worker", "connector-site-db", "connector-brevo", "topics", "desk"} <= set(services)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["erasure"]' in dockerfile
    for name, spec in services.items():
        command, rest = resolve_command(spec["command"])
        assert command is not main and not isinstance(command, click.Group), (
            f"service {name}: {spec['command']} is not an erasure subcommand")
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        words = [w for w in rest if not w.startswith("--")]
        for flag in (w for w in rest if w.startswith("--")):
            assert flag in options, f"service {name}: {flag} is not an option of {command.name}"
            words.remove(rest[rest.index(flag) + 1])
        assert len(words) == len(arguments), f"service {name}: {words} for arguments {arguments}"


def test_connector_services_name_systems_of_the_register() -> None:
    register = load_systems(ROOT / "deploy" / "systems.yaml")
    for name, spec in erasure_services().items():
        if spec["command"][0] == "connector":
            assert spec["command"][1] in register.ids, f"service {name}: unknown system"


def test_every_setting_passed_is_one_the_code_reads() -> None:
    known = settings_env_names() | secrets_named_in(ROOT / "deploy" / "systems.yaml")
    for name, spec in erasure_services().items():
        for variable in spec.get("environment", {}):
            assert variable in known, f"service {name} passes {variable}, which nothing reads"
    mounted = [v for spec in erasure_services().values() for v in spec.get("volumes", [])]
    assert all(Path(ROOT, v.split(":")[0]).exists() for v in mounted)


def test_prometheus_scrapes_the_desk() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    config_file = next(v.split(":")[0] for v in prometheus["volumes"] if v.endswith("prometheus.yml:ro"))
    config = yaml.safe_load(Path(ROOT, config_file).read_text())
    desk_command = compose["services"]["desk"]["command"]
    desk_port = desk_command[desk_command.index("--port") + 1]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["erasure-desk"]["metrics_path"] == "/metrics"
    assert jobs["erasure-desk"]["static_configs"][0]["targets"] == [f"desk:{desk_port}"]


def test_workers_and_connectors_can_be_scaled_out_and_share_their_partitions() -> None:
    """`docker compose up --scale worker=2 --scale connector-brevo=3` (README, "Scaling out")."""
    scalable = {name: spec for name, spec in erasure_services().items()
                if spec["command"][0] in ("worker", "connector")}
    assert {"worker", "connector-brevo", "connector-site-db"} <= set(scalable)
    for name, spec in scalable.items():
        # Several containers of one service: no fixed name, no host port to collide on.
        assert "container_name" not in spec and "ports" not in spec, f"service {name} cannot be scaled"
        env = spec["environment"]
        assert int(env["ERASURE_TOPIC_PARTITIONS"]) >= 2, f"service {name}: nothing to share"
        if spec["command"][0] == "connector":
            # Group members share a lane; sole owners would each take every partition.
            default = Settings.model_fields["connector_sole_owner"].default
            sole_owner = env.get("ERASURE_CONNECTOR_SOLE_OWNER", default)
            assert str(sole_owner).lower() == "false", f"service {name} runs as its lane's sole owner"
