"""The whole monitoring loop on loopback, narrated: ``make monitoring-demo``.

Starts Prometheus, Alertmanager and the Pushgateway (Debian's binaries), the scoring service
and the retrain trigger, all on 127.0.0.1 with temporary data folders; trains a first
champion; sends normal traffic and runs the monitoring pipeline; then sends a drifted
population (whose labelled loans also become the newest training snapshot) with its
outcomes, runs the pipeline again, and follows the alert: pending -> firing -> delivered to
the trigger -> retraining started -> gate decision -> the new version serving. Each step is
printed with its time. Everything it started is stopped on exit, Ctrl-C included.

    credit-scoring monitoring-demo [--keep] [--workdir DIR] [--train-rows N] ...

The integration test (tests/integration/test_monitoring_loop.py) drives the same class with
smaller sizes and asserts on each step.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.processes import bentoml_serve, free_port
from credit_scoring.devtools.sandbox import make_project_copy, quick_training

MONITORING = PROJECT_ROOT / "monitoring"
BINARIES = ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway")
# The project's commands, run by this interpreter (a console script may not be on PATH)
CLI = [sys.executable, "-m", "credit_scoring.cli"]


@dataclass
class Sizes:
    train_rows: int = 6000  # the first and the drifted training snapshots
    normal_requests: int = 3000
    drifted_requests: int = 3000
    window: int = 3000  # monitoring.window.last_events
    cooldown_seconds: float = 3600.0


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


@dataclass
class Step:
    name: str
    seconds: float  # since the start of the demo
    detail: str = ""


@dataclass
class Demo:
    workdir: Path
    sizes: Sizes = field(default_factory=Sizes)
    say: Callable[[str], None] = print
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    first_drifted: float | None = None
    bento: str = ""

    # --- set-up -------------------------------------------------------------------------

    @property
    def project(self) -> Path:
        return self.workdir / "project"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.project / 'data/09_serving/serving.db'}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self, **extra: str) -> dict[str, str]:
        """What every child gets: the demo's own BentoML store, MLflow and database."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CREDIT_SCORING_"))
        }
        env.update(
            BENTOML_HOME=str(self.workdir / "bentoml"),
            BENTOML_DO_NOT_TRACK="True",
            DO_NOT_TRACK="1",
            KEDRO_DISABLE_TELEMETRY="1",
            CREDIT_SCORING_DATABASE_URL=self.database_url,
            CREDIT_SCORING_PUSHGATEWAY_URL=self.url("pushgateway")
            if "pushgateway" in self.ports
            else "",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def mark(self, name: str, detail: str = "") -> Step:
        step = Step(name, time.monotonic() - self.started, detail)
        self.steps.append(step)
        since = ""
        if self.first_drifted is not None:
            since = f" (+{time.monotonic() - self.first_drifted:5.0f} s after the first drifted request)"
        self.say(f"[{step.seconds:6.0f} s] {name}{since}{': ' + detail if detail else ''}")
        return step

    def run(self, command: list[str], what: str, timeout: float = 1800, **env: str) -> str:
        log = self.workdir / "logs" / f"{what}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            result = subprocess.run(
                command,
                cwd=self.project,
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} failed (exit {result.returncode}); end of {log}:\n{tail}")
        return log.read_text(errors="replace")

    def prepare_project(self) -> None:
        """A throw-away project: the template's conf/, small and quick training."""
        make_project_copy(self.project)
        quick_training(
            self.project, search={"timeout_s": 30}, explanations={"permutation_repeats": 1}
        )
        monitoring = self.project / "conf/base/parameters_monitoring.yml"
        params = yaml.safe_load(monitoring.read_text())
        params["monitoring"]["window"]["last_events"] = self.sizes.window
        monitoring.write_text(yaml.safe_dump(params, sort_keys=False))

    def generate(self, drift: bool, seed: int) -> None:
        command = [*CLI, "generate-data", "--n-applications", str(self.sizes.train_rows)]
        command += ["--seed", str(seed), "--output-dir", str(self.project / "data/01_raw")]
        self.run(
            [*command, *(["--drift"] if drift else [])],
            f"generate-{'drifted' if drift else 'normal'}",
        )

    def train(self) -> None:
        self.run([sys.executable, "-m", "kedro", "run"], "train")

    def build(self) -> str:
        out = self.run(
            [*CLI, "build", "--project", str(self.project)],
            "build",  # UV (how to call uv, for the bento's locked requirements) is inherited
        )
        return out.strip().splitlines()[-1]

    # --- servers ------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            cwd=self.project,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def wait_http(self, name: str, path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                log = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url(name) + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{name} did not answer {path} within {timeout:.0f} s")

    def write_configs(self) -> dict[str, Path]:
        """The template's monitoring/ configuration with this demo's ports, a 5 s scrape and
        evaluation interval, and the trigger's token in a file: the rules are the real ones."""
        folder = self.workdir / "config"
        (folder / "rules").mkdir(parents=True, exist_ok=True)
        for rules in (MONITORING / "prometheus/rules").glob("*.yml"):
            shutil.copy(rules, folder / "rules" / rules.name)
        prometheus = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
        prometheus["global"].update(scrape_interval="5s", evaluation_interval="5s")
        prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            f"127.0.0.1:{self.ports['alertmanager']}"
        ]
        targets = {
            "credit_scoring": "service",
            "retrain_trigger": "trigger",
            "pushgateway": "pushgateway",
        }
        for job in prometheus["scrape_configs"]:
            job["static_configs"][0]["targets"] = [
                f"127.0.0.1:{self.ports[targets[job['job_name']]]}"
            ]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus, sort_keys=False))
        token_file = folder / "retrain-trigger-token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        alertmanager = yaml.safe_load((MONITORING / "alertmanager/alertmanager.yml").read_text())
        for receiver in alertmanager["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                if hook["url"].endswith("/alerts"):
                    hook["url"] = self.url("trigger") + "/alerts"
                    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                else:
                    hook["url"] = self.url("notifications") + "/notify"
        (folder / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager, sort_keys=False))
        return {
            "prometheus": folder / "prometheus.yml",
            "alertmanager": folder / "alertmanager.yml",
        }

    def start_monitoring_servers(self) -> None:
        for name in (
            "prometheus",
            "alertmanager",
            "pushgateway",
            "trigger",
            "service",
            "notifications",
        ):
            self.ports.setdefault(name, free_port())
        configs = self.write_configs()
        data = self.workdir / "data"
        self.spawn(
            "pushgateway",
            [
                "prometheus-pushgateway",
                f"--web.listen-address=127.0.0.1:{self.ports['pushgateway']}",
                # its own file: Debian's default (/var/lib/prometheus/pushgateway.data) is shared
                # by every Pushgateway started on the machine, and would bring back old numbers
                f"--persistence.file={data / 'pushgateway.data'}",
            ],
        )
        self.spawn(
            "alertmanager",
            [
                "prometheus-alertmanager",
                f"--config.file={configs['alertmanager']}",
                f"--storage.path={data / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
        )
        self.spawn(
            "prometheus",
            [
                "prometheus",
                f"--config.file={configs['prometheus']}",
                f"--storage.tsdb.path={data / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
            ],
        )
        self.spawn(
            "trigger",
            [*CLI, "trigger", "--port", str(self.ports["trigger"])],
            CREDIT_SCORING_TRIGGER_TOKEN=self.token,
            CREDIT_SCORING_TRIGGER_PROJECT_DIR=str(self.project),
            CREDIT_SCORING_TRIGGER_COOLDOWN_SECONDS=str(self.sizes.cooldown_seconds),
        )
        for name, path in (
            ("pushgateway", "/-/ready"),
            ("alertmanager", "/-/ready"),
            ("prometheus", "/-/ready"),
            ("trigger", "/healthz"),
        ):
            self.wait_http(name, path)

    def start_service(self, bento: str) -> None:
        self.bento = bento
        self.spawn(
            "service",
            bentoml_serve(bento, self.ports["service"]),
        )
        self.wait_http("service", "/readyz")

    def stop(self, name: str, timeout: float = 60) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of its group is left (shippers)

    def stop_all(self) -> None:
        # the service first (its shippers flush the last events), the trigger last
        order = ["service", "prometheus", "alertmanager", "pushgateway", "trigger"]
        for name in sorted(self.processes, key=lambda n: order.index(n) if n in order else 0):
            self.stop(name)

    # --- the loop -----------------------------------------------------------------------

    def traffic(self, requests: int, drift: bool, seed: int) -> str:
        command = [*CLI, "simulate", "--project", str(self.project)]
        command += [
            "traffic",
            "--url",
            self.url("service"),
            "--requests",
            str(requests),
            "--seed",
            str(seed),
        ]
        out = self.run(
            [*command, *(["--drift"] if drift else [])],
            f"traffic-{'drifted' if drift else 'normal'}",
        )
        return out.strip().splitlines()[-1]

    def outcomes(self) -> str:
        command = [*CLI, "simulate", "--project", str(self.project), "outcomes"]
        return self.run(command, "outcomes").strip().splitlines()[-1]

    def monitor(self) -> dict[str, Any]:
        self.run([sys.executable, "-m", "kedro", "run", "--pipelines", "monitoring"], "monitor")
        folder = self.project / "data/08_reporting/monitoring/summary.json"
        newest = max(folder.iterdir(), key=lambda p: p.name)
        return json.loads((newest / "summary.json").read_text())

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(
            self.url("prometheus") + "/api/v1/query", params={"query": expr}, timeout=10
        )
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"PromQL {expr!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def alert_state(self, name: str) -> str | None:
        alerts = httpx.get(self.url("prometheus") + "/api/v1/alerts", timeout=10).json()["data"][
            "alerts"
        ]
        states = {a["state"] for a in alerts if a["labels"].get("alertname") == name}
        return "firing" if "firing" in states else ("pending" if "pending" in states else None)

    def _read(self, what: str) -> list[dict[str, Any]]:
        from credit_scoring.monitoring.decisions import DecisionStore

        store = DecisionStore(self.database_url)
        try:
            return list(getattr(store, what)())
        finally:
            store.close()

    def decisions(self) -> list[dict[str, Any]]:
        """The retrain trigger's decisions, oldest first."""
        return self._read("decisions")

    def runs(self) -> list[dict[str, Any]]:
        """The retraining runs the local backend recorded."""
        return self._read("runs")

    def serving_version(self) -> str | None:
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(self.url("service") + "/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith("credit_scoring_model_info{"):
                    return line.split('model_version="')[1].split('"')[0]
        return None

    def wait(self, what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{what}: not within {timeout:.0f} s")

    def setup(self) -> None:
        self.prepare_project()
        self.mark("project", f"throw-away project in {self.project}")
        self.generate(drift=False, seed=42)
        self.train()
        self.mark("trained", "first champion (v1) registered in the project's MLflow")
        bento = self.build()
        self.mark("packaged", f"bento {bento}")
        self.start_monitoring_servers()
        self.start_service(bento)
        self.mark(
            "servers up",
            ", ".join(
                f"{n} {self.url(n)}"
                for n in ("service", "trigger", "prometheus", "alertmanager", "pushgateway")
            ),
        )

    def normal_phase(self) -> dict[str, Any]:
        self.mark("normal traffic", self.traffic(self.sizes.normal_requests, drift=False, seed=101))
        summary = self.monitor()
        drift = summary.get("drift") or {}
        self.mark(
            "monitoring run 1",
            f"{summary['window']['events']} events, dataset drift: {drift.get('dataset_drift')}, "
            f"share {drift.get('drift_share', 0):.2f}, pushed: {summary.get('pushed')}",
        )
        return summary

    def drift_phase(self) -> dict[str, Any]:
        self.first_drifted = time.monotonic()
        self.mark(
            "drifted traffic", self.traffic(self.sizes.drifted_requests, drift=True, seed=202)
        )
        self.mark("outcomes", self.outcomes())
        # the loans of the drifted population, now labelled, are the newest training snapshot
        self.generate(drift=True, seed=303)
        self.mark(
            "new data snapshot",
            f"{self.sizes.train_rows} labelled drifted applications in data/01_raw",
        )
        summary = self.monitor()
        drift = summary.get("drift") or {}
        perf = summary.get("performance") or {}
        self.mark(
            "monitoring run 2",
            f"dataset drift: {drift.get('dataset_drift')}, share {drift.get('drift_share', 0):.2f}, "
            f"score drift {(drift.get('score') or {}).get('value', 0):.3f}; labelled AUC "
            f"{perf.get('auc', float('nan')):.3f} vs test {summary['reference_metrics'].get('auc', float('nan')):.3f}",
        )
        return summary

    def follow_alert(self, alertname: str = "CreditScoringDatasetDrift") -> dict[str, Any]:
        self.wait(f"{alertname} pending", lambda: self.alert_state(alertname), 120)
        self.mark("alert pending", alertname)
        self.wait(f"{alertname} firing", lambda: self.alert_state(alertname) == "firing", 180)
        self.mark("alert firing", alertname)
        return {}

    def follow_retraining(self, timeout: float = 900) -> dict[str, Any]:
        started = self.wait(
            "delivered to the trigger",
            lambda: [d for d in self.decisions() if d["decision"] == "started"],
            240,
        )[0]
        self.mark("delivered", f"trigger decision 'started' ({started['alertnames']})")
        run = self.wait("retraining started", lambda: self.runs(), 60)[0]
        self.mark("retraining started", f"retrain {run['retrain_id']} ({run['backend']})")
        run = self.wait(
            "gate decision",
            lambda: [r for r in self.runs() if r["status"] != "started"],
            timeout,
            2,
        )[0]
        if run["status"] != "succeeded":
            raise RuntimeError(
                f"the retraining failed: {run['detail']}; see {self.project / 'logs'}"
            )
        self.mark("gate decision", run["detail"])
        if run["gate_decision"] == "promoted":
            bento = self.build()
            self.mark("packaged", f"bento {bento} (v{run['model_version']})")
            self.stop("service")
            self.start_service(bento)
            self.wait(
                "new version serving", lambda: self.serving_version() == run["model_version"], 120
            )
            self.mark(
                "new version serving", f"v{run['model_version']} answers on {self.url('service')}"
            )
        return run

    def since_first_drifted(self) -> float | None:
        """The demo's clock (seconds since its start) when the first drifted request left."""
        return None if self.first_drifted is None else self.first_drifted - self.started

    def report(self) -> str:
        lines = ["", "Step                      time   since the first drifted request"]
        origin = self.since_first_drifted()
        for step in self.steps:
            since = (
                f"{step.seconds - origin:8.0f} s"
                if origin is not None and step.seconds >= origin
                else ""
            )
            lines.append(f"{step.name:<24}{step.seconds:6.0f} s {since}")
        return "\n".join(lines)


@contextlib.contextmanager
def running(demo: Demo) -> Iterator[Demo]:
    """Stop everything the demo started, on exit, on an error and on Ctrl-C or SIGTERM."""

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield demo
    finally:
        demo.stop_all()
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    workdir: Path | None = None,
    keep: bool = False,
    train_rows: int = Sizes.train_rows,
    requests: int = Sizes.normal_requests,
) -> int:
    """Run the whole loop in ``workdir`` (default: a temporary folder, removed after a
    success unless ``keep``), ``requests`` per phase. Returns the exit code."""
    missing = missing_binaries()
    if missing:
        print(
            f"Missing: {', '.join(missing)}. Install Debian's packages: apt-get install prometheus "
            "prometheus-alertmanager prometheus-pushgateway",
            file=sys.stderr,
        )
        return 2
    workdir = workdir or Path(tempfile.mkdtemp(prefix="credit-scoring-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(
        train_rows=train_rows,
        normal_requests=requests,
        drifted_requests=requests,
        window=requests,
    )
    demo = Demo(workdir, sizes)
    print(f"Monitoring demo in {workdir} (logs in {workdir / 'logs'}); Ctrl-C stops everything.")
    code = 0
    try:
        with running(demo):
            demo.setup()
            demo.normal_phase()
            demo.drift_phase()
            demo.follow_alert()
            demo.follow_retraining()
            print(demo.report())
    except KeyboardInterrupt:
        print("\nInterrupted: everything the demo started is stopped.")
        code = 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nThe demo stopped: {exc}", file=sys.stderr)
        code = 1
    finally:
        if not keep and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Logs and data kept in {workdir}")
    return code
