"""The tempest plugin, run by tempest against the session's 3-PoP cloud.

This is what an operator does: ``tempest init`` a workspace, write its
tempest.conf for the cloud (keystone, admin credentials for dynamic
credentials, the entry PoP as the compute region, the discovery-tiny image
and the dn.small flavor, no networking) and ``tempest run --regex
discovery``. ``[discovery] far_pop`` is left unset so that the plugin reads
it from the entry PoP's aggregates, as it does on a cloud it knows nothing
about.
"""

import configparser
from pathlib import Path
import re
import subprocess
import sys

import pytest

from tests.e2e import harness

pytestmark = pytest.mark.functional

TEMPEST = str(Path(sys.executable).parent / 'tempest')
RUN_TIMEOUT = 3600
#: Every test of the plugin, by module and class; all must pass.
EXPECTED = (
    'api.test_locality_hints.LocalityHintsTest.'
    'test_near_hint_builds_the_server_at_that_pop',
    'api.test_locality_hints.LocalityHintsTest.'
    'test_delete_at_the_entry_pop_deletes_it_where_it_runs',
    'api.test_locality_hints_negative.LocalityHintsNegativeTest.'
    'test_max_rtt_ms_not_a_number',
    'api.test_locality_hints_negative.LocalityHintsNegativeTest.'
    'test_pop_that_does_not_exist',
    'scenario.test_overflow.PopOverflowTest.'
    'test_full_pop_overflows_and_the_server_stays_visible',
)
PREFIX = 'discovery_nova.tests.tempest.'


def tempest_conf(cloud: dict, entry: str) -> dict[str, dict[str, str]]:
    """tempest.conf for the cloud, by section."""
    settings = cloud['settings']
    image = harness.as_json(cloud, entry, 'image', 'show', 'discovery-tiny')
    flavor = harness.as_json(cloud, entry, 'flavor', 'show', 'dn.small')
    return {
        'auth': {
            'use_dynamic_credentials': 'true',
            'admin_username': 'admin',
            'admin_password': settings.admin_password,
            'admin_project_name': 'admin',
            'admin_domain_name': 'Default',
        },
        'identity': {
            'uri_v3': settings.keystone_url,
            'auth_version': 'v3',
            'region': entry,
            'v3_endpoint_type': 'public',
        },
        'identity-feature-enabled': {'api_v2': 'false'},
        'compute': {
            'region': entry,
            'endpoint_type': 'publicURL',
            'image_ref': image['id'],
            'flavor_ref': flavor['id'],
            'fixed_network_name': '',
            'max_microversion': 'latest',
            'build_timeout': '600',
            'build_interval': '2',
        },
        'placement': {'region': entry, 'endpoint_type': 'public'},
        'validation': {'run_validation': 'false'},
        'service_available': {
            'nova': 'true', 'glance': 'true', 'neutron': 'false',
            'cinder': 'false', 'swift': 'false', 'discovery': 'true',
        },
        'discovery': {
            'pops': ','.join(cloud['regions']),
            'entry_pop': entry,
            'forward_timeout': '300',
        },
    }


