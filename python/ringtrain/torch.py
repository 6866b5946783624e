"""PyTorch on ringtrain: in-place collectives on tensors, a DistributedOptimizer
whose gradient all-reduce overlaps backward, and Horovod-style elastic state.

CPU tensors are reduced in place (the Go side reads and writes the tensor's
memory for the duration of the call). CUDA tensors are staged through pinned
host buffers: one device-to-host copy before the reduction, one host-to-device
copy after.

    import ringtrain, ringtrain.torch as rtt
    ringtrain.init()                               # RINGTRAIN_* environment
    opt = rtt.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr), model)
    state = rtt.TorchState(model, opt, sampler=rtt.ElasticSampler(len(ds), 32))
    def train_step(state, b):                      # b: the Boundary (rank, size)
        idx = state.sampler.indices(b.rank, b.size)
        opt.zero_grad(); loss_fn(model(x[idx]), y[idx]).backward(); opt.step()
    rtt.run(train_step, state, steps=1000)
"""

import ctypes
import io

import torch

import ringtrain
from ringtrain import _lib, CommError, InvalidArgument, ElasticSampler  # noqa: F401

_DTYPES = {torch.float32: _lib.FP32, torch.float16: _lib.FP16, torch.bfloat16: _lib.BF16}
_WIRE = {"fp32": _lib.FP32, "float32": _lib.FP32, "bf16": _lib.BF16, "bfloat16": _lib.BF16, "fp16": _lib.FP16, "float16": _lib.FP16}


def _node(node):
    return node if node is not None else ringtrain.node()


def _check_tensor(t, what):
    if not isinstance(t, torch.Tensor):
        raise InvalidArgument("ringtrain.torch.%s: want a torch.Tensor, got %s" % (what, type(t).__name__))
    if t.dtype not in _DTYPES:
        raise InvalidArgument("ringtrain.torch.%s: unsupported dtype %s (want float32, float16 or bfloat16)" % (what, t.dtype))
    if not t.is_contiguous():
        raise InvalidArgument("ringtrain.torch.%s: the tensor is not contiguous (call .contiguous() and reduce that)" % what)
    if t.is_sparse:
        raise InvalidArgument("ringtrain.torch.%s: sparse tensors are not supported" % what)
    return _DTYPES[t.dtype]


class _Pinned:
    """Pinned host staging buffers for CUDA tensors, one per (dtype, size), reused."""

    def __init__(self):
        self.bufs = {}

    def get(self, t):
        key = (t.dtype, t.numel())
        b = self.bufs.get(key)
        if b is None:
            b = torch.empty(t.numel(), dtype=t.dtype, pin_memory=True)
            self.bufs[key] = b
        return b


_pinned = _Pinned()


def _host(t):
    """(host tensor, copy_back): the tensor itself on the CPU, else a pinned copy."""
    if t.device.type == "cpu":
        return t, None
    h = _pinned.get(t)
    h.copy_(t.view(-1))  # synchronous: the stream is drained before Go reads
    return h, (lambda: t.view(-1).copy_(h))


def allreduce_(tensor, op="avg", node=None):
    """All-reduces tensor in place across the epoch's members; returns it."""
    dt = _check_tensor(tensor, "allreduce_")
    n = _node(node)
    h, back = _host(tensor)
    n.allreduce_ptr(h.data_ptr(), h.numel(), dt, op)
    if back:
        back()
    return tensor


def allreduce_async_(tensor, op="avg", node=None):
    """Starts an in-place all-reduce; returns a Request (keep the tensor alive until .wait())."""
    dt = _check_tensor(tensor, "allreduce_async_")
    n = _node(node)
    h, back = _host(tensor)
    return n.allreduce_async_ptr(h.data_ptr(), h.numel(), dt, op, keep=(tensor, h), after=back)


def broadcast_(tensor, root=0, node=None):
    """Copies root's tensor into every member's tensor, in place."""
    dt = _check_tensor(tensor, "broadcast_")
    n = _node(node)
    h, back = _host(tensor)
    n.broadcast_ptr(h.data_ptr(), h.numel(), dt, root)
    if back:
        back()
    return tensor


