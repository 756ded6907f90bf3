"""The replicated topic directory, driven by a fake clock."""

import pytest

from discovery_nova.messaging import directory
from discovery_nova.overlay import errors


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(node, ver, subs, gone=False, addr='127.0.0.1:1'):
    return {'node': node, 'addr': addr, 'ver': ver,
            'subs': [list(s) for s in subs], 'gone': gone}


KEY = ('rpc', 'nova', 'compute', '')
SERVER_KEY = ('rpc', 'nova', 'compute', 'host1')


def test_newer_records_replace_older_and_index_subscriptions():
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=Clock())
    assert d.merge([_record('a', 1, [KEY, SERVER_KEY])])
    assert d.nodes_for(KEY) == ['a']
    assert d.qualifiers('rpc', 'nova', 'compute') == {'', 'host1'}
    assert not d.merge([_record('a', 1, [])])  # same version: ignored
    assert d.nodes_for(KEY) == ['a']
    assert d.merge([_record('a', 2, [KEY])])
    assert d.nodes_for(SERVER_KEY) == []


def test_records_expire_after_the_ttl_unless_refreshed():
    clock = Clock()
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=clock)
    d.merge([_record('a', 1, [KEY]), _record('b', 1, [KEY])])
    clock.now += 4
    d.merge([_record('b', 2, [KEY])])
    clock.now += 2
    assert d.expire() == ['a']
    assert d.nodes_for(KEY) == ['b']
    clock.now += 10
    assert d.expire() == ['b']
    assert d.nodes_for(KEY) == []
    assert len(d) == 1  # its own record never expires


def test_goodbye_record_withdraws_at_once():
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=Clock())
    d.merge([_record('a', 1, [KEY])])
    assert d.merge([_record('a', 2, [], gone=True)])
    assert d.nodes_for(KEY) == []
    assert 'a' not in d.live_nodes()


def test_changes_since_gives_only_newer_records():
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=Clock())
    mark = d.seq
    d.merge([_record('a', 1, [KEY])])
    assert [r['node'] for r in d.changes_since(mark)] == ['a']
    mark = d.seq
    d.refresh_self(subs=[SERVER_KEY])
    changed = d.changes_since(mark)
    assert [r['node'] for r in changed] == ['me']
    assert changed[0]['subs'] == [list(SERVER_KEY)]
    assert d.changes_since(d.seq) == []


def test_freshest_incarnation_comes_first():
    clock = Clock()
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=50, clock=clock)
    d.merge([_record('old', 1, [SERVER_KEY])])
    clock.now += 1
    d.merge([_record('new', 1, [SERVER_KEY])])
    assert d.nodes_for(SERVER_KEY) == ['new', 'old']


def test_own_record_from_the_network_is_ignored():
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=Clock())
    assert not d.merge([_record('me', 99, [KEY])])
    assert d.nodes_for(KEY) == []


@pytest.mark.parametrize('bad, what', [
    ('nope', 'object'),
    ({'node': '', 'addr': 'x', 'ver': 1, 'subs': []}, 'node'),
    ({'node': 'a', 'addr': 5, 'ver': 1, 'subs': []}, 'addr'),
    ({'node': 'a', 'addr': 'x', 'ver': -1, 'subs': []}, 'ver'),
    ({'node': 'a', 'addr': 'x', 'ver': True, 'subs': []}, 'ver'),
    ({'node': 'a', 'addr': 'x', 'ver': 1, 'subs': {}}, 'subs'),
    ({'node': 'a', 'addr': 'x', 'ver': 1, 'subs': [['bad', 'x', 'y', '']]},
     'kind'),
    ({'node': 'a', 'addr': 'x', 'ver': 1, 'subs': [['rpc', 'x']]}, 'kind'),
    ({'node': 'a', 'addr': 'x', 'ver': 1, 'subs': [], 'gone': 'yes'},
     'gone'),
])
def test_malformed_records_are_refused_with_a_clear_error(bad, what):
    d = directory.TopicDirectory('me', '127.0.0.1:9', ttl=5, clock=Clock())
    with pytest.raises(errors.InvalidMessage, match=what):
        d.merge([bad])
    assert d.live_nodes() == []
