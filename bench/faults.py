"""Fault suite: the embedded pipeline under random kill -9 while requests flow, then what must still hold.

    python bench/faults.py [--requests N --rate R --kills K --broker-restarts B --seed S]

Starts the embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), then the pipeline as `erasure up`
runs it, supervised (`LocalPipeline`: the faust worker, one connector process per demo system,
the desk), publishes N requests at R per second, and meanwhile SIGKILLs K times a lane chosen at
random (worker, each connector, desk) and B times the embedded broker (0 by default). The
supervision loop restarts what dies, the broker included, with its topics, as `erasure up` does
(`BrokerKeeper`). The publisher is a Kafka-native one as the README's "Broker loss" asks: it keeps
each request until the ledger shows it planned and publishes it again (same request id) until then.
Then it checks, and exits 1 if a check fails:

- every request reached a final state in the ledger;
- each request once in the ledger: one plan, one completion, one final outcome per system;
- the ledger's chain verifies (`erasure ledger verify`);
- no published e-mail in clear in any record of any topic (read raw) nor in any log.

It reports, per lane, how long after its last kill (and at worst after any kill), and after each
return of the broker, its next sign of work came: a connector's next outcome, the worker's next
ledger write, the desk's next answer; with --resume-limit-s a lane that took longer after its last
kill fails the run. JSON on stdout (and in bench/results/), a summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests as http
import sqlalchemy as sa
from kafka.errors import KafkaError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from bench import fault_checks  # noqa: E402
from pipeline.devstack.broker import Broker, BrokerKeeper, find_or_start  # noqa: E402
from pipeline.devstack.demo import Person  # noqa: E402
from pipeline.devstack.local import LocalPipeline  # noqa: E402
from pipeline.kafka_clients import ensure_topics  # noqa: E402
from pipeline.ledger import requests_table  # noqa: E402
from pipeline.streaming import topics  # noqa: E402

WARMUP_S = 5.0  # no kill before the first requests are under way
QUIET_TAIL_S = 10.0  # nor in the last seconds of publishing: every lane has work after its last kill
REPUBLISH_AFTER_S = 30.0  # a request the ledger does not show planned by then is published again
REPUBLISH_CAP_S = 120.0  # (then after 60, 120, 120... s), as the HTTP intake's relay does
SUBMIT_TIMEOUT_S = 60.0  # one publish waits this long for the broker's acknowledgement (it may be down)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rate", type=float, default=6.0, help="requests published per second")
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs, each of a lane chosen at random")
    parser.add_argument("--broker-restarts", type=int, default=0,
                        help="SIGKILLs of the embedded broker during the run, each revived by the "
                             "supervision loop (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="makes the kill schedule repeatable")
    parser.add_argument("--people", type=int, default=200, help="seeded people the requests are about")
    parser.add_argument("--timeout-s", type=float, default=900.0,
                        help="how long to wait for every request to finish after publishing")
    parser.add_argument("--stall-s", type=float, default=60.0, help="the supervisor's stall threshold")
    parser.add_argument("--lanes", nargs="+", default=None,
                        help="kill only these (worker, desk, connector-SYSTEM); every lane by default")
    parser.add_argument("--group-lanes", action="store_true",
                        help="connectors join their consumer groups (as when processes share a system) "
                             "instead of owning their partitions as `erasure up` runs them")
    parser.add_argument("--resume-limit-s", type=float, default=None,
                        help="fail when a lane's next sign of work came later than this after its last kill")
    args = parser.parse_args(argv)
    publish_s = args.requests / args.rate
    if args.rate <= 0 or publish_s < WARMUP_S + QUIET_TAIL_S + 5:
        parser.error(f"publishing must last at least {WARMUP_S + QUIET_TAIL_S + 5:.0f} s to leave room for "
                     f"kills: raise --requests or lower --rate (now {publish_s:.0f} s)")
    if args.seed is None:
        args.seed = random.randrange(10**6)
    return args


class Publisher(threading.Thread):
    """Publishes the requests at a steady rate through the intake client, each acknowledged by the broker
    (sent again until then, on a fresh producer after a broker loss); remembers what and when.

    A Kafka-native publisher on the embedded broker, as the README's "Broker loss" asks: each request
    stays in its outbox until the ledger shows it planned, and is published again (same request id)
    while it does not: a broker killed a moment after acknowledging it lost it."""

    def __init__(self, pipeline: LocalPipeline, ledger_url: str, emails: list[str], count: int,
                 rate: float, rng: random.Random) -> None:
        super().__init__(daemon=True, name="publisher")
        self.pipeline, self.emails, self.count, self.rate, self.rng = pipeline, emails, count, rate, rng
        self.ledger_url = ledger_url
        self.published: dict[str, float] = {}
        # request id -> (e-mail, received at, when to publish it again, next wait): in memory only
        self.outbox: dict[str, tuple[str, datetime, float, float]] = {}
        self.republished = 0
        self.stopping = threading.Event()
        self.start_at = time.time()

    def run(self) -> None:
        for index in range(self.count):
            time.sleep(max(0.0, self.start_at + index / self.rate - time.time()))
            email, received_at = self.rng.choice(self.emails), datetime.now(UTC)
            request_id = str(uuid.uuid4())
            # In the outbox before it is sent: a send that fails is made again by `republish_unplanned`.
            self.outbox[request_id] = (email, received_at, time.time() + REPUBLISH_AFTER_S, REPUBLISH_AFTER_S)
            self.published[request_id] = time.time()
            self.send(email, received_at, request_id)
            if index % max(1, int(self.rate * 5)) == 0:
                self.republish_unplanned()
        while not self.stopping.wait(2.0) and self.outbox:
            self.republish_unplanned()

    def send(self, email: str, received_at: datetime, request_id: str) -> None:
        try:
            self.pipeline.intake.submit({"email": email}, received_at, request_id=request_id,
                                        timeout_s=SUBMIT_TIMEOUT_S)
        except KafkaError as exc:  # still in the outbox: published again when due
            logging.getLogger("faults").warning("a publish failed (%s); it stays in the outbox",
                                                type(exc).__name__)

    def republish_unplanned(self) -> None:
        engine = sa.create_engine(self.ledger_url)
        try:
            with engine.connect() as conn:
                planned = set(conn.execute(sa.select(requests_table.c.request_id)).scalars())
        finally:
            engine.dispose()
        now = time.time()
        for request_id, (email, received_at, due, wait) in list(self.outbox.items()):
            if request_id in planned:
                del self.outbox[request_id]
            elif now >= due:
                self.send(email, received_at, request_id)
                self.republished += 1
                later = min(2 * wait, REPUBLISH_CAP_S)
                self.outbox[request_id] = (email, received_at, now + later, later)


class DeskProbe(threading.Thread):
    """Asks the desk's /healthz twice a second; remembers when it answered."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="desk-probe")
        self.url = url
        self.answers: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                if http.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    self.answers.append(time.time())
            except http.RequestException:
                pass


