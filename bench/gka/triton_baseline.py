"""Times the GKA authors' Triton op (awslabs/hybrid-model-factory, gka_chebyshev_gla) and fla's Gated DeltaNet
on the inputs that bench_gka dumped, and reports how far the authors' outputs and gradients are from ours.

Usage: python3 triton_baseline.py FETCHED_DIR DUMP_DIR [B T H K ...]
FETCHED_DIR holds fla/ (flash-linear-attention v0.4.1, natural-exp gates, which the authors' kernels need) and
gka_cheb/ (the authors' ops/chebyshev folder). Neither is part of this repository: bench/gka/README.md says how
to bring them. Shapes without a dump (no CUDA twin of ours for them) are timed with fresh random inputs.
"""
import os
import sys
import types

import numpy as np
import torch


def stub_package(name, path):
    """Registers a package without running its __init__ (fla's imports every model; we need three kernels)."""
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod


def load(dump, B, T, H, K, name, shape):
    for ext, dt in (("bf16", np.uint16), ("f32", np.float32)):
        path = f"{dump}/gka_{B}_{T}_{H}_{K}_{name}.{ext}"
        if os.path.exists(path):
            a = torch.from_numpy(np.fromfile(path, dtype=dt).reshape(shape))
            return (a.view(torch.bfloat16) if ext == "bf16" else a).cuda()
    return None


def err_ratio(a, b):
    a, b = a.float(), b.float()
    return ((a - b).pow(2).mean().sqrt() / (b.pow(2).mean().sqrt() + 1e-8)).item()


def median_ms(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return sorted(times)[len(times) // 2]


def random_inputs(B, T, H, K, seed=7):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(B, T, H, K, device="cuda", generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, device="cuda", generator=g), dim=-1)
    k = k * torch.sigmoid(torch.rand(B, T, H, 1, device="cuda", generator=g))
    v = torch.randn(B, T, H, K, device="cuda", generator=g)
    do = torch.randn(B, T, H, K, device="cuda", generator=g)
    gate = torch.log(0.8 + 0.19 * torch.rand(B, T, H, device="cuda", generator=g))
    alpha = torch.sigmoid(torch.rand(B, T, H, device="cuda", generator=g))
    bf = torch.bfloat16
    return q.to(bf), k.to(bf), v.to(bf), do.to(bf), gate.float(), alpha.float()


def limit_autotune(spec):
    """GKA_TRITON_CONFIG=W,S: every autotuned kernel keeps only its configs with num_warps W and num_stages S
    (all of them when none match). At the language shape full autotuning compiles for longer than one device
    call lasts; with one config the baseline's times are an upper bound on its tuned times."""
    import triton
    w, s = (int(x) for x in spec.split(","))
    orig = triton.autotune

    def autotune(configs, key, **kw):
        keep = [c for c in configs if c.num_warps == w and c.num_stages == s] or configs
        return orig(configs=keep, key=key, **kw)

    triton.autotune = autotune
    print(f"autotuning limited to num_warps {w}, num_stages {s} (GKA_TRITON_CONFIG)")


def main():
    fetched, dump = sys.argv[1], sys.argv[2]
    if os.environ.get("GKA_TRITON_CONFIG"):
        limit_autotune(os.environ["GKA_TRITON_CONFIG"])
    shapes = [int(x) for x in sys.argv[3:]] or [256, 196, 5, 32, 256, 49, 10, 32, 4, 4096, 16, 128]
    sys.path.insert(0, fetched)
    stub_package("fla", f"{fetched}/fla")
    stub_package("fla.ops", f"{fetched}/fla/ops")
    stub_package("fla.modules", f"{fetched}/fla/modules")
    stub_package("gka_cheb", f"{fetched}/gka_cheb")
    from gka_cheb.gka_chebyshev_solve import gka_chebyshev_gla
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for i in range(0, len(shapes), 4):
        B, T, H, K = shapes[i:i + 4]
        ours = load(dump, B, T, H, K, "q", (B, T, H, K)) is not None
        if ours:
            q, k, v, do = (load(dump, B, T, H, K, n, (B, T, H, K)) for n in ("q", "k", "v", "do"))
            gate, alpha = (load(dump, B, T, H, K, n, (B, T, H)) for n in ("g", "alpha"))
        else:
            q, k, v, do, gate, alpha = random_inputs(B, T, H, K)
        scale = K ** -0.5
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        g_leaf = gate.clone().requires_grad_(True)
        a_leaf = alpha.to(torch.bfloat16).clone().requires_grad_(True)

        def fwd():
            o, _, _ = gka_chebyshev_gla(leaves[0], leaves[1], leaves[2], a_leaf, g_leaf, g_leaf, scale,
                                        ridge_strength=0.02, num_iter=30, bp_lambda=True, chunk_size=64)
            return o

        def fwd_bwd():
            for t in leaves + [g_leaf, a_leaf]:
                t.grad = None
            fwd().backward(do)

        t_f = median_ms(lambda: fwd())
        t_fb = median_ms(fwd_bwd)
        line = f"authors' Triton  B {B:4d} T {T:5d} H {H:2d} K {K:3d}  fwd {t_f:8.3f} ms  fwd+bwd {t_fb:8.3f} ms"
        if ours:
            with torch.no_grad():
                o = fwd()
            fwd_bwd()
            names = ["o", "dq", "dk", "dv", "dg", "dalpha"]
            theirs = [o, leaves[0].grad, leaves[1].grad, leaves[2].grad, g_leaf.grad, a_leaf.grad]
            shp = {"o": (B, T, H, K), "dq": (B, T, H, K), "dk": (B, T, H, K), "dv": (B, T, H, K),
                   "dg": (B, T, H), "dalpha": (B, T, H)}
            errs = [f"{n} {err_ratio(t, load(dump, B, T, H, K, n, shp[n])):.2e}" for n, t in zip(names, theirs)]
            line += "  | theirs vs ours, error ratio: " + ", ".join(errs)
        print(line, flush=True)

        # second anchor: fla's Gated DeltaNet on inputs of the same shape
        beta = torch.sigmoid(torch.randn(B, T, H, device="cuda")).to(torch.bfloat16).requires_grad_(True)
        gq, gk_, gv = (t.clone().requires_grad_(True) for t in (q, k, v))
        gg = gate.clone().requires_grad_(True)

        def gdn_fb():
            for t in (gq, gk_, gv, gg, beta):
                t.grad = None
            o, _ = chunk_gated_delta_rule(gq, gk_, gv, gg, beta, scale=scale)
            o.backward(do)

        def gdn_f():
            with torch.no_grad():
                chunk_gated_delta_rule(gq, gk_, gv, gg, beta, scale=scale)

        print(f"fla Gated DeltaNet B {B:4d} T {T:5d} H {H:2d} K {K:3d}  fwd {median_ms(gdn_f):8.3f} ms  "
              f"fwd+bwd {median_ms(gdn_fb):8.3f} ms", flush=True)


if __name__ == "__main__":
    main()