def broadcast_bytes(data, root=0, node=None):
    """Broadcasts a bytes object from root (other members' data is ignored)."""
    n = _node(node)
    ln = torch.tensor([len(data) if n.rank == root else 0, 0], dtype=torch.int64).view(torch.float32)
    n.broadcast_ptr(ln.data_ptr(), ln.numel(), _lib.FP32, root)
    size = int(ln.view(torch.int64)[0])
    buf = torch.zeros((size + 3) // 4 * 4, dtype=torch.uint8)
    if n.rank == root and size:
        buf[:size] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if size:
        n.broadcast_ptr(buf.data_ptr(), buf.numel() // 4, _lib.FP32, root)
    return bytes(buf[:size].numpy())


def broadcast_parameters(params, root=0, node=None):
    """Broadcasts a model's parameters and buffers (or a state_dict, or (name, tensor) pairs) from root."""
    if isinstance(params, torch.nn.Module):
        items = list(params.state_dict().items())
    elif isinstance(params, dict):
        items = list(params.items())
    else:
        items = list(params)
    for _, t in sorted(items, key=lambda kv: kv[0]):
        if not isinstance(t, torch.Tensor):
            continue
        with torch.no_grad():
            if t.dtype in _DTYPES and t.is_contiguous():
                broadcast_(t, root, node)
            else:  # integer buffers (BatchNorm's counters): as bytes
                b = broadcast_bytes(_tensor_bytes(t), root, node)
                t.copy_(torch.frombuffer(bytearray(b), dtype=t.dtype).view_as(t))


def _tensor_bytes(t):
    return t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def broadcast_optimizer_state(optimizer, root=0, node=None):
    """Makes every member's optimizer state (and hyperparameters) root's."""
    opt = optimizer.inner if isinstance(optimizer, DistributedOptimizer) else optimizer
    n = _node(node)
    payload = b""
    if n.rank == root:
        f = io.BytesIO()
        torch.save(opt.state_dict(), f)
        payload = f.getvalue()
    payload = broadcast_bytes(payload, root, n)
    if n.rank != root:
        opt.load_state_dict(torch.load(io.BytesIO(payload)))


class DistributedOptimizer(torch.optim.Optimizer):
    """Wraps an optimizer: gradients are averaged across members before each step.

    Gradients live in one flat float32 arena (param.grad are views into it on
    the CPU). A hook on each parameter's gradient accumulator marks its
    segment ready as soon as backward has produced it; the Go Bucketer
    (collective.Bucketer, the one bucketed all-reduce of ringtrain) launches
    each bucket's asynchronous all-reduce as soon as all its segments are
    ready, in the same order on every member, so communication overlaps the
    rest of backward. step() waits for all buckets, then steps the wrapped
    optimizer. For CUDA parameters the hook copies the gradient into the
    pinned arena, and step() copies the reduced gradient back.

    bucket_bytes: bucket size (None: the Go default); wire_dtype: "fp32",
    "bf16" or "fp16" on the wire; op: "avg" (default) or "sum". Every
    worker needs the same parameters, bucket_bytes, wire_dtype and op: the
    first backward of each epoch checks it and raises InvalidArgument on
    every worker if not.
    """

    def __init__(self, optimizer, model=None, named_parameters=None, bucket_bytes=None, wire_dtype="fp32", op="avg", node=None):
        # Not Optimizer.__init__: param_groups and state are the wrapped one's.
        self.inner = optimizer
        self._nodearg = node
        self._op = ringtrain.op_code(op)
        if wire_dtype not in _WIRE:
            raise InvalidArgument("DistributedOptimizer: unknown wire_dtype %r (want fp32, bf16 or fp16)" % (wire_dtype,))
        self._wire = _WIRE[wire_dtype]
        if named_parameters is None:
            named_parameters = model.named_parameters() if model is not None else [
                ("param%d" % i, p) for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])]
        seen, params = set(), []
        for name, p in named_parameters:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append((name, p))
        for g in optimizer.param_groups:
            for p in g["params"]:
                if p.requires_grad and id(p) not in seen:
                    raise InvalidArgument("DistributedOptimizer: the optimizer has a parameter the model does not name")
        for name, p in params:
            if p.dtype != torch.float32:
                raise InvalidArgument("DistributedOptimizer: parameter %s is %s; the gradient arena holds float32 (keep fp32 master weights)" % (name, p.dtype))
        # Backward produces gradients roughly in reverse registration order:
        # the arena and the segments follow that order, so each bucket is a
        # run of adjacent segments that become ready together.
        self._params = list(reversed(params))
        total = sum(p.numel() for _, p in self._params)
        self._cuda = any(p.device.type == "cuda" for _, p in self._params)
        self._arena = torch.zeros(total, dtype=torch.float32, pin_memory=self._cuda)
        self._views, self._segs, off = [], [], 0
        for i, (_, p) in enumerate(self._params):
            n = p.numel()
            self._views.append(self._arena[off:off + n].view_as(p))
            self._segs.append((off, n))
            off += n
            if not self._cuda:
                p.grad = self._views[i]
        self._bucketer = None
        self._round = False
        self._hooks = []
        self._accs = []
        for i, (_, p) in enumerate(self._params):
            acc = p.expand_as(p).grad_fn.next_functions[0][0]  # the AccumulateGrad node
            self._hooks.append(acc.register_hook(self._make_hook(i)))
            self._accs.append(acc)  # keep the node alive, or its hook is lost
        self.bucket_bytes = bucket_bytes
        self.comm_errors = 0

    # Optimizer attributes the rest of torch (LR schedulers) uses.
    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    @property
    def defaults(self):
        return self.inner.defaults

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, sd):
        self.inner.load_state_dict(sd)

    def add_param_group(self, g):
        raise InvalidArgument("DistributedOptimizer: parameter groups are fixed (the gradient arena is planned once)")

    def __repr__(self):
        return "DistributedOptimizer(%r)" % (self.inner,)

    def _bk(self):
        n = _node(self._nodearg)
        if self._bucketer is None or self._bucketer[0] is not n:
            segs = (ctypes.c_int64 * (2 * len(self._segs)))(*[x for s in self._segs for x in s])
            h = ctypes.c_int64(0)
            ringtrain._check(n._L.rt_bucketer_new(n._handle(), self._arena.data_ptr(), self._arena.numel(), segs, len(self._segs),
                                                  int(self.bucket_bytes or 0), self._op, self._wire, ctypes.byref(h)), "bucketer")
            self._bucketer = (n, h.value)
        return self._bucketer

    def buckets(self):
        n, h = self._bk()
        return int(n._L.rt_bucketer_buckets(h))

    def _start(self):
        if not self._round:
            n, h = self._bk()
            ringtrain._check(n._L.rt_bucketer_start(h), "bucketer start")
            self._round = True

    def _make_hook(self, i):
        def hook(*_):
            _, p = self._params[i]
            v = self._views[i]
            if p.grad is None:
                return
            if self._cuda:
                v.copy_(p.grad)  # device → pinned host (synchronous)
            elif p.grad.data_ptr() != v.data_ptr():
                # The user replaced .grad (set_to_none): put it back in the arena.
                v.copy_(p.grad)
                p.grad = v
            self._start()
            n, h = self._bucketer
            ringtrain._check(n._L.rt_bucketer_ready(h, i), "bucketer ready")
        return hook

    def synchronize(self):
        """Waits for every bucket (launching those backward did not fill); raises CommError on failure."""
        self._start()
        n, h = self._bucketer
        self._round = False
        try:
            ringtrain._check(n._L.rt_bucketer_wait(h), "bucketer wait")
        except CommError:
            self.comm_errors += 1
            raise
        if self._cuda:
            for (_, p), v in zip(self._params, self._views):
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                p.grad.copy_(v)  # pinned host → device

    def _abandon(self):
        """Ends the round of a step that failed (its CommError already
        raised, in a backward hook or elsewhere in the step) or was skipped,
        so the next backward can start one: waits for its buckets (after a
        bucket failed, none more is launched; otherwise the rest are)."""
        if not self._round:
            return
        n, h = self._bucketer
        self._round = False
        try:
            ringtrain._check(n._L.rt_bucketer_wait(h), "bucketer wait")
        except CommError:
            pass

    def step(self, closure=None):
        """Averages the gradients (waiting for the buckets in flight), then steps."""
        if closure is not None:
            raise InvalidArgument("DistributedOptimizer.step: closures are not supported (backward must run before step)")
        self.synchronize()
        return self.inner.step()

    def zero_grad(self, set_to_none=False):
        """Zeroes the gradient arena (grads stay views into it)."""
        # A backward whose step was skipped: finish its round first, so
        # every member keeps issuing the same collectives.
        self._abandon()
        self._arena.zero_()
        for (_, p), v in zip(self._params, self._views):
            if self._cuda:
                if p.grad is not None:
                    p.grad.zero_()
            elif p.grad is None or p.grad.data_ptr() != v.data_ptr():
                p.grad = v

    def close(self):
        for h in self._hooks:
            h.remove()
        if self._bucketer is not None:
            n, h = self._bucketer
            self._bucketer = None
            if n._h is not None:
                n._L.rt_free(h)


