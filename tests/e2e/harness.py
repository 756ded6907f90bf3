"""Running the local cloud and the openstack CLI from the e2e tests."""

import json
from pathlib import Path
import subprocess
import sys
import time

from discovery_nova.cloud import layout as layout_mod

POPS = 3
UP_TIMEOUT = 1200
CLI_TIMEOUT = 300
#: Each compute offers 4 vCPUs: a PoP of two computes is full after eight
#: one-vCPU servers, so overflow is quick to reach.
COMPUTE_SIZE = '4:4096'
OPENSTACK = str(Path(sys.executable).parent / 'openstack')


def cloud_command(state_dir: Path, *args: str,
                  timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """``discovery-nova cloud --state-dir STATE ARGS...``."""
    return subprocess.run(
        [sys.executable, '-m', 'discovery_nova.cloud', 'cloud',
         '--state-dir', str(state_dir)] + list(args),
        capture_output=True, text=True, timeout=timeout, check=False)


def free_base_port(pops: int = POPS) -> int:
    """A base port whose whole block is free on 127.0.0.1."""
    for base in range(26000, 60000, 500):
        layout = layout_mod.make_layout(pops, base)
        if not layout_mod.taken_ports(layout):
            return base
    raise RuntimeError('no free block of ports for the test cloud')


def run(cloud: dict, region: str, *args: str) -> subprocess.CompletedProcess:
    """The real ``openstack`` command against one PoP (region)."""
    return subprocess.run(
        [OPENSTACK, '--os-cloud', 'discovery', '--os-region-name', region]
        + list(args), capture_output=True, text=True, env=cloud['env'],
        timeout=CLI_TIMEOUT, check=False)


def ok(cloud: dict, region: str, *args: str) -> str:
    done = run(cloud, region, *args)
    assert done.returncode == 0, '%s: %s' % (' '.join(args), done.stderr)
    return done.stdout


def as_json(cloud: dict, region: str, *args: str):
    return json.loads(ok(cloud, region, *args, '-f', 'json'))


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    """Poll ``predicate`` until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError('timed out after %ds waiting for %s (last: %r)'
                         % (timeout, what, last))
