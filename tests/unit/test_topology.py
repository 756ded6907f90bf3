"""RTT sources of the simulator: the shipped matrix, files, generators."""

import lzma

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from discovery_nova.sim import topology as topo


def test_shipped_planetlab_matrix_is_the_real_one():
    t = topo.PlanetLabTopology()
    assert t.size == 490
    assert t.names[0] == 'pl000' and t.names[-1] == 'pl489'
    # Spot values of the published matrix (row 0): 0.175 ms to its
    # neighbour on the same site, 121.42 ms to node 3.
    assert t.rtt(0, 1) == pytest.approx(0.175)
    assert t.rtt(0, 3) == pytest.approx(121.42)
    assert np.allclose(t.matrix, t.matrix.T)
    assert (np.diag(t.matrix) == 0).all()


def test_shipped_data_carries_its_licence_and_citation():
    import importlib.resources

    data = importlib.resources.files('discovery_nova.sim') / 'data'
    assert 'MIT License' in (data / 'LICENSE.planetlab-490').read_text()
    assert 'Zhu' in (data / 'README.md').read_text()


def _write(tmp_path, text, name='m.tsv'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('text,expected', [
    ('0 1\n1 x\n', 'line 2.*column 2.*\'x\'.*expected a number'),
    ('0 1\n1 0 3\n', 'line 2.*3 values.*first row has 2'),
    ('0 1 2\n1 0 3\n', 'matrix is 2 x 3, expected a square'),
    ('0 -1\n1 0\n', 'line 1.*column 2.*expected a finite RTT'),
    ('0 nan\n1 0\n', 'line 1.*column 2.*expected a finite RTT'),
    ('1 1\n1 0\n', r'diagonal entry \(1, 1\)'),
    ('', 'no RTT values'),
    ('0\n', 'at least 2 nodes'),
])
def test_malformed_matrix_is_refused_with_where_and_why(
        tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(topo.RttMatrixError, match=expected) as err:
        topo.load_rtt_matrix(path)
    assert str(err.value).startswith(path)


def test_missing_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(topo.RttMatrixError, match='no such RTT matrix'):
        topo.load_rtt_matrix(str(tmp_path / 'absent.tsv'))
    bad = tmp_path / 'bad.tsv.xz'
    bad.write_bytes(b'not xz at all')
    with pytest.raises(topo.RttMatrixError, match='cannot read'):
        topo.load_rtt_matrix(str(bad))


def test_compressed_matrix_loads(tmp_path):
    path = tmp_path / 'm.tsv.xz'
    with lzma.open(path, 'wt') as out:
        out.write('# a comment\n0\t5\n5\t0\n')
    assert topo.load_rtt_matrix(str(path)).tolist() == [[0, 5], [5, 0]]


def test_unknown_node_name_says_which_names_exist():
    t = topo.PlanetLabTopology()
    with pytest.raises(KeyError, match=r"unknown node 'pl999'.*pl000 \.\. "
                                       r"pl489"):
        t.index_of('pl999')


@pytest.mark.parametrize('cls', [topo.PlaneTopology, topo.BackboneTopology])
def test_generated_rtts_from_matches_pairwise_rtt(cls):
    t = cls(size=200, seed=3)
    for i in (0, 17, 199):
        row = t.rtts_from(i)
        assert row[i] == 0.0
        for j in (0, 5, 100, 199):
            assert row[j] == pytest.approx(t.rtt(i, j))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), seed=st.integers(0, 10_000),
       kind=st.sampled_from([topo.PlaneTopology, topo.BackboneTopology]))
def test_generated_topologies_are_symmetric_and_positive(n, seed, kind):
    t = kind(size=n, seed=seed)
    for i in range(n):
        row = t.rtts_from(i)
        assert row[i] == 0
        assert (np.delete(row, i) > 0).all()
        for j in range(i + 1, min(n, i + 4)):
            assert t.rtt(i, j) == pytest.approx(t.rtt(j, i))


def test_generated_topology_refuses_too_few_nodes():
    with pytest.raises(ValueError, match='at least 2 nodes'):
        topo.BackboneTopology(size=1)


def test_ten_thousand_nodes_need_no_square_matrix():
    t = topo.BackboneTopology(size=10_000, seed=0)
    assert t.positions.shape == (10_000, 2)
    assert t.rtts_from(9_999).shape == (10_000,)