class TorchState:
    """Elastic training state: model, optimizer, step, and any extra objects.

    Extras with state_dict/load_state_dict (an ElasticSampler, an LR
    scheduler) are saved through those; other values as they are. Attribute
    access reaches them: state.sampler, state.epoch, ...

    commit() keeps an in-memory copy to return to when a step fails after
    having changed the state; run() syncs members that are behind (joiners,
    members whose step failed) from the most advanced one through
    ringtrain's state transfer.
    """

    def __init__(self, model, optimizer, **extra):
        object.__setattr__(self, "_fields", {"model": model, "optimizer": optimizer, "step": 0})
        self._fields.update(extra)
        object.__setattr__(self, "_commit", None)
        object.__setattr__(self, "history", [])  # (step, data epoch, cursor, size, global batch) of applied steps

    def __getattr__(self, k):
        try:
            return self._fields[k]
        except KeyError:
            raise AttributeError(k) from None

    def __setattr__(self, k, v):
        if k in self._fields:
            self._fields[k] = v
        else:
            object.__setattr__(self, k, v)

    def state_dict(self):
        out = {}
        for k, v in self._fields.items():
            out[k] = v.state_dict() if hasattr(v, "state_dict") else v
        out["_history"] = list(self.history)
        return out

    def load_state_dict(self, sd):
        for k, v in sd.items():
            if k == "_history":
                object.__setattr__(self, "history", list(v))
                continue
            cur = self._fields.get(k)
            if hasattr(cur, "load_state_dict"):
                cur.load_state_dict(v)
            else:
                self._fields[k] = v

    def serialize(self):
        f = io.BytesIO()
        torch.save(self.state_dict(), f)
        return f.getvalue()

    def deserialize(self, b):
        self.load_state_dict(torch.load(io.BytesIO(b)))

    def commit(self):
        """Keeps a copy of the current state to restore() after a failed step."""
        object.__setattr__(self, "_commit", self.serialize())

    def restore(self):
        if self._commit is not None:
            self.deserialize(self._commit)

    def samplers(self):
        return [v for v in self._fields.values() if isinstance(v, ElasticSampler)]


