#!/usr/bin/env python3
"""Timing peer for bench/bench_attention: torch.nn.functional.scaled_dot_product_attention on the
same shapes (bf16, causal prefill with GQA; one-token decode over a KV cache), timed with CUDA
events, median of repetitions, printed as one JSON object on stdout.

  python3 tools/peer_sdpa.py --H 32 --Hkv 8 --hd 128 --prefill 2048,8192,32768 \
      --decode 1:8192,1:32768,1:131072,16:8192

Prefill FLOPs use the causal count 2*2*H*L^2*hd/2 (performance-targets.md); decode GB/s counts
the K and V bytes read (B*L*Hkv*hd*2*2) over the time. Decode rotates among several caches when
one fits in L2, like the C++ benchmark. The backend is forced to FlashAttention when it accepts
the shape (enable_gqa first, else k/v expanded to H heads outside the timed region) and falls
back to PyTorch's own choice; the JSON says which ran.
"""
import argparse
import json
import sys


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def time_ms(fn, reps, warmup, torch):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return median(times)


def make_call(torch, F, q, k, v, causal, H, Hkv):
    """Returns (callable, description): FlashAttention with GQA if possible, else expanded k/v."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    attempts = []
    if H != Hkv:
        attempts.append(("flash+enable_gqa", SDPBackend.FLASH_ATTENTION, True, k, v))
        rep = H // Hkv
        ke = k.repeat_interleave(rep, dim=1)
        ve = v.repeat_interleave(rep, dim=1)
        attempts.append(("flash+expanded_kv", SDPBackend.FLASH_ATTENTION, False, ke, ve))
        attempts.append(("default+expanded_kv", None, False, ke, ve))
    else:
        attempts.append(("flash", SDPBackend.FLASH_ATTENTION, False, k, v))
        attempts.append(("default", None, False, k, v))
    for name, backend, gqa, kk, vv in attempts:
        def call(kk=kk, vv=vv, backend=backend, gqa=gqa):
            kw = {"is_causal": causal}
            if gqa:
                kw["enable_gqa"] = True
            if backend is None:
                return F.scaled_dot_product_attention(q, kk, vv, **kw)
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, kk, vv, **kw)
        try:
            call()
            torch.cuda.synchronize()
            return call, name
        except Exception as e:  # backend refused the shape: try the next
            last = repr(e)
            continue
    raise RuntimeError("no SDPA backend ran: " + last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--H", type=int, default=32)
    ap.add_argument("--Hkv", type=int, default=8)
    ap.add_argument("--hd", type=int, default=128)
    ap.add_argument("--prefill", default="2048,8192,32768")
    ap.add_argument("--decode", default="1:8192,1:32768,1:131072,16:8192")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:
        print(json.dumps({"error": "torch not importable: " + repr(e)}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 0
    H, Hkv, hd = args.H, args.Hkv, args.hd
    dev = torch.device("cuda")
    torch.manual_seed(0)
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "H": H, "Hkv": Hkv, "hd": hd, "prefill": [], "decode": []}
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    for L in [int(x) for x in args.prefill.split(",") if x]:
        try:
            q = torch.randn(1, H, L, hd, device=dev, dtype=torch.bfloat16)
            k = torch.randn(1, Hkv, L, hd, device=dev, dtype=torch.bfloat16)
            v = torch.randn(1, Hkv, L, hd, device=dev, dtype=torch.bfloat16)
            call, how = make_call(torch, F, q, k, v, True, H, Hkv)
            reps = max(5, args.reps if L <= 8192 else args.reps // 3)
            ms = time_ms(call, reps, args.warmup, torch)
            flops = 2.0 * 2.0 * H * L * L * hd / 2.0
            out["prefill"].append({"L": L, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12,
                                   "backend": how})
            del q, k, v, call
            torch.cuda.empty_cache()
        except Exception as e:
            out["prefill"].append({"L": L, "error": repr(e)})
    for spec in [x for x in args.decode.split(",") if x]:
        B, L = (int(t) for t in spec.split(":"))
        try:
            kv_bytes = B * L * Hkv * hd * 2 * 2
            sets = max(1, -(-2 * l2 // kv_bytes) + 1) if kv_bytes < 2 * l2 else 1
            q = torch.randn(B, H, 1, hd, device=dev, dtype=torch.bfloat16)
            calls = []
            for _ in range(sets):
                k = torch.randn(B, Hkv, L, hd, device=dev, dtype=torch.bfloat16)
                v = torch.randn(B, Hkv, L, hd, device=dev, dtype=torch.bfloat16)
                calls.append(make_call(torch, F, q, k, v, False, H, Hkv))
            idx = [0]

            def rotate():
                c = calls[idx[0] % len(calls)][0]
                idx[0] += 1
                return c()

            ms = time_ms(rotate, args.reps * 3, args.warmup, torch)
            out["decode"].append({"B": B, "L": L, "ms": ms,
                                  "gbs": kv_bytes / (ms * 1e-3) / 1e9,
                                  "backend": calls[0][1], "rotated_sets": sets})
            del calls, q
            torch.cuda.empty_cache()
        except Exception as e:
            out["decode"].append({"B": B, "L": L, "error": repr(e)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