READY_MARKERS = {"worker": "Worker]: Ready", "desk": None}  # the desk: its first answer to the probe
CONNECTOR_READY = "assigned"


class StartupWatch(threading.Thread):
    """Times each restart of a lane: from the supervisor's spawn to the process's first log line (the
    interpreter started and the CLI's imports done), and to ready (the worker's "Ready", a connector's
    partitions assigned, the desk's first answer), with the CPU seconds the process had used then."""

    def __init__(self, pipeline: LocalPipeline, desk: DeskProbe) -> None:
        super().__init__(daemon=True, name="startup-watch")
        self.pipeline, self.desk = pipeline, desk
        self.stopping = threading.Event()
        self.known = {name: process.pid for name, process in pipeline.processes.items()}
        self.pending: dict[int, dict[str, Any]] = {}  # pid -> what is known of its start so far
        self.starts: list[dict[str, Any]] = []
        self.cut_short: dict[str, int] = {}  # lane -> starts killed (or exited) before they were ready
        self.load_1m: list[float] = []  # the machine's load average, sampled: start-up waits for CPU

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            self.load_1m.append(os.getloadavg()[0])
            for name, process in list(self.pipeline.processes.items()):
                if self.known.get(name) != process.pid:
                    self.known[name] = process.pid
                    self.pending[process.pid] = {
                        "lane": name, "spawned_at": self.pipeline.supervisor.started_at[name],
                        "offset": self.pipeline.supervisor.log_size(name), "first_line_s": None}
            for pid, start in list(self.pending.items()):
                self.look(pid, start)

    def look(self, pid: int, start: dict[str, Any]) -> None:
        now, lane = time.time(), start["lane"]
        cpu = procstats_cpu_s(pid)
        if cpu is None or self.known.get(lane) != pid:  # gone before it was ready
            del self.pending[pid]
            self.cut_short[lane] = self.cut_short.get(lane, 0) + 1
            return
        with open(self.pipeline.supervisor.log_path(lane), "rb") as log:  # only what this start wrote
            log.seek(start["offset"])
            text = log.read().decode(errors="replace")
        if text and start["first_line_s"] is None:
            start["first_line_s"] = round(now - start["spawned_at"], 1)
        marker = READY_MARKERS.get(lane, CONNECTOR_READY)
        ready = (marker in text) if marker else any(a > start["spawned_at"] for a in self.desk.answers)
        if ready:
            self.starts.append({"lane": lane, "first_line_s": start["first_line_s"],
                                "ready_s": round(now - start["spawned_at"], 1), "cpu_at_ready_s": cpu})
            del self.pending[pid]

    def figures(self) -> dict[str, dict[str, Any]]:
        """Per lane: restarts timed, and the median and worst of each phase."""
        out: dict[str, dict[str, Any]] = {}
        for lane in sorted({s["lane"] for s in self.starts} | set(self.cut_short)):
            mine = [s for s in self.starts if s["lane"] == lane]
            out[lane] = {"restarts_timed": len(mine), "killed_before_ready": self.cut_short.get(lane, 0)}
            for key in ("first_line_s", "ready_s", "cpu_at_ready_s"):
                values = sorted(s[key] for s in mine if s[key] is not None)
                if values:
                    out[lane][key] = {"median": values[len(values) // 2], "max": values[-1]}
        return out


def spread(values: list[float]) -> dict[str, float] | None:
    ordered = sorted(values)
    return {"min": round(ordered[0], 1), "median": round(ordered[len(ordered) // 2], 1),
            "max": round(ordered[-1], 1)} if ordered else None


def procstats_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def schedule(rng: random.Random, count: int, lanes: list[str], publish_s: float) -> list[tuple[float, str]]:
    """`count` (seconds after publishing starts, lane) pairs, in order."""
    window = (WARMUP_S, publish_s - QUIET_TAIL_S)
    return sorted((rng.uniform(*window), rng.choice(lanes)) for _ in range(count))


def inflict(pipeline: LocalPipeline, broker: Broker, plan: list[tuple[float, str]],
             start_at: float) -> dict[str, list[float]]:
    """Carry out the plan; when each lane (and the broker) was killed, epoch seconds."""
    kills: dict[str, list[float]] = {}
    for offset, target in plan:
        time.sleep(max(0.0, start_at + offset - time.time()))
        if target == "broker":
            broker.kill()  # SIGKILL; the supervision loop's BrokerKeeper starts it again
            logging.getLogger("faults").warning("broker killed")
        else:
            pipeline.kill(target)
        kills.setdefault(target, []).append(time.time())
    return kills


def wait_final(ledger_url: str, request_ids: list[str], timeout_s: float) -> float:
    """Wait until no published request is in progress (or the timeout); when the last one finished."""
    engine = sa.create_engine(ledger_url)
    deadline = time.time() + timeout_s
    wanted = set(request_ids)
    try:
        while time.time() < deadline:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(requests_table.c.request_id, requests_table.c.status)).all()
            finished = sum(1 for r in rows if r.request_id in wanted and r.status != "in_progress")
            print(f"  {finished}/{len(wanted)} final", file=sys.stderr)
            if finished == len(wanted):
                break
            time.sleep(2.0)
    finally:
        engine.dispose()
    return time.time()


def lane_figures(pipeline: LocalPipeline, kills: dict[str, list[float]], outcomes: list[Any],
                 desk_answers: list[float], ledger_url: str,
                 broker_back: list[float]) -> dict[str, dict[str, Any]]:
    """Per lane, its resume figures; a connector's outcomes come from the ledger (the topic lost those
    published before a broker restart) and from the topic (those the ledger deduplicated)."""
    by_system = fault_checks.outcome_times(outcomes)
    for system, times in fault_checks.ledger_outcome_times(ledger_url).items():
        by_system[system] = sorted(set(by_system.get(system, [])) | set(times))
    signs = {"worker": fault_checks.ledger_write_times(ledger_url), "desk": desk_answers}
    signs.update({f"connector-{system}": times for system, times in by_system.items()})
    return {lane: fault_checks.resume_figures(kills.get(lane, []), signs.get(lane, []), broker_back)
            for lane in sorted(pipeline.processes)}


def supervisor_restarts(log_path: Path) -> dict[str, int]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return {"after_exit": text.count("exited with"), "after_stall": text.count("makes no progress")}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    people = [Person(f"Fault Person{run_id} {i}", f"fault.{run_id}.{i}@example.test", f"+3361{i:07d}",
                     in_brevo=i % 2 == 0) for i in range(args.people)]
    emails = [p.email for p in people]
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), work / "broker")
    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    group_env = {"ERASURE_CONNECTOR_SOLE_OWNER": "false"} if args.group_lanes else {}
    pipeline = LocalPipeline(work, broker.bootstrap, ledger_url, people, extra_env=group_env,
                             stall_s=args.stall_s)
    pipeline.brevo.bucket.limit = 10**9
    desk = DeskProbe(pipeline.desk_url)
    # `erasure up`'s loop: restart the children that exit or stall, and the broker when it dies.
    keeper = BrokerKeeper(broker, lambda bootstrap: ensure_topics(
        bootstrap, topics.all_topics(pipeline.system_ids), 4))
    supervising = threading.Event()
    supervision = threading.Thread(target=pipeline.supervisor.supervise,
                                   args=(supervising.is_set, 0.5, keeper), daemon=True, name="supervisor")
    publisher: Publisher | None = None
    watch: StartupWatch | None = None
    try:
        pipeline.start(desk=True)
        supervision.start()
        desk.start()
        watch = StartupWatch(pipeline, desk)
        watch.start()
        publish_s = args.requests / args.rate
        lanes = sorted(args.lanes or pipeline.processes)
        if unknown := set(lanes) - set(pipeline.processes):
            raise SystemExit(f"--lanes: no lane {sorted(unknown)}; lanes: {sorted(pipeline.processes)}")
        if args.broker_restarts and not broker.embedded:
            raise SystemExit("--broker-restarts needs the embedded broker: unset KAFKA_BOOTSTRAP_SERVERS")
        plan = schedule(rng, args.kills, lanes, publish_s)
        plan += schedule(rng, args.broker_restarts, ["broker"], publish_s)
        publisher = Publisher(pipeline, ledger_url, emails, args.requests, args.rate, rng)
        publisher.start()
        kills = inflict(pipeline, broker, sorted(plan), publisher.start_at)
        while len(publisher.published) < args.requests and publisher.is_alive():
            time.sleep(0.5)
        published = list(publisher.published)
        finished_at = wait_final(ledger_url, published, args.timeout_s)
        publisher.stopping.set()
        desk.stopping.set()
        watch.stopping.set()
        checks = [fault_checks.final_states(ledger_url, published),
                  fault_checks.exactly_once(ledger_url, published),
                  fault_checks.chain(ledger_url)]
        topic_check, outcomes = fault_checks.identities_in_topics(broker.bootstrap, emails)
        checks.append(topic_check)
        logs = sorted(pipeline.logs.glob("*.log")) + ([broker.log_path] if broker.log_path else [])
        checks.append(fault_checks.identities_in_logs(logs, emails))
        broker_kills = kills.pop("broker", [])
        lanes_report = lane_figures(pipeline, kills, outcomes, desk.answers, ledger_url, keeper.revived_at)
        if args.resume_limit_s is not None:
            checks.append(resume_check(lanes_report, args.resume_limit_s))
        return {
            "requests": len(published), "rate_per_s": args.rate, "kills": sum(map(len, kills.values())),
            "broker_restarts": args.broker_restarts, "seed": args.seed, "broker": broker.kind,
            "broker_back_after_s": [round(back - killed, 1) for killed, back
                                    in zip(broker_kills, keeper.revived_at, strict=False)],
            "republished": publisher.republished,
            "connectors": "group members" if args.group_lanes else "sole owners",
            "publish_s": round(publish_s, 1),
            "all_final_after_s": round(finished_at - publisher.start_at, 1),
            "supervisor_restarts": supervisor_restarts(pipeline.logs / "supervisor.log"),
            "lanes": lanes_report, "startup": watch.figures(), "load_average_1m": spread(watch.load_1m),
            "checks": [asdict(c) for c in checks],
            "passed": all(c.passed for c in checks), "work_dir": str(work),
        }
    finally:
        desk.stopping.set()
        if watch is not None:
            watch.stopping.set()
        if publisher is not None:
            publisher.stopping.set()
        supervising.set()
        supervision.join(10)
        pipeline.stop()
        broker.stop()


def resume_check(lanes: dict[str, dict[str, Any]], limit_s: float) -> fault_checks.Check:
    after = {lane: f["resume_after_last_kill_s"] for lane, f in lanes.items() if f["kills"]}
    late = {lane: s for lane, s in after.items() if s is None or s > limit_s}
    return fault_checks.Check(f"every lane resumed within {limit_s:.0f} s of its last kill", not late,
                              f"late: {late}" if late else "all lanes resumed in time")


def summary(result: dict[str, Any]) -> str:
    lines = [f"fault run: {result['requests']} requests at {result['rate_per_s']}/s, "
             f"{result['kills']} kills, {result['broker_restarts']} broker restarts "
             f"(back after {result['broker_back_after_s']} s; {result['republished']} republished) "
             f"(seed {result['seed']}, broker {result['broker']}, connectors as {result['connectors']}); "
             f"all final {result['all_final_after_s']} s after publishing began",
             f"supervisor restarts: {result['supervisor_restarts']}; "
             f"machine load average (1 min): {result['load_average_1m']}"]
    for lane, figures in result["lanes"].items():
        lines.append(f"  {lane:<20} kills {figures['kills']:>3}  next work after last kill "
                     f"{figures['resume_after_last_kill_s']} s, worst after any kill "
                     f"{figures['worst_resume_s']} s"
                     + (f", after the broker's returns {figures['resume_after_broker_return_s']} s"
                        if figures["resume_after_broker_return_s"] else ""))
    for lane, figures in result["startup"].items():
        lines.append(f"  {lane:<20} start-up over {figures['restarts_timed']} restarts "
                     f"({figures['killed_before_ready']} more killed before ready) (median, max): "
                     + ", ".join(f"{key} {figures[key]['median']}, {figures[key]['max']}"
                                 for key in ("first_line_s", "ready_s", "cpu_at_ready_s") if key in figures))
    for check in result["checks"]:
        lines.append(f"  [{'PASS' if check['passed'] else 'FAIL'}] {check['name']}: {check['detail']}")
    return "\n".join(lines)


def configure_logging(work: Path) -> None:
    (work / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(work / "logs" / "supervisor.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("pipeline.devstack.supervisor", "pipeline.devstack.broker", "faults"):
        logging.getLogger(name).addHandler(handler)
    # kafka-python logs every refused connection while the broker is down as an error; the renewing
    # producer's warnings say what matters (a send failed, sent again).
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="erasure-faults-"))
    configure_logging(work)
    result = run(args, work)
    print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
