"""The DDP communication hook: one persistent gradwire plan per bucket.

Each bucket's flat buffer holds its parameters' gradients back to back (DDP's layout). The
parameters that are matrices of at least `min_compress_numel` elements go through the plan
(compressed); the others (biases, norms, small tensors) through a dense allreduce. Both are
averaged by the library (op avg), as DDP expects of a hook.
"""
import torch
import torch.distributed as dist

from .. import core, errors
from . import _launch

_TORCH_DTYPES = {torch.float32: "float32", torch.float16: "float16",
                 torch.bfloat16: "bfloat16", torch.float64: "float64"}


def _dtype_name(t):
    name = _TORCH_DTYPES.get(t)
    if name is None:
        raise errors.UnsupportedError(f"gradwire DDP hook: gradients of dtype {t} are not "
                                      "supported (float32, float16, bfloat16)")
    return name


class _Bucket:
    """A bucket's layout, its plan and the packing buffers (made once per layout)."""

    def __init__(self, hook, key, buf, params):
        self.key = key
        self.params = list(params)
        self.dtype = _dtype_name(buf.dtype)
        self.device = buf.device
        self.on_cuda = buf.is_cuda
        self.ranges = []  # (offset, numel, compressed) of runs of like parameters
        shapes = []
        offset = 0
        for p in self.params:
            n = p.numel()
            compress = hook._compressible(p)
            if compress and p.dim() >= 2:
                shapes.append((p.shape[0], n // p.shape[0]))
            elif compress:
                shapes.append((1, n))
            if self.ranges and self.ranges[-1][2] == compress and \
                    self.ranges[-1][0] + self.ranges[-1][1] == offset:
                o, m, c = self.ranges[-1]
                self.ranges[-1] = (o, m + n, c)
            else:
                self.ranges.append((offset, n, compress))
            offset += n
        if offset != buf.numel():  # not DDP's plain layout: the whole bucket, one vector
            self.ranges = [(0, buf.numel(), True)]
            shapes = []
        self.c_count = sum(n for _, n, c in self.ranges if c)
        self.d_count = sum(n for _, n, c in self.ranges if not c)
        # 16-bit gradients are compressed as float32 (the library compresses float32 buffers
        # and sends 16-bit ones dense); the cast happens in the packing copy.
        half = buf.dtype in (torch.float16, torch.bfloat16)
        self.plan_dtype = "float32" if half else self.dtype
        # DGC's momentum correction moves momentum from the optimizer into the plans, so the
        # dense part needs it too: a dense plan that keeps the velocity (no masking: the whole
        # velocity is sent every step, which is plain momentum on the average), float32.
        momentum = hook._plan_options["momentum"]
        dense_dtype = "float32" if (half and momentum > 0) else self.dtype
        # The whole bucket through one collective in place, or packed into our own buffers.
        self.direct = len(self.ranges) == 1 and not (
            half and (self.ranges[0][2] or dense_dtype != self.dtype))
        opts = dict(hook._plan_options)
        if opts.get("algorithm") == "powersgd":
            opts["shapes"] = shapes
        self.plan = None
        if self.c_count:
            self.plan = core.Plan(hook._world, self.c_count, dtype=self.plan_dtype, op="avg",
                                  memory="device" if self.on_cuda else "host", **opts)
            self.plan.set_label(hook._label(key[0], self.params))
        self.dense_plan = None
        if self.d_count and (self.on_cuda or momentum > 0):
            dgc = {}
            if momentum > 0:
                dgc = dict(momentum=momentum, momentum_masking=False,
                           clip_norm=hook._plan_options["clip_norm"])
            self.dense_plan = core.Plan(hook._world, self.d_count, dtype=dense_dtype, op="avg",
                                        codec="none", algorithm="dense",
                                        memory="device" if self.on_cuda else "host", **dgc)
        # A plan that runs dense (codec none, or auto's trial chose dense) adds nothing to
        # DDP's own shape: the whole bucket goes through one in-place allreduce, without the
        # packing copies and the second collective (5-10 % of a host step; torch-peers.md).
        # Nothing is lost: the hook's runs are non-blocking, which auto does not re-decide
        # from, and with momentum the plans keep the velocity, so they always run.
        self.whole_bucket = (not self.on_cuda and momentum == 0 and self.plan is not None and
                             self.plan.stats()["algorithm"] == "dense")
        if not self.direct and not self.whole_bucket:
            self.cbuf = torch.empty(self.c_count, dtype=torch.float32 if half else buf.dtype,
                                    device=buf.device)
            self.dbuf = torch.empty(self.d_count, dtype=getattr(torch, dense_dtype),
                                    device=buf.device)

    def _parts(self, buf):
        c = d = 0
        for o, n, comp in self.ranges:
            if comp:
                yield buf[o:o + n], self.cbuf[c:c + n]
                c += n
            else:
                yield buf[o:o + n], self.dbuf[d:d + n]
                d += n

    def pack(self, buf):
        if not self.direct:
            for src, dst in self._parts(buf):
                dst.copy_(src)

    def unpack(self, buf):
        if not self.direct:
            for dst, src in self._parts(buf):
                dst.copy_(src)
        return buf

    def compressed(self, buf):
        if self.direct and self.ranges[0][2]:
            return buf
        return self.cbuf if self.c_count else None

    def dense(self, buf):
        if self.direct and not self.ranges[0][2]:
            return buf
        return self.dbuf if self.d_count else None

    def close(self):
        for p in (self.plan, self.dense_plan):
            if p is not None:
                p.destroy()
        self.plan = self.dense_plan = None


class GradwireHook:
    """The state of gradwire's DDP hook (returned by gradwire.torch.register)."""

    def __init__(self, world, *, codec, algorithm, error_feedback, seed, momentum,
                 momentum_masking, clip_norm, warmup_steps, warmup_density, powersgd_rank,
                 balance_shards, min_compress_numel, compress_1d, start_iter):
        self._world = world
        self._plan_options = dict(codec=codec, algorithm=algorithm,
                                  error_feedback=error_feedback, seed=seed, momentum=momentum,
                                  momentum_masking=momentum_masking, clip_norm=clip_norm,
                                  warmup_steps=warmup_steps, warmup_density=warmup_density,
                                  powersgd_rank=powersgd_rank, balance_shards=balance_shards)
        self.min_compress_numel = min_compress_numel
        self.compress_1d = compress_1d
        self.start_iter = start_iter
        self.iter = 0  # backward passes seen (bucket.is_last())
        self._buckets = {}  # bucket index -> _Bucket
        self._pending = {}  # layout key -> loaded state, applied when its plan is made
        self._failed = None
        self._progress = _launch.progress()
        self._names = {}  # id(parameter) -> its name in the model, for timeline labels

    def _label(self, index, params):
        """"bucket 3: fc.weight .. conv1.bias": a bucket's runs on the timeline."""
        first = self._names.get(id(params[0]), "?") if params else "?"
        last = self._names.get(id(params[-1]), "?") if params else "?"
        return f"bucket {index}: {first} .. {last}"

    # ---- decisions from shapes alone (every rank decides the same) ----
    def _compressible(self, p):
        return (self.compress_1d or p.dim() >= 2) and p.numel() >= self.min_compress_numel

    @staticmethod
    def _key(bucket, buf):
        shapes = tuple(tuple(p.shape) for p in bucket.parameters())
        return (bucket.index(), buf.numel(), str(buf.dtype), shapes)

    # ---- the hook ----
    def __call__(self, bucket):
        if self._failed is not None:
            raise self._failed
        buf = bucket.buffer()
        key = self._key(bucket, buf)
        try:
            if self.iter < self.start_iter and key not in self._pending:
                fut = self._plain(buf, bucket)
            else:
                fut = self._planned(key, buf, bucket)
        except errors.Error as e:
            self._failed = e
            raise
        if bucket.is_last():
            self.iter += 1
        return fut

    def _record_failure(self, error):
        """A reduction failed (its future carries the error): later hook calls raise it."""
        if self._failed is None:
            self._failed = error

    def _plain(self, buf, bucket):
        """Until DDP has rebuilt its buckets (after the first backward), and for buckets whose
        plan runs dense: a plain average of the whole bucket, in place."""
        if buf.is_cuda:
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            return default_hooks.allreduce_hook(None, bucket)
        name = _dtype_name(buf.dtype)
        fut = torch.futures.Future()
        with self._progress.lock:
            req = self._world.iallreduce(buf.data_ptr(), buf.data_ptr(), buf.numel(), name,
                                         "avg", keep=buf)
        self._progress.submit([req], fut, lambda: buf, self._record_failure)
        return fut

    def _bucket_for(self, key, buf, bucket):
        b = self._buckets.get(key[0])
        if b is not None and b.key == key:
            return b
        with self._progress.lock:
            if b is not None:  # DDP changed this bucket's layout: a plan for the new one
                b.close()
            b = _Bucket(self, key, buf, bucket.parameters())
            self._buckets[key[0]] = b
            state = self._pending.pop(key, None)
            if state is not None:
                self._restore(b, state)
        return b

    def _planned(self, key, buf, bucket):
        b = self._bucket_for(key, buf, bucket)
        if b.whole_bucket:
            return self._plain(buf, bucket)
        b.pack(buf)
        cbuf, dbuf = b.compressed(buf), b.dense(buf)
        if b.on_cuda:
            return self._planned_cuda(b, buf, cbuf, dbuf)
        fut = torch.futures.Future()
        requests = []
        with self._progress.lock:
            if cbuf is not None:
                requests.append(b.plan.start(cbuf.data_ptr(), cbuf.data_ptr(), keep=cbuf))
            if dbuf is not None and b.dense_plan is not None:
                requests.append(b.dense_plan.start(dbuf.data_ptr(), dbuf.data_ptr(), keep=dbuf))
            elif dbuf is not None:
                requests.append(self._world.iallreduce(dbuf.data_ptr(), dbuf.data_ptr(),
                                                       dbuf.numel(), b.dtype, "avg",
                                                       keep=dbuf))
        self._progress.submit(requests, fut, lambda: b.unpack(buf), self._record_failure)
        return fut

    def _planned_cuda(self, b, buf, cbuf, dbuf):
        """CUDA tensors: the plans run on the current stream; the future is that device's, so
        work enqueued after it on the stream sees the result (no host wait)."""
        stream = torch.cuda.current_stream(buf.device).cuda_stream
        with self._progress.lock:
            if cbuf is not None:
                b.plan.run_stream(cbuf.data_ptr(), cbuf.data_ptr(), stream)
            if dbuf is not None:
                b.dense_plan.run_stream(dbuf.data_ptr(), dbuf.data_ptr(), stream)
        b.unpack(buf)
        fut = torch.futures.Future(devices=[buf.device])
        fut.set_result(buf)
        return fut

    # ---- what ran ----
    def layout(self):
        """Per bucket (by index): its parameters in buffer order, each with whether it goes
        through the plan (True) or the dense allreduce (False)."""
        return {i: [(p, self._compressible(p)) for p in b.params]
                for i, b in sorted(self._buckets.items())}

    def stats(self):
        """Per bucket: the plan's statistics (the algorithm that ran, bytes, times)."""
        out = []
        for index in sorted(self._buckets):
            b = self._buckets[index]
            s = b.plan.stats() if b.plan is not None else {"algorithm": "dense"}
            s.update(bucket=index, compressed_elements=b.c_count, dense_elements=b.d_count,
                     whole_bucket=b.whole_bucket)
            out.append(s)
        return out

    def algorithms(self):
        """The algorithms the plans ran, e.g. {"sra"} ("auto" may choose "dense")."""
        return sorted({s["algorithm"] for s in self.stats()})

    # ---- checkpoints ----
    _STATE_VERSION = 2  # 1 held only the summed residual and the step

    def state_dict(self):
        """Collective (every rank calls it; all get the same dict): per bucket the whole state
        of its plans (each rank's residual, DGC velocity, PowerSGD's Q, the step) as the
        library's plan-state file. Loaded on as many ranks, the next step is bit-identical to
        the uninterrupted run's; on another number of ranks the residual and velocity totals
        are shared out by global element (docs/python.md, "Checkpoints")."""
        self._progress.drain()
        plans = {}
        with self._progress.lock:
            for index in sorted(self._buckets):
                b = self._buckets[index]
                if b.plan is None and b.dense_plan is None:
                    continue
                plans[repr(b.key)] = {
                    "key": b.key,
                    "step": (b.plan or b.dense_plan).step,  # informational: the file has it
                    "plan": b.plan.state_bytes() if b.plan is not None else None,
                    "dense_plan": b.dense_plan.state_bytes() if b.dense_plan is not None
                    else None}
        return {"version": self._STATE_VERSION, "world_size": self._world.size,
                "iter": self.iter, "plans": plans}

    def load_state_dict(self, state):
        """Plans made later take their state when their layout matches the saved one (and are
        then made at once, without the plain first iteration). Plans that exist already load it
        now, which is collective."""
        if state.get("version") != self._STATE_VERSION:
            raise errors.InvalidArgumentError(
                f"gradwire hook state: version {state.get('version')!r}, this gradwire reads "
                f"{self._STATE_VERSION} (version 1 held only the residual: save it again)")
        self._progress.drain()
        pending = {tuple(v["key"]) if not isinstance(v["key"], tuple) else v["key"]: v
                   for v in state["plans"].values()}
        with self._progress.lock:
            for index in sorted(self._buckets):
                b = self._buckets[index]
                s = pending.pop(b.key, None)
                if s is not None:
                    self._restore(b, s)
        self._pending = pending
        self.iter = max(self.iter, int(state.get("iter", 0)))

    @staticmethod
    def _restore(b, state):
        for plan, data in ((b.plan, state.get("plan")), (b.dense_plan, state.get("dense_plan"))):
            if plan is not None and data is not None:
                plan.load_state_bytes(data)  # rank 0 reads it and shares it out

    def close(self):
        self._progress.drain()
        with self._progress.lock:
            for b in self._buckets.values():
                b.close()
            self._buckets.clear()


def _hook(state, bucket):
    return state(bucket)


def register(ddp_model, codec="q8", algorithm="auto", *, error_feedback=True, seed=0,
             momentum=0.0, momentum_masking=True, clip_norm=0.0, warmup_steps=0,
             warmup_density=0.25, powersgd_rank=4, balance_shards=False,
             min_compress_numel=1024, compress_1d=False, start_iter=1):
    """Registers gradwire's communication hook on a DistributedDataParallel model and returns
    its state (stats(), state_dict(), load_state_dict()). Collective: the options are checked
    by the library at once (a probe plan), so a bad codec string or a dtype the codec does not
    take raises here, on every rank, before training starts. docs/python.md lists the options.
    """
    world = _launch.init()  # idempotent: a script that set up torch.distributed itself needs no more
    options = dict(codec=codec, algorithm=algorithm, error_feedback=error_feedback, seed=seed,
                   momentum=momentum, momentum_masking=momentum_masking, clip_norm=clip_norm,
                   warmup_steps=warmup_steps, warmup_density=warmup_density,
                   powersgd_rank=powersgd_rank, balance_shards=balance_shards)
    dtypes = sorted({str(p.dtype) for p in ddp_model.parameters() if p.requires_grad})
    devices = {p.device.type for p in ddp_model.parameters()}
    with _launch.progress().lock:
        for name in dtypes:
            dtype = _dtype_name(getattr(torch, name.split(".")[-1]))
            if dtype in ("float16", "bfloat16"):
                dtype = "float32"  # as _Bucket compresses them
            probe = dict(options)
            if algorithm == "powersgd":
                probe["shapes"] = [(16, 16)]
            # 256 elements: below auto's 4 KiB floor, so the probe runs no cost trial.
            core.Plan(world, 256, dtype=dtype, op="avg",
                      memory="device" if "cuda" in devices else "host", **probe).destroy()
    hook = GradwireHook(world, min_compress_numel=min_compress_numel, compress_1d=compress_1d,
                        start_iter=start_iter, **options)
    hook._names = {id(p): n for n, p in ddp_model.module.named_parameters()}
    ddp_model.register_comm_hook(hook, _hook)
    _launch._hooks.append(hook)
    return hook
