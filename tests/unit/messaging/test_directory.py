"""The replicated topic directory, driven by a fake clock."""

import hypothesis
from hypothesis import strategies as st
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


def _replica(hold=5, clock=None):
    return directory.TopicDirectory('me', '127.0.0.1:9', tombstone_hold=hold,
                                    clock=clock or Clock())


KEY = ('rpc', 'nova', 'compute', '')
SERVER_KEY = ('rpc', 'nova', 'compute', 'host1')


def test_newer_records_replace_older_and_index_subscriptions():
    d = _replica()
    assert d.merge([_record('a', 1, [KEY, SERVER_KEY])])
    assert d.nodes_for(KEY) == ['a']
    assert d.qualifiers('rpc', 'nova', 'compute') == {'', 'host1'}
    assert not d.merge([_record('a', 1, [])])  # same version: ignored
    assert d.nodes_for(KEY) == ['a']
    assert d.merge([_record('a', 2, [KEY])])
    assert d.nodes_for(SERVER_KEY) == []


def test_live_records_never_expire_tombstones_do_after_the_hold():
    clock = Clock()
    d = directory.TopicDirectory('me', '127.0.0.1:9', tombstone_hold=5,
                                 clock=clock)
    d.merge([_record('a', 1, [KEY]), _record('b', 1, [KEY])])
    clock.now += 1000
    assert d.expire() == []  # nothing refreshed, still live
    assert d.declare_dead('a')
    assert d.nodes_for(KEY) == ['b']
    clock.now += 4
    assert d.expire() == []
    clock.now += 2
    assert d.expire() == ['a']
    assert len(d) == 2  # b and its own record


def test_a_tombstone_beats_the_live_record_of_its_version_only():
    d = directory.TopicDirectory('me', '127.0.0.1:9', tombstone_hold=5,
                                 clock=Clock())
    d.merge([_record('a', 3, [KEY])])
    assert d.merge([_record('a', 3, [KEY], gone=True)])
    assert d.nodes_for(KEY) == []
    # A late copy of the same version cannot bring it back ...
    assert not d.merge([_record('a', 3, [KEY])])
    assert d.nodes_for(KEY) == []
    # ... its refutation, a newer version, does.
    assert d.merge([_record('a', 4, [KEY])])
    assert d.nodes_for(KEY) == ['a']
    # An old tombstone does not kill the newer record.
    assert not d.merge([_record('a', 3, [KEY], gone=True)])
    assert d.nodes_for(KEY) == ['a']


def test_a_peer_refutes_its_own_death_with_a_newer_version():
    d = directory.TopicDirectory('me', '127.0.0.1:9', tombstone_hold=5,
                                 clock=Clock())
    d.refresh_self(subs=[KEY])
    mark = d.seq
    mine = d.changes_since(0)[0]
    d.merge([dict(mine, gone=True)])
    (record,) = d.changes_since(mark)
    assert record['node'] == 'me' and not record['gone']
    assert record['ver'] == mine['ver'] + 1
    assert d.refutations == 1
    # An older tombstone of it is no news.
    mark = d.seq
    d.merge([dict(mine, gone=True)])
    assert d.changes_since(mark) == [] and d.refutations == 1


def test_digests_agree_exactly_when_the_live_records_do():
    one = directory.TopicDirectory('x', 'h:1', tombstone_hold=5,
                                   clock=Clock())
    two = directory.TopicDirectory('y', 'h:2', tombstone_hold=5,
                                   clock=Clock())
    one.merge(two.all_records())
    two.merge(one.all_records())
    assert one.digest() == two.digest()
    one.merge([_record('a', 1, [KEY])])
    assert one.digest() != two.digest()
    two.merge([_record('a', 1, [KEY])])
    assert one.digest() == two.digest()
    # A tombstone held by one replica only, once both know the death,
    # makes no difference: replicas drop tombstones at different times.
    one.declare_dead('a')
    two.declare_dead('a')
    assert one.digest() == two.digest() and one.digest()[0] == 2
    one.merge([_record('a', 2, [KEY])])
    assert one.digest() != two.digest()


def test_goodbye_record_withdraws_at_once():
    d = _replica()
    d.merge([_record('a', 1, [KEY])])
    assert d.merge([_record('a', 2, [], gone=True)])
    assert d.nodes_for(KEY) == []
    assert 'a' not in d.live_nodes()


def test_changes_since_gives_only_newer_records():
    d = _replica()
    mark = d.seq
    d.merge([_record('a', 1, [KEY])])
    assert [r['node'] for r in d.changes_since(mark)] == ['a']
    mark = d.seq
    d.refresh_self(subs=[SERVER_KEY])
    changed = d.changes_since(mark)
    assert [r['node'] for r in changed] == ['me']
    assert changed[0]['subs'] == [list(SERVER_KEY)]
    assert d.changes_since(d.seq) == []


def test_newest_incarnation_comes_first():
    clock = Clock()
    d = _replica(hold=50, clock=clock)
    d.merge([_record('old', 1, [SERVER_KEY])])
    clock.now += 1
    d.merge([_record('new', 1, [SERVER_KEY])])
    assert d.nodes_for(SERVER_KEY) == ['new', 'old']


def test_own_record_from_the_network_is_ignored():
    d = _replica()
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
    d = _replica()
    with pytest.raises(errors.InvalidMessage, match=what):
        d.merge([bad])
    assert d.live_nodes() == []


@hypothesis.given(names=st.sets(st.text(min_size=1, max_size=8),
                                min_size=1, max_size=40),
                  watch=st.integers(min_value=1, max_value=4))
def test_every_peer_is_watched_by_as_many_peers_as_it_watches(names, watch):
    """With agreeing replicas, the watch relation is a ring: each peer is
    watched exactly min(watch, n - 1) times, by its watchers()."""
    names = sorted(names)
    records = [_record(n, 1, [KEY]) for n in names]
    replicas = {}
    for name in names:
        d = directory.TopicDirectory(name, 'h:1', tombstone_hold=5,
                                     clock=Clock())
        d.merge(records)
        replicas[name] = d
    expected = min(watch, len(names) - 1)
    watched_by = {name: [] for name in names}
    for name, d in replicas.items():
        targets = d.watch_targets(watch)
        assert len(targets) == len(set(targets)) == expected
        assert name not in targets
        for target in targets:
            watched_by[target].append(name)
    for name, d in replicas.items():
        assert sorted(watched_by[name]) == sorted(d.watchers(watch))


def test_the_dead_leave_the_ring_of_watchers():
    d = directory.TopicDirectory('me', 'h:1', tombstone_hold=5,
                                 clock=Clock())
    d.merge([_record(n, 1, [KEY]) for n in 'abcdefgh'])
    first = d.watch_targets(1)[0]
    d.declare_dead(first)
    assert first not in d.watch_targets(2)
    assert len(d.watch_targets(2)) == 2