def run(train_step, state, steps=None, node=None, on_epoch=None, should_stop=None):
    """The elastic loop: a boundary between steps, state sync on change, failed steps retried.

    train_step(state, boundary) runs one step (forward, backward,
    optimizer.step()). After it returns, state.step and every ElasticSampler
    in the state advance. A CommError inside it makes the step count as
    failed: the state goes back to the last commit() if the step had changed
    it, and the next boundary forms a new epoch in which members that are
    behind receive the most advanced member's state. on_epoch(state,
    boundary) sees every new epoch (for LR scaling); should_stop(state)
    ends the loop early on every member (it must agree across members).
    Returns the last Boundary.
    """
    n = _node(node)
    b = n.boundary(done=state.step)
    failed = None
    while True:
        if b.left:
            return b
        try:
            if b.role == "send":
                n.state_send(state.serialize())
            elif b.role == "recv":
                state.deserialize(n.state_recv())
        except CommError as e:
            failed = e
            b = n.boundary(done=state.step, failed=failed)
            continue
        if b.changed and on_epoch is not None:
            on_epoch(state, b)
        if (steps is not None and state.step >= steps) or (should_stop is not None and should_stop(state)):
            return b
        failed = None
        before = state.step
        try:
            train_step(state, b)
        except CommError as e:
            failed = e
            opt = state.optimizer
            if isinstance(opt, DistributedOptimizer):
                opt._abandon()
            if state.step != before:
                state.restore()
        if failed is None:
            samplers = state.samplers()
            sh = samplers[0].share(0, b.size) if samplers else (0, 0, 0)
            state.history.append((state.step, samplers[0].epoch if samplers else 0, samplers[0].cursor if samplers else 0, b.size, sh[2]))
            for s in samplers:
                s.advance(b.size)
            state.step += 1
        b = n.boundary(done=state.step, failed=failed)


class LinearScaling:
    """Linear LR scaling with warmup on resize (Goyal et al.), as optim.Scaler in Go.

    lr = base_lr · global_batch / base_batch; when the global batch grows the
    rate ramps linearly from the old value over `warmup` steps, when it
    shrinks it drops at once. Call apply(optimizer, step, global_batch)
    before each step (or from run's on_epoch and each step). Its state is
    part of the training state (state_dict).
    """

    def __init__(self, base_lr, base_batch, warmup=100):
        self.base_lr, self.base_batch, self.warmup = float(base_lr), int(base_batch), int(warmup)
        self.batch = self.from_batch = self.changed_at = 0

    def lr(self, step, global_batch):
        gb = max(int(global_batch), 1)
        if self.batch == 0:
            self.batch, self.from_batch, self.changed_at = gb, gb, step
        elif gb != self.batch:
            self.from_batch, self.batch, self.changed_at = self.batch, gb, step
        target = self.base_lr * self.batch / max(self.base_batch, 1)
        if self.from_batch >= self.batch or self.warmup <= 0 or step - self.changed_at >= self.warmup:
            return target
        r0 = self.from_batch / self.batch
        a = (step - self.changed_at) / self.warmup
        return target * (r0 + (1 - r0) * a)

    def apply(self, optimizer, step, global_batch):
        lr = self.lr(step, global_batch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def state_dict(self):
        return {"batch": self.batch, "from_batch": self.from_batch, "changed_at": self.changed_at}

    def load_state_dict(self, d):
        self.batch, self.from_batch, self.changed_at = d["batch"], d["from_batch"], d["changed_at"]
