"""The job's walk through a data set, ported exactly from Go's data package.

order(seed, epoch, n) is data.Order: a Fisher-Yates shuffle driven by Go's
math/rand/v2 PCG (DXSM output) seeded with (seed, epoch), drawing with
Rand.Uint64N. share_of(cursor, n, rank, size, per_peer) is data.ShareOf. The
tests check both against the Go functions (through libringtrain.so).

Because only the cursor carries over between steps, a change of the number
of workers between two steps neither skips nor repeats a sample within the
data epoch.
"""

_M64 = (1 << 64) - 1
_MUL = (2549297995355413924 << 64) | 4865540595714422341
_INC = (6364136223846793005 << 64) | 1442695040888963407
_M128 = (1 << 128) - 1


class _PCG:
    """Go's rand.PCG: a 128-bit LCG with the DXSM output function."""

    __slots__ = ("s",)

    def __init__(self, seed1, seed2):
        self.s = ((seed1 & _M64) << 64) | (seed2 & _M64)

    def uint64(self):
        self.s = (self.s * _MUL + _INC) & _M128
        hi, lo = self.s >> 64, self.s & _M64
        hi ^= hi >> 32
        hi = (hi * 0xDA942042E4DD58B5) & _M64
        hi ^= hi >> 48
        return (hi * (lo | 1)) & _M64

    def uint64n(self, n):
        """Rand.Uint64N on a 64-bit platform (Lemire's method with rejection)."""
        if n & (n - 1) == 0:
            return self.uint64() & (n - 1)
        p = self.uint64() * n
        hi, lo = p >> 64, p & _M64
        if lo < n:
            thresh = ((1 << 64) - n) % n
            while lo < thresh:
                p = self.uint64() * n
                hi, lo = p >> 64, p & _M64
        return hi


def order(seed, epoch, n):
    """The sample order of data epoch `epoch` for n samples (Go's data.Order)."""
    o = list(range(n))
    rng = _PCG(seed, epoch)
    for i in range(n - 1, 0, -1):
        j = rng.uint64n(i + 1)
        o[i], o[j] = o[j], o[i]
    return o


def share_of(cursor, n, rank, size, per_peer):
    """(lo, hi, global): rank's positions [lo, hi) of the step starting at cursor (Go's data.ShareOf)."""
    if size <= 0 or rank < 0 or rank >= size or per_peer <= 0 or cursor < 0 or cursor >= n:
        return cursor, cursor, 0
    g = min(size * per_peer, n - cursor)
    # Python's // floors like Go's / for these non-negative operands.
    return cursor + rank * g // size, cursor + (rank + 1) * g // size, g


class ElasticSampler:
    """Each worker's share of each global batch, from (epoch, cursor, rank, size).

    Its position (data epoch and cursor) is part of the training state: put
    the sampler in TorchState, and every worker continues from the same
    position after a resize. Typical use:

        idx = sampler.indices(rank, size)   # this step's sample indices
        ...train on them...
        sampler.advance(size)               # after the step was applied
    """

    def __init__(self, n, batch_per_worker, seed=1):
        if n <= 0 or batch_per_worker <= 0:
            raise ValueError("ElasticSampler: need n > 0 and batch_per_worker > 0")
        self.n, self.batch, self.seed = int(n), int(batch_per_worker), int(seed)
        self.epoch, self.cursor = 0, 0
        self._order_epoch, self._order = None, None

    def order(self):
        if self._order_epoch != self.epoch:
            self._order, self._order_epoch = order(self.seed, self.epoch, self.n), self.epoch
        return self._order

    def share(self, rank, size):
        return share_of(self.cursor, self.n, rank, size, self.batch)

    def indices(self, rank, size):
        lo, hi, _ = self.share(rank, size)
        return self.order()[lo:hi]

    def advance(self, size):
        """Moves past the step all `size` workers just took; returns True at a new data epoch."""
        _, _, g = self.share(0, size)
        self.cursor += g
        if self.cursor >= self.n:
            self.epoch, self.cursor = self.epoch + 1, 0
            return True
        return False

    def state_dict(self):
        return {"epoch": self.epoch, "cursor": self.cursor, "n": self.n, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, d):
        if (d["n"], d["batch"], d["seed"]) != (self.n, self.batch, self.seed):
            raise ValueError("ElasticSampler: state of another data set or batch: %r" % (d,))
        self.epoch, self.cursor = int(d["epoch"]), int(d["cursor"])
