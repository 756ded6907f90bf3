"""What the conductor records about forwarded builds (no database)."""

import math

from nova import objects
import pytest

from discovery_nova.conductor import candidates
from discovery_nova.conductor import records
from discovery_nova.conductor.portable import portable

objects.register_all()

UUID = '4b1f1e2a-8c51-4a36-9d64-6e0a3f1c2b7d'


def _candidate(pop, local=False, rtt=42.0):
    return candidates.Candidate(pop, rtt, 0.1, local,
                                0.0 if local else rtt)


def test_action_names_say_where_and_how_far():
    assert records.Attempt(_candidate('par', local=True), False, 'x'
                           ).action_name() == 'schedule at par (this PoP)'
    assert records.Attempt(_candidate('nyc'), True, ''
                           ).action_name() == 'forward to nyc (~42 ms away)'
    far = candidates.Candidate('sjc', math.inf, math.inf, False)
    assert records.Attempt(far, False, '').action_name() == \
        'forward to sjc (RTT unknown)'


def test_summary_lists_every_pop_and_its_answer():
    plan = candidates.Plan((), 'entry PoP par')
    attempts = [records.Attempt(_candidate('par', local=True), False,
                                'No valid host was found.'),
                records.Attempt(_candidate('nyc'), False,
                                'no answer within 60 s')]
    text = records.summary(plan, attempts)
    assert text.startswith('No PoP could place the server; tried 2 '
                           '(nearest first from entry PoP par)')
    assert 'par (this PoP): No valid host was found.' in text
    assert 'nyc (~42 ms away): no answer within 60 s' in text
    assert 'satisfies' in records.summary(plan, [])


@pytest.mark.parametrize('requested,expected', [
    (None, 'auto'),
    ([('none', None)], 'none'),
    ([('auto', None)], 'auto'),
    ([('6b5f3a02-0d59-4d8e-9a4c-1f2e3d4c5b6a', None)],
     '[["6b5f3a02-0d59-4d8e-9a4c-1f2e3d4c5b6a", null]]'),
])
def test_requested_networks_round_trip(requested, expected):
    if requested is None:
        networks = None
    else:
        networks = objects.NetworkRequestList(objects=[
            objects.NetworkRequest(network_id=net, port_id=port)
            for net, port in requested])
    text = records.networks_record(networks)
    assert text == expected
    back = records.networks_from_record(text)
    if expected.startswith('['):
        assert [r.network_id for r in back.objects] == [requested[0][0]]
    else:
        assert back.objects[0].network_id == expected


def test_a_long_network_list_falls_back_to_auto():
    many = objects.NetworkRequestList(objects=[
        objects.NetworkRequest(network_id='%036d' % i) for i in range(9)])
    assert records.networks_record(many) == 'auto'


def test_portable_copy_drops_the_row_id_and_marks_all_changed():
    spec = objects.RequestSpec(id=7, instance_uuid=UUID, num_instances=2,
                               scheduler_hints={'near': ['par']})
    spec.obj_reset_changes()
    copy = portable(spec)
    assert 'id' not in copy
    assert copy.instance_uuid == UUID
    assert copy.scheduler_hints == {'near': ['par']}
    assert set(copy.obj_what_changed()) == {'instance_uuid',
                                            'num_instances',
                                            'scheduler_hints'}
