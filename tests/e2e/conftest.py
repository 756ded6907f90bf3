"""One local 3-PoP cloud for every end-to-end module of the session.

Brought up once (``discovery-nova cloud up``: p2p messaging, our conductor
in place of nova-conductor, sqlite) with its own state directory and
ports, and always brought down; bringing it up is most of the cost of
these tests.
"""

import os
import time

import pytest

from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import Supervisor
from discovery_nova.cloud.supervisor import group_members
from tests.e2e import harness


@pytest.fixture(scope='session')
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp('cloud')
    base = harness.free_base_port()
    started = time.monotonic()
    done = harness.cloud_command(
        state_dir, 'up', '--pops', str(harness.POPS), '--base-port',
        str(base), '--database', 'sqlite', '--transport', 'p2p',
        '--conductor', 'discovery', '--compute-size', harness.COMPUTE_SIZE,
        '--clouds-yaml', 'none', timeout=harness.UP_TIMEOUT)
    up_seconds = time.monotonic() - started
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        settings = CloudSettings.load(state_dir)
        env = dict(os.environ,
                   OS_CLIENT_CONFIG_FILE=str(state_dir / 'clouds.yaml'))
        yield {'state_dir': state_dir, 'settings': settings, 'env': env,
               'regions': [pop.name for pop in settings.layout.pops],
               'up_seconds': up_seconds, 'up_output': done.stdout}
    finally:
        records = Supervisor(state_dir / 'run', state_dir / 'logs').records()
        down = harness.cloud_command(state_dir, 'down')
        left = [r.name for r in records.values() if group_members(r.pid)]
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, 'still running after down: %s' % left
        assert not list((state_dir / 'run').glob('*.pid'))
