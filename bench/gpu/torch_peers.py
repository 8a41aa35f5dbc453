#!/usr/bin/env python3
"""What a PyTorch user writes instead of gradwire's GPU codecs, timed the same way as
gw_codec_bench_gpu (CUDA events, median of 10 samples, roofline against a device copy of the
input measured in the same process), so the issue's comparison can be repeated:

    python3 bench/gpu/torch_peers.py            # 1M and 64M float32 elements
    python3 bench/gpu/torch_peers.py --sizes 67108864

Rows: copy (x.clone()), fp16 cast, bucketed q8 with stochastic rounding in plain torch ops
(bucket 512, min-max grid, as gradwire's q8), its dequantize, torch.topk of 1 % of |x|.
Exits 0 with a message where torch or a CUDA device is missing.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1 << 20, 64 << 20], help="element counts")
    ap.add_argument("--bucket", type=int, default=512)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_peers: skipped: PyTorch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("torch_peers: skipped: torch sees no CUDA device")
        return 0
    dev = torch.device("cuda")
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    print("| op | elements | ms | bytes_moved | GB/s | roofline | vs_copy |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def timed(fn, reps):
        fn()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        samples = []
        for _ in range(10):
            a.record()
            for _ in range(reps):
                fn()
            b.record()
            b.synchronize()
            samples.append(a.elapsed_time(b) / 1e3 / reps)
        samples.sort()
        return samples[5]

    for n in args.sizes:
        reps = 5 if n >= (16 << 20) else 50
        gen = torch.Generator(device=dev)
        gen.manual_seed(12345)
        x = torch.randn(n, device=dev, generator=gen) * 1e-3
        nbytes = 4 * n
        t_copy = timed(lambda: x.clone(), reps)
        copy_bw = 2 * nbytes / t_copy
        nb = (n + args.bucket - 1) // args.bucket
        pad = nb * args.bucket - n

        def q8_encode():
            xb = torch.nn.functional.pad(x, (0, pad)).view(nb, args.bucket)
            lo = xb.amin(dim=1, keepdim=True)
            hi = xb.amax(dim=1, keepdim=True)
            step = (hi - lo) / 255.0
            t = ((xb - lo) / torch.where(step > 0, step, torch.ones_like(step))).clamp_(0, 255)
            q = torch.floor(t + torch.rand_like(t)).clamp_(0, 255).to(torch.uint8)
            return q, lo, step

        q, lo, step = q8_encode()

        def q8_decode():
            return (lo + q.to(torch.float32) * step).view(-1)[:n]

        k = max(1, (n + 99) // 100)
        rows = [
            ("copy", lambda: x.clone(), 2 * nbytes),
            ("fp16 cast", lambda: x.half(), nbytes + 2 * n),
            ("q8 stochastic encode (torch ops)", q8_encode, nbytes + n + 8 * nb),
            ("q8 dequantize (torch ops)", q8_decode, n + 8 * nb + nbytes),
            ("topk 1% of |x|", lambda: torch.topk(x.abs(), k, sorted=False), nbytes + 8 * k),
        ]
        for name, fn, moved in rows:
            t = timed(fn, reps)
            print(f"| {name} | {n} | {t * 1e3:.3f} | {moved} | {moved / t / 1e9:.0f} | "
                  f"{moved / t / copy_bw:.2f} | {t_copy / t:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
