"""ElasticSampler's order and shares equal Go's data.Order and data.ShareOf."""

import ctypes

import pytest

from ringtrain import ElasticSampler, _lib, order, share_of


@pytest.mark.parametrize("seed,epoch,n", [(1, 0, 1), (1, 0, 2), (1, 0, 60000), (1, 3, 1000), (7, 1, 4096), (2**64 - 1, 2**63, 777)])
def test_order_matches_go(lib, seed, epoch, n):
    L = _lib.lib()
    out = (ctypes.c_int32 * n)()
    assert L.rt_data_order(seed, epoch, n, out) == 0
    assert order(seed, epoch, n) == list(out)


def test_share_of_matches_go(lib):
    L = _lib.lib()
    out = (ctypes.c_int64 * 3)()
    cases = 0
    for n in (1, 7, 100, 1000):
        for size in (0, 1, 2, 3, 4, 7):
            for per in (0, 1, 5, 32):
                for cursor in (-1, 0, 1, n // 2, n - 3, n - 1, n):
                    for rank in range(-1, size + 1):
                        assert L.rt_data_share(cursor, n, rank, size, per, out) == 0
                        assert share_of(cursor, n, rank, size, per) == tuple(out), (cursor, n, rank, size, per)
                        cases += 1
    assert cases > 3000


def test_resizes_use_every_sample_once():
    # Sizes change between steps; every sample of each data epoch is used once.
    s = ElasticSampler(1000, 7, seed=5)
    sizes = [1, 4, 4, 3, 2, 5, 1] * 40
    used = {0: [], 1: []}
    for size in sizes:
        e = s.epoch
        if e > 1:
            break
        for r in range(size):
            used[e] += s.indices(r, size)
        s.advance(size)
    for e in (0, 1):
        assert sorted(used[e]) == list(range(1000)), e
