"""`pulse run` under faults, as the restart and cluster tests drive it: start it on a private stack, watch its
stages and its progress, stop it, and check what it delivered and computed against the topic."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from pulse.cli.run_cmd import GENERATE_SUMMARY
from pulse.generate.summary import read_summaries
from pulse.polling import WaitFailed, poll_until
from tests.names import unique
from tests.realworld.plain import count_records
from tests.realworld.private_stack import PrivateStack, free_port


def children(pid: int) -> dict[str, int]:
    """The pulse stages `pulse run` started, by verb."""
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        child, args = line.strip().split(" ", 1)
        verb = re.search(r"-m pulse (\w+)", args)
        if verb:
            found[verb.group(1)] = int(child)
    return found


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    poll_until(check, timeout, what, every_s=1)


@dataclass
class Run:
    """One `pulse run --keep-stack` and its private names."""

    stack: PrivateStack
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    url: str
    log_file: Path
    summaries_before: int  # generator summaries in the stack's log from earlier runs

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stage_log(self, stage: str, lines: int = 40) -> str:
        """The last lines a stage logged (for a failure's message: the stack and its logs go with the test)."""
        path = self.stack.settings.home / "logs" / f"{stage}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stages_unchanged(self, stages: dict[str, int]) -> None:
        """Every stage is the process it was: none died and had to be restarted."""
        now = children(self.proc.pid)
        changed = [stage for stage, pid in stages.items() if now.get(stage) != pid]
        assert not changed, "\n".join([f"restarted: {changed}", self.log()[-1500:],
                                        *(f"== {s}.log\n{self.stage_log(s)}" for s in changed)])

    def accepted(self) -> int:
        """Input records the aggregator has accepted so far, as the dashboard reports them."""
        try:
            return int(httpx.get(f"{self.url}/api/health", timeout=5).json().get("accepted") or 0)
        except (httpx.HTTPError, ValueError):
            return 0

    def progresses(self, by: int, timeout: float, what: str) -> None:
        """Wait until the aggregator accepts ``by`` more records."""
        before = self.accepted()
        try:
            wait(lambda: self.accepted() > before + by, timeout, what)
        except WaitFailed as exc:
            logs = "".join(f"\n== {stage}.log\n{self.stage_log(stage, 60)}" for stage in ("aggregate", "store"))
            raise AssertionError(f"{exc} (accepted {before:,}, then {self.accepted():,}){logs}") from None

    def pulse_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("PULSE_")}


@contextmanager
def pulse_run(stack: PrivateStack, tmp_path: Path, prefix: str, rate: int, **extra: str) -> Iterator[Run]:
    """`pulse run` on ``stack`` with its own topic, group and indices, stopped with Ctrl-C at the end (which
    must exit 0)."""
    tag = unique(prefix)
    port = free_port()
    env = stack.env | {"PULSE_TOPIC": tag, "PULSE_GROUP": tag, "PULSE_INDEX_PREFIX": tag.replace("-", ""),
                       "PULSE_DASHBOARD_PORT": str(port), "PULSE_COLLECT_PORT": str(free_port()),
                       "PULSE_GEN_RATE": str(rate)} | extra
    log_file = tmp_path / "run.log"
    before = len(_summaries(stack))
    with log_file.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pulse", "run", "--keep-stack"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    run = Run(stack, env, proc, f"http://127.0.0.1:{port}", log_file, before)
    try:
        yield run
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(120)
    assert code == 0, run.log()[-3000:]


def _summaries(stack: PrivateStack) -> list[dict[str, object]]:
    return read_summaries(stack.settings.home / "logs" / GENERATE_SUMMARY)


def assert_delivered_and_exact(run: Run) -> None:
    """What the generator counted as delivered is exactly what the topic holds, and once the stages have
    drained what the last flush published, `pulse verify` finds every number exact."""
    runs = _summaries(run.stack)[run.summaries_before:]
    delivered, produced = (sum(int(r[n]) for r in runs) for n in ("delivered", "produced"))  # type: ignore[call-overload]
    assert delivered == produced > 0, runs
    held = count_records(run.stack.env["PULSE_BOOTSTRAP"], run.env["PULSE_TOPIC"], run.stack.kafka_client)
    assert held == delivered, (f"the topic holds {held:,} records, the generator counted {delivered:,} delivered",
                               runs, run.stage_log("generate", 30))
    for verb in ("aggregate", "store"):
        drained = run.stack.pulse(verb, "--exit-when-idle", "2", **run.pulse_env())
        assert drained.returncode == 0, drained.stderr[-2000:]
    verify = run.stack.pulse("verify", **run.pulse_env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
