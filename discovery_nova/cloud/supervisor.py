"""Start, find and stop the processes of a local cloud.

Each service runs in its own session (so its own process group) with its
output in ``logs/<name>.log`` and its pid in ``run/<name>.pid``. A pid file
also records the process start time, so a pid reused by an unrelated
process after a reboot or a crash is never mistaken for ours (and never
signalled). Stopping signals whole process groups: helpers that a service
forked die with it.
"""

import dataclasses
import json
import os
from pathlib import Path
import signal
import time

from oslo_log import log as logging

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class ServiceSpec:
    """How to run one service of the cloud."""

    name: str
    argv: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    pop: str | None = None
    kind: str = ''
    port: int | None = None
    health_url: str | None = None
    nova_binary: str | None = None
    nova_host: str | None = None

    @property
    def file_stem(self) -> str:
        return self.name.replace('/', '.')


@dataclasses.dataclass
class ProcessRecord:
    """A started service: enough to find and stop it later."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot."""
    try:
        with open('/proc/%d/stat' % pid) as src:
            stat = src.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; it ends at the last ')'.
    fields = stat[stat.rindex(')') + 2:].split()
    if fields[0] == 'Z':
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """The recorded process still runs (and is the one we started)."""
    return _start_ticks(record.pid) == record.start_ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as src:
                stat = src.read()
        except OSError:
            continue
        fields = stat[stat.rindex(')') + 2:].split()
        if fields[0] != 'Z' and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class Supervisor:
    """The processes of one cloud, tracked through its run directory."""

    def __init__(self, run_dir: Path, log_dir: Path):
        self.run_dir = Path(run_dir)
        self.log_dir = Path(log_dir)

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / ('%s.pid' % name.replace('/', '.'))

    def start(self, spec: ServiceSpec) -> ProcessRecord:
        """Start ``spec`` detached from us, in a new session."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / ('%s.log' % spec.file_stem)
        env = dict(os.environ)
        env.update(spec.env)
        # posix_spawn, not Popen: the service outlives this command, so
        # there is nothing to wait for and no Popen to leave behind. The
        # new session makes the service the leader of its own group.
        pid = os.posix_spawn(
            spec.argv[0], spec.argv, env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True)
        ticks = _start_ticks(pid)
        record = ProcessRecord(name=spec.name, pid=pid,
                               start_ticks=ticks if ticks is not None else -1,
                               argv=list(spec.argv), log=str(log_path))
        tmp = self._pid_file(spec.name).with_suffix('.tmp')
        tmp.write_text(json.dumps(dataclasses.asdict(record)))
        os.replace(tmp, self._pid_file(spec.name))
        LOG.debug("started %(name)s as pid %(pid)d",
                  {'name': spec.name, 'pid': pid})
        return record

    def records(self) -> dict[str, ProcessRecord]:
        """Every service with a pid file, alive or not."""
        found = {}
        if not self.run_dir.exists():
            return found
        for path in sorted(self.run_dir.glob('*.pid')):
            try:
                record = ProcessRecord(**json.loads(path.read_text()))
            except (ValueError, TypeError) as exc:
                LOG.warning("ignoring unreadable pid file %(path)s: %(err)s",
                            {'path': path, 'err': exc})
                continue
            found[record.name] = record
        return found

    def alive(self) -> dict[str, ProcessRecord]:
        return {name: record for name, record in self.records().items()
                if is_alive(record)}

    def stop_all(self, timeout: float = 20.0) -> list[str]:
        """Stop every service; see :meth:`stop`."""
        return self.stop(None, timeout)

    def stop(self, names: list[str] | None, timeout: float = 20.0,
             kill: bool = False) -> list[str]:
        """SIGTERM the services' process groups, SIGKILL what outlives
        ``timeout`` (or SIGKILL at once with ``kill``, as a crash would).

        ``names`` None means every service. Returns the names of services
        that had to be killed. Pid files go once their group is gone.
        """
        records = self.records()
        if names is not None:
            records = {n: r for n, r in records.items() if n in names}
        groups = {}
        first = signal.SIGKILL if kill else signal.SIGTERM
        for name, record in records.items():
            if is_alive(record):
                groups[name] = record.pid
                self._signal_group(record.pid, first)
        deadline = time.monotonic() + (0 if kill else timeout)
        while time.monotonic() < deadline:
            if not any(group_members(pgid) for pgid in groups.values()):
                break
            time.sleep(0.2)
        killed = []
        for name, pgid in groups.items():
            if group_members(pgid):
                if not kill:
                    killed.append(name)
                self._signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                group_members(pgid) for pgid in groups.values()):
            time.sleep(0.1)
        for name in records:
            self._pid_file(name).unlink(missing_ok=True)
        return killed

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
