"""A supervisor for the chaos suite: keeps copies of ``segstream serve`` running, restarts any
that exits (as systemd or Kubernetes would, after a short back-off) and counts the exits."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field

from tests.support.service import Service


@dataclass
class Tally:
    kills: int = 0  # kill -9 sent by the test
    exits: list[int] = field(default_factory=list)  # exit codes of the processes we did not kill
    added: int = 0
    removed: int = 0
    restarts: int = 0  # processes the supervisor started again


class Supervisor:
    def __init__(
        self, service: Service, count: int, restart_after_s: float = 0.5, **env: str
    ) -> None:
        self.service, self.env, self.restart_after_s = service, env, restart_after_s
        self.tally = Tally()
        self.started = 0
        self.copies: list[Service] = []
        self.down_since: dict[int, float] = {}  # copy index -> when it was seen dead
        for _ in range(count):
            self.copies.append(self._start())

    def _start(self) -> Service:
        copy = Service.__new__(Service)
        copy.__dict__.update(self.service.__dict__)
        self.started += 1
        copy.runs = self.started
        copy.start(**self.env)
        return copy

    def wait_balanced(self, partitions: int, timeout_s: float = 120) -> None:
        """Until every copy owns some of the ``partitions`` and together they own them all (by
        their logs' assigned and revoked lines): a stream produced before then may be consumed
        whole by the first copy to join, while another holds the trainer lease."""
        deadline = time.monotonic() + timeout_s
        while True:
            owned = [_owned(copy.log()) for copy in self.copies]
            if all(owned) and sum(len(o) for o in owned) == partitions:
                return
            assert time.monotonic() < deadline, f"partitions not balanced: {owned}"
            time.sleep(0.2)

    def watch(self) -> None:
        """Restart the copies that exited (and were not removed)."""
        now = time.monotonic()
        for index, copy in enumerate(self.copies):
            assert copy.process is not None
            if copy.process.poll() is None:
                continue
            if index not in self.down_since:
                self.down_since[index] = now
                if copy.process.returncode != -9:
                    self.tally.exits.append(copy.process.returncode)
                    print(f"[supervisor] exit {copy.process.returncode}:\n{copy.log()[-2000:]}")
            if now - self.down_since[index] >= self.restart_after_s:
                del self.down_since[index]
                self.copies[index] = self._start()
                self.tally.restarts += 1

    def kill_one(self, rng: random.Random) -> None:
        """kill -9 a running copy chosen at random."""
        running = [c for c in self.copies if c.process and c.process.poll() is None]
        if running:
            rng.choice(running).kill()
            self.tally.kills += 1

    def add(self) -> None:
        self.copies.append(self._start())
        self.tally.added += 1

    def remove(self) -> None:
        """Stop the newest copy gracefully (SIGTERM): a scale-down."""
        copy = self.copies.pop()
        self.down_since.pop(len(self.copies), None)
        copy.terminate()
        self.tally.removed += 1

    def logs(self) -> str:
        """The tails of the running copies' logs."""
        return "\n".join(f"--- {c.log_path.name}\n{c.log()[-3000:]}" for c in self.copies)

    def stop(self) -> list[int]:
        """SIGTERM every running copy once it is serving (a signal during the imports would
        just end the interpreter); their exit codes. A copy that is down already (killed by the
        test near the end, before its restart was due) is not started again; an exit of its
        own is counted in the tally as ``watch`` would."""
        running = []
        for index, copy in enumerate(self.copies):
            assert copy.process is not None
            code = copy.process.poll()
            if code is None:
                running.append(copy)
            elif code != -9 and index not in self.down_since:
                self.tally.exits.append(code)
        for copy in running:
            copy.http_port(timeout_s=60)
        return [copy.terminate() for copy in running]

    def kill_all(self) -> None:
        for copy in self.copies:
            if copy.process is not None and copy.process.poll() is None:
                copy.kill()


_REBALANCE = re.compile(r"(assigned|revoked) \[([^\]]*)\]")


def _owned(log: str) -> set[str]:
    """The partitions a copy owns, by the rebalance lines of its log."""
    owned: set[str] = set()
    for action, names in _REBALANCE.findall(log):
        found = set(re.findall(r"'([^']+)'", names))
        owned = owned | found if action == "assigned" else owned - found
    return owned