def write_workspace(cloud: dict, where: Path, entry: str) -> Path:
    """``tempest init`` a workspace and write its etc/tempest.conf."""
    workspace = where / 'tempest'
    done = subprocess.run(
        [TEMPEST, 'init', '--workspace-path',
         str(where / 'workspaces.yaml'), str(workspace)],
        capture_output=True, text=True, timeout=harness.CLI_TIMEOUT,
        check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    path = workspace / 'etc' / 'tempest.conf'
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(path)
    for section, values in tempest_conf(cloud, entry).items():
        if not conf.has_section(section):
            conf.add_section(section)
        for key, value in values.items():
            conf.set(section, key, value)
    with open(path, 'w') as out:
        conf.write(out)
    return workspace


def conductor_log_tails(cloud: dict, lines: int = 40) -> str:
    """The end of each PoP's conductor log, to explain a failure."""
    tails = []
    for region in cloud['regions']:
        log = cloud['state_dir'] / 'logs' / ('%s.nova-conductor.log'
                                             % region)
        if log.exists():
            text = log.read_text(errors='replace').splitlines()[-lines:]
            tails.append('--- %s\n%s' % (log.name, '\n'.join(text)))
    return '\n'.join(tails)


def servers_left(cloud: dict) -> dict[str, list[str]]:
    """Servers of any project still at each PoP."""
    left = {}
    for region in cloud['regions']:
        names = [s['Name'] for s in harness.as_json(
            cloud, region, 'server', 'list', '--all-projects')]
        if names:
            left[region] = names
    return left


@pytest.fixture(scope='module')
def tempest_run(cloud, tmp_path_factory):
    entry = cloud['regions'][0]
    before = servers_left(cloud)
    workspace = write_workspace(cloud, tmp_path_factory.mktemp('tempest'),
                                entry)
    done = subprocess.run(
        [TEMPEST, 'run', '--regex', 'discovery', '--serial'],
        cwd=workspace, capture_output=True, text=True,
        timeout=RUN_TIMEOUT, check=False)
    log = (workspace / 'logs' / 'tempest.log')
    return {'done': done, 'entry': entry, 'before': before,
            'log': log.read_text(errors='replace') if log.exists() else ''}


def _explain(cloud, run) -> str:
    return '%s\n%s\n%s' % (run['done'].stdout[-6000:],
                           run['done'].stderr[-3000:],
                           conductor_log_tails(cloud))


def _results(out: str) -> dict[str, str]:
    """Test id -> ok/FAILED/SKIPPED from tempest run's per-test lines."""
    return dict(re.findall(
        r'^\{\d+\} ([\w.]+)(?:\[[^\]]*\])? \[[\d.]+s\] \.\.\. '
        r'(ok|FAILED|SKIPPED)', out, re.MULTILINE))


def test_every_discovery_test_passes(cloud, tempest_run):
    done = tempest_run['done']
    assert done.returncode == 0, _explain(cloud, tempest_run)
    results = _results(done.stdout)
    ours = {test[len(PREFIX):]: status for test, status in results.items()
            if test.startswith(PREFIX)}
    assert ours == dict.fromkeys(EXPECTED, 'ok'), _explain(cloud,
                                                           tempest_run)
    # The regex also selects tempest's own identity API discovery tests.
    others = set(results) - {PREFIX + test for test in EXPECTED}
    assert all(t.startswith('tempest.api.identity.') for t in others), (
        others)
    totals = {key: int(value) for key, value in re.findall(
        r'- (Passed|Failed|Skipped): (\d+)', done.stdout)}
    assert totals == {'Passed': len(results), 'Failed': 0,
                      'Skipped': 0}, done.stdout[-3000:]
    print('\n' + '\n'.join(line for line in done.stdout.splitlines()
                            if PREFIX in line or line.startswith('Ran: ')))


def test_far_pop_is_read_from_the_entry_pops_aggregates(cloud,
                                                        tempest_run):
    entry = tempest_run['entry']
    found = set(re.findall(r'PoPs: entry (\S+), far (\S+),',
                           tempest_run['log']))
    assert len(found) == 1, found
    (said_entry, far), = found
    assert said_entry == entry
    assert far in cloud['regions'] and far != entry


#: Seconds for a delete made at the origin to reach the PoP where a
#: forwarded server ran (the origin's next record pass carries it there).
DELETE_SPREAD_TIMEOUT = 120


def test_no_server_is_left_behind(cloud, tempest_run):
    # Tempest waits for its servers to be gone at the PoP it asked; the
    # copies of forwarded ones go at their PoP a record pass later.
    before = tempest_run['before']
    seen = {}

    def only_those_before():
        seen['left'] = servers_left(cloud)
        return seen['left'] == before

    try:
        harness.wait_for(only_those_before, DELETE_SPREAD_TIMEOUT,
                         'the servers tempest deleted to be gone at every '
                         'PoP')
    except AssertionError as exc:
        why = '%s; servers before the run: %s, at the end: %s\n%s' % (
            exc, before, seen.get('left'), conductor_log_tails(cloud))
        raise AssertionError(why) from None
