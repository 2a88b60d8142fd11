#!/usr/bin/env python3
"""torch_reference.py: the PyTorch baseline that bench_model (ours, C/CUDA) is compared with.

Builds MambaVision-T and GKAVision-T (or any model of configs/) in PyTorch from our own config files, as
timm / the MambaVision repository would train them: channels-last, bf16 autocast over fp32 master weights,
fused AdamW with timm's decay / no-decay groups, drop path, soft-target cross-entropy (label smoothing 0.1
folded into mixup-style targets), gradient clipping at 5.0 (recipe B). It times, on synthetic 224x224
images already on the device, (a) a full training step and (b) an inference forward (eval mode, no_grad),
eagerly and, with --compile, under torch.compile, and prints one line per (model, mode).

The one decision to know: only the recurrences are special kernels. The GKA recurrence (Chebyshev ridge
solve + simple-GLA readout, forward and backward) is the GKA authors' Triton op (gka_chebyshev_gla from
awslabs/hybrid-model-factory, with flash-linear-attention's kernels), imported from --fetched the way
bench/gka/triton_baseline.py does; everything around it (projections, short convs, L2 norms, gates,
RMSNorm) is plain PyTorch, unless --gka-aux fla swaps the convs and the RMSNorm for fla's Triton kernels as
the authors' layer has them. MambaVision's selective scan is NOT mamba_ssm's CUDA kernel (not installed on
the GPU machine): it is a pure-PyTorch chunked scan in fp32 (below), so the MambaVision row is slower than
upstream MambaVision and is for comparison only. On the CPU (or --gka-impl ref) the GKA recurrence is a
plain PyTorch reference of spec gka.md section 3/5.1 (see gka_reference), so shapes, parameter counts and
backward can be checked without a GPU.

  python3 bench/model/torch_reference.py --fetched .fetched/baseline --batch 256 \
      --models gkavision_t,mambavision_t [--compile] [--steps 20] [--warmup 5] [--json OUT.json]
  python3 bench/model/torch_reference.py --device cpu --batch 2 --steps 1 --warmup 0
  python3 bench/model/torch_reference.py --selftest [--device cpu]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
import traceback
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Parameter counts of our C models (vision/, README); the PyTorch models must equal them.
C_MODEL_PARAMS = {"mambavision_t": 31_794_248, "gkavision_t": 31_749_800}


# ---- config files (gka_core/config.c semantics: [section], key = value, '#'/';' comments, include) ---------

def read_cfg(path, entries=None, depth=0):
    """Flat {(section, key): value}; an include line reads the named file (relative to the including one)
    into the top section; a key set twice is an error, as in gka_core/config.c."""
    if depth > 16:
        raise ValueError(f"{path}: includes nested deeper than 16 files")
    entries = {} if entries is None else entries
    section = ""
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            s = raw.strip()
            if not s or s[0] in "#;":
                continue
            if s[0] == "[":
                section = s[1:s.index("]")].strip()
                continue
            key, _, value = s.partition("=")
            key = key.strip()
            cut = len(value)
            for i, ch in enumerate(value):
                if ch in "#;" and (i == 0 or value[i - 1].isspace()):
                    cut = i
                    break
            value = value[:cut].strip()
            if key == "include":
                read_cfg(os.path.join(os.path.dirname(path), value), entries, depth + 1)
                continue
            if (section, key) in entries:
                raise ValueError(f"{path}:{lineno}: duplicate key '{key}' in [{section}]")
            entries[(section, key)] = value
    return entries


def model_config(name):
    path = name if (name.endswith(".cfg") or "/" in name) else os.path.join(REPO, "configs", name + ".cfg")
    e = read_cfg(path)

    def get(sec, key, default, conv):
        return conv(e[(sec, key)]) if (sec, key) in e else default

    def ints(s):
        return [int(x) for x in s.split(",")]

    def boolean(s):
        return s.strip().lower() in ("1", "true", "yes", "on")

    cfg = types.SimpleNamespace(
        name=os.path.basename(path)[:-4],
        in_chans=get("model", "in_chans", 3, int),
        num_classes=get("model", "num_classes", 1000, int),
        img_size=get("model", "img_size", 224, int),
        dim=get("model", "dim", 80, int),
        in_dim=get("model", "in_dim", 32, int),
        stem_stride=get("model", "stem_stride", 4, int),
        depths=get("model", "depths", [1, 3, 8, 4], ints),
        num_heads=get("model", "num_heads", [2, 4, 8, 16], ints),
        window_size=get("model", "window_size", [8, 8, 14, 7], ints),
        mlp_ratio=get("model", "mlp_ratio", 4.0, float),
        drop_path_rate=get("model", "drop_path_rate", 0.2, float),
        layer_scale=get("model", "layer_scale", 0.0, float),
        layer_scale_conv=get("model", "layer_scale_conv", 0.0, float),
        gka_replace_mamba=get("gka", "replace_mamba", False, boolean),
        gka_replace_attention=get("gka", "replace_attention", False, boolean),
        gka_heads=get("gka", "heads", [5, 10], ints),
        gka_head_dim=get("gka", "head_dim", [32, 32], ints),
        gka_use_gate=get("gka", "use_gate", False, boolean),
        gka_num_iter=get("gka", "num_iter", 30, int),
        gka_ridge_ratio=get("gka", "ridge_ratio", 0.02, float),
        gka_bidirectional=get("gka", "bidirectional", False, boolean),
    )
    if cfg.gka_bidirectional:
        raise NotImplementedError(f"{path}: [gka] bidirectional = true is not in the PyTorch reference")
    if cfg.stem_stride not in (1, 2, 4):
        raise ValueError(f"{path}: stem_stride {cfg.stem_stride}: expected 1, 2 or 4")
    return cfg


# ---- the authors' Triton op and fla's kernels, imported as bench/gka/triton_baseline.py does ----------------

def stub_package(name, path):
    """Registers a package without running its __init__ (fla's imports every model; we need a few kernels)."""
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod


class Kernels:
    """What --fetched provides: the authors' gka_chebyshev_gla, and fla's causal conv and RMSNorm."""

    def __init__(self):
        self.gka = None
        self.causal_conv1d = None
        self.rms_norm = None
        self.error = None

    def load(self, fetched, want_aux):
        try:
            fetched = os.path.abspath(fetched)
            if not (os.path.isdir(f"{fetched}/fla") and os.path.isdir(f"{fetched}/gka_cheb")):
                raise FileNotFoundError(f"{fetched} has no fla/ and gka_cheb/ (see bench/gka/README.md)")
            sys.path.insert(0, fetched)
            stub_package("fla", f"{fetched}/fla")
            stub_package("fla.ops", f"{fetched}/fla/ops")
            stub_package("fla.modules", f"{fetched}/fla/modules")
            stub_package("gka_cheb", f"{fetched}/gka_cheb")
            from gka_cheb.gka_chebyshev_solve import gka_chebyshev_gla
            self.gka = gka_chebyshev_gla
            if want_aux:
                from fla.modules.convolution import causal_conv1d
                from fla.modules.layernorm import rms_norm
                self.causal_conv1d, self.rms_norm = causal_conv1d, rms_norm
        except Exception as e:  # reported in every result line; the caller decides whether to go on
            self.error = f"{type(e).__name__}: {e}"
        return self


KERNELS = Kernels()


# ---- GKA recurrence: the authors' op, or a PyTorch reference -----------------------------------------------

def gka_reference(q, k, v, alpha, g, scale, ridge_ratio, num_iter):
    """Spec gka.md section 3 with the Chebyshev solve of section 4, in fp32, tied gates (gk = g), zero
    initial states. q, k, v [S, L, H, K] (k, v already beta-scaled, q and k L2-normalised), alpha, g [S, L, H].
    Returns o [S, L, H, K] in v's dtype.

    Parallel form: H_t = sum_{s<=t} e^{G_t - G_s} k_s k_s^T with G the cumulative sum of g, then all tokens'
    solves iterate together, and o_t = scale sum_{s<=t} e^{G_t - G_s} (q~_t . k_s) v_s (= scale U_t^T q~_t).
    The values are the op's (up to rounding); the gradients are autograd through the unrolled iterations,
    not the op's implicit exact-solve gradients (gka.md 5.2), which is fine for shape and backward checks.
    Memory is O(S H L K^2): meant for the CPU check and small GPU comparisons, not for timing."""
    out_dtype = v.dtype
    with torch.autocast(q.device.type, enabled=False):
        q, k, v, alpha, g = (t.float().transpose(1, 2) for t in (q, k, v, alpha, g))  # [S, H, L, ...]
        L = q.shape[2]
        G = torch.cumsum(g, dim=-1)
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        gam = torch.exp((G[..., :, None] - G[..., None, :]).masked_fill(~causal, float("-inf")))  # [S,H,t,s]
        kk = (k[..., :, None] * k[..., None, :]).flatten(-2)  # [S, H, L, K*K]
        Ht = (gam @ kk).unflatten(-1, (k.shape[-1], k.shape[-1]))  # [S, H, L, K, K]
        f = Ht.flatten(-2).norm(dim=-1)[..., None]  # ||H_t||_F
        lam = ridge_ratio * f
        step = 2.0 / ((1.0 + 2.0 * ridge_ratio) * f)
        r = (1.0 / (1.0 + 2.0 * ridge_ratio)) ** 2 / 4.0
        x_prev, x, omega = torch.zeros_like(q), step * q, 2.0
        for _ in range(num_iter):
            omega = 1.0 / (1.0 - r * omega)
            res = (Ht @ x[..., None]).squeeze(-1) + lam * x - q
            x, x_prev = x - step * omega * res + (omega - 1.0) * (x - x_prev), x
        qt = q + alpha[..., None] * (x - q)
        o = scale * (((qt @ k.transpose(-1, -2)) * gam) @ v)
    return o.transpose(1, 2).to(out_dtype)


@torch.compiler.disable
def gka_triton(q, k, v, alpha, g, scale, ridge_ratio, num_iter):
    """The authors' op, called as their layer calls it (hmf gka.py): q, k, v in the activation dtype, alpha
    in the activation dtype, g fp32 passed as both g and gk (one tensor, so both gradients reach it), chunk
    64, bp_lambda on. Kept out of torch.compile graphs (its inner solve is compiler-disabled anyway)."""
    q, k, v, alpha, g = (t.contiguous() for t in (q, k, v, alpha, g))
    with torch.cuda.device(q.device):
        o, _, _ = KERNELS.gka(q, k, v, alpha, g, g, scale, ridge_strength=ridge_ratio, solver_type="chebyshev",
                              num_iter=num_iter, bp_lambda=True, chunk_size=64)
    return o


@torch.compiler.disable
def fla_short_conv(x, weight):
    return KERNELS.causal_conv1d(x=x.contiguous(), weight=weight.squeeze(1), bias=None, activation="silu",
                                 backend="triton")[0]


@torch.compiler.disable
def fla_rms_norm(x, weight, eps):
    return KERNELS.rms_norm(x.contiguous(), weight, None, eps=eps)


# ---- MambaVision's selective scan: pure-PyTorch fallback ------------------------------------------------------

def linear_scan(a, b, reverse=False):
    """h[t] = a[t] h[t-1] + b[t] (reverse: a[t] h[t+1] + b[t]) along dim 1, zero initial state, fp32, no grad.

    Chunked: the sequence is cut into chunks of c ~ sqrt(L) tokens; all chunks advance together, one token
    per step (c in-place steps over 1/c of the data each), with P the decay accumulated from the chunk's
    start; then a short sequential pass carries the state across chunk boundaries, and one fix-up pass adds
    the carried state. About 5 passes over the [S, L, ...] data and ~2 sqrt(L) small launches; every factor
    is a product of decays, so nothing can overflow."""
    S, L = a.shape[:2]
    rest = a.shape[2:]
    c = max(1, math.ceil(math.sqrt(L)))
    nc = math.ceil(L / c)
    h = b.new_zeros((S, nc * c) + rest)
    P = a.new_zeros((S, nc * c) + rest)  # padded tokens: a = 0, b = 0, so they carry nothing
    h[:, :L] = b
    P[:, :L] = a
    h = h.view((S, nc, c) + rest)
    P = P.view((S, nc, c) + rest)
    steps = range(c - 2, -1, -1) if reverse else range(1, c)
    nb = 1 if reverse else -1
    for t in steps:  # read a[t] (still in P) before P[t] becomes the running product
        h[:, :, t].addcmul_(P[:, :, t], h[:, :, t + nb])
        P[:, :, t].mul_(P[:, :, t + nb])
    if nc > 1:
        carry = h.new_zeros((S, nc) + rest)
        edge = 0 if reverse else c - 1
        chunks = range(nc - 2, -1, -1) if reverse else range(1, nc)
        for j in chunks:
            carry[:, j] = torch.addcmul(h[:, j + nb, edge], P[:, j + nb, edge], carry[:, j + nb])
        h.addcmul_(P, carry.unsqueeze(2))
    return h.view((S, nc * c) + rest)[:, :L]


class LinearScan(torch.autograd.Function):
    """h = linear_scan(a, b) with its adjoint: g[t] = dh[t] + a[t+1] g[t+1] (a reverse scan), da[t] =
    g[t] h[t-1], db = g."""

    @staticmethod
    def forward(ctx, a, b):
        h = linear_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, dh):
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        g = linear_scan(a_next, dh.contiguous(), reverse=True)
        da = torch.cat([torch.zeros_like(g[:, :1]), g[:, 1:] * h[:, :-1]], dim=1)
        return da, g


def selective_scan(x, delta_pre, A, Bm, Cm, D, delta_bias):
    """selective_scan_fn(x, delta, A, B, C, D, z=None, delta_bias, delta_softplus=True) of mamba_ssm as
    MambaVision calls it (spec gkavision.md 2.7 step 5-7), in [S, L, ...] layout, fp32 throughout.
    x, delta_pre [S, L, Ch]; A [Ch, N]; Bm, Cm [S, L, N]; D, delta_bias [Ch]. Returns y [S, L, Ch] fp32."""
    with torch.autocast(x.device.type, enabled=False):
        x, delta_pre, Bm, Cm = x.float(), delta_pre.float(), Bm.float(), Cm.float()
        delta = F.softplus(delta_pre + delta_bias.float())  # threshold 20, as the kernel
        a = torch.exp(delta.unsqueeze(-1) * A)  # [S, L, Ch, N]
        b = (delta * x).unsqueeze(-1) * Bm.unsqueeze(2)
        h = LinearScan.apply(a, b)
        return (h * Cm.unsqueeze(2)).sum(-1) + D.float() * x


# ---- network (spec gkavision.md 2; module names as MambaVision's state_dict, 2.11) ----------------------------

def drop_path(x, p, training):
    """timm DropPath: per sample of the leading dimension (an image, or a window sequence in levels 2-3)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
    return x * mask


class Downsample(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x):
        return self.reduction(x)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, in_dim, dim, stride):
        super().__init__()
        self.proj = nn.Identity()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_chans, in_dim, 3, 2 if stride >= 2 else 1, 1, bias=False),
            nn.BatchNorm2d(in_dim, eps=1e-4), nn.ReLU(),
            nn.Conv2d(in_dim, dim, 3, 2 if stride >= 4 else 1, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4), nn.ReLU())

    def forward(self, x):
        return self.conv_down(self.proj(x))


class ConvBlock(nn.Module):
    def __init__(self, dim, drop_path_rate, layer_scale):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = nn.GELU(approximate="tanh")
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        self.layer_scale = layer_scale > 0
        if self.layer_scale:
            self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        self.drop_path = drop_path_rate

    def forward(self, x):
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.layer_scale:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + drop_path(y, self.drop_path, self.training)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        S, L, C = x.shape
        q, k, v = self.qkv(x).reshape(S, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)  # MambaVision's fused_attn path; scale dh^-1/2
        return self.proj(o.transpose(1, 2).reshape(S, L, C))


class MambaVisionMixer(nn.Module):
    """Spec gkavision.md 2.7: d_state 8, d_conv 3, expand 1; dt bias added twice; non-causal 'same' convs."""

    def __init__(self, dim, d_state=8, d_conv=3):
        super().__init__()
        self.Ch, self.N = dim // 2, d_state
        self.R = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, dim, bias=False)
        self.x_proj = nn.Linear(self.Ch, self.R + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.R, self.Ch, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.Ch, 1))
        self.D = nn.Parameter(torch.ones(self.Ch))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.conv1d_x = nn.Conv1d(self.Ch, self.Ch, d_conv, padding=d_conv // 2, groups=self.Ch, bias=False)
        self.conv1d_z = nn.Conv1d(self.Ch, self.Ch, d_conv, padding=d_conv // 2, groups=self.Ch, bias=False)

    def forward(self, u):
        xz = self.in_proj(u).transpose(1, 2)  # [S, C, L]
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d_x(x)).transpose(1, 2)  # [S, L, Ch]
        z = F.silu(self.conv1d_z(z)).transpose(1, 2)
        dt, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], dim=-1)
        dt = self.dt_proj(dt)  # includes the bias once; the scan adds it again (upstream quirk)
        y = selective_scan(x, dt, -torch.exp(self.A_log.float()), Bm, Cm, self.D, self.dt_proj.bias)
        return self.out_proj(torch.cat([y.to(z.dtype), z], dim=-1))


class GatedKalmaNet(nn.Module):
    """The GKA layer of spec gka.md 2 as the authors' layer computes it (hmf gka.py: q/k L2 norm
    x / (||x|| + 1e-6), beta + 1e-6 on k and v, fp32 forgetting gate, per-head RMSNorm eps 1e-6), with
    Hq = Hk = Hv = heads, causal short convs of width 4 + SiLU on q, k, v, no bias anywhere except
    b_proj / alpha_proj. use_gate: g_proj and RMSNorm(o) * silu(g) (FusedRMSNormGated)."""

    def __init__(self, dim, heads, head_dim, use_gate, num_iter, ridge_ratio, impl, aux, conv_size=4,
                 norm_eps=1e-6):
        super().__init__()
        self.H, self.K = heads, head_dim
        self.num_iter, self.ridge_ratio, self.eps = num_iter, ridge_ratio, norm_eps
        self.impl, self.aux = impl, aux
        W = heads * head_dim
        self.q_proj = nn.Linear(dim, W, bias=False)
        self.k_proj = nn.Linear(dim, W, bias=False)
        self.v_proj = nn.Linear(dim, W, bias=False)
        self.a_proj = nn.Linear(dim, heads, bias=False)
        self.b_proj = nn.Linear(dim, heads, bias=True)
        self.alpha_proj = nn.Linear(dim, heads, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(0, 16)))
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        for name in ("q_conv1d", "k_conv1d", "v_conv1d"):  # fla ShortConvolution: an nn.Conv1d, [W, 1, 4]
            setattr(self, name, nn.Conv1d(W, W, conv_size, groups=W, padding=conv_size - 1, bias=False))
        self.use_gate = use_gate
        if use_gate:
            self.g_proj = nn.Linear(dim, W, bias=False)
        self.o_norm = nn.Module()
        self.o_norm.weight = nn.Parameter(torch.ones(head_dim))
        self.o_proj = nn.Linear(W, dim, bias=False)

    def short_conv(self, conv, x):
        if self.aux == "fla":
            return fla_short_conv(x, conv.weight)
        L = x.shape[1]
        return F.silu(conv(x.transpose(1, 2))[..., :L]).transpose(1, 2)

    def rms_norm(self, o):
        if self.aux == "fla" and not self.use_gate:
            return fla_rms_norm(o, self.o_norm.weight, self.eps)
        o32 = o.float()
        return (o32 * torch.rsqrt(o32.pow(2).mean(-1, keepdim=True) + self.eps) * self.o_norm.weight).to(o.dtype)

    def forward(self, x):
        S, L, _ = x.shape
        q = self.short_conv(self.q_conv1d, self.q_proj(x)).reshape(S, L, self.H, self.K)
        k = self.short_conv(self.k_conv1d, self.k_proj(x)).reshape(S, L, self.H, self.K)
        v = self.short_conv(self.v_conv1d, self.v_proj(x)).reshape(S, L, self.H, self.K)
        q = q / (torch.linalg.vector_norm(q, dim=-1, keepdim=True).to(q) + 1e-6)
        k = k / (torch.linalg.vector_norm(k, dim=-1, keepdim=True).to(k) + 1e-6)
        beta = self.b_proj(x).sigmoid()[..., None] + 1e-6
        k = (beta * k).to(k.dtype)
        v = (beta * v).to(v.dtype)
        alpha = self.alpha_proj(x).sigmoid()
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias)
        core = gka_triton if self.impl == "triton" else gka_reference
        o = core(q, k, v, alpha, g, self.K ** -0.5, self.ridge_ratio, self.num_iter)
        o = self.rms_norm(o)
        if self.use_gate:
            o = o * F.silu(self.g_proj(x).reshape(S, L, self.H, self.K))
        return self.o_proj(o.reshape(S, L, self.H * self.K))


class Block(nn.Module):
    def __init__(self, dim, mixer, mlp_ratio, drop_path_rate, layer_scale):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path_rate
        self.layer_scale = layer_scale > 0
        if self.layer_scale:
            self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        y = self.mixer(self.norm1(x))
        x = x + drop_path(y * self.gamma_1 if self.layer_scale else y, self.drop_path, self.training)
        y = self.mlp(self.norm2(x))
        return x + drop_path(y * self.gamma_2 if self.layer_scale else y, self.drop_path, self.training)


def window_partition(x, w):
    B, C, H, W = x.shape
    x = x.view(B, C, H // w, w, W // w, w)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, w * w, C)


def window_reverse(windows, w, H, W):
    C = windows.shape[2]
    B = windows.shape[0] // ((H // w) * (W // w))
    x = windows.reshape(B, H // w, W // w, w, w, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)


class Level(nn.Module):
    def __init__(self, blocks, conv, window, downsample_dim):
        super().__init__()
        self.conv, self.window = conv, window
        self.blocks = nn.ModuleList(blocks)
        self.downsample = Downsample(downsample_dim) if downsample_dim else None

    def forward(self, x):
        if self.conv:
            for blk in self.blocks:
                x = blk(x)
        else:
            _, _, H, W = x.shape
            w = self.window
            pad_r, pad_b = (w - W % w) % w, (w - H % w) % w
            if pad_r or pad_b:
                x = F.pad(x, (0, pad_r, 0, pad_b))
            Hp, Wp = H + pad_b, W + pad_r
            x = window_partition(x, w)
            for blk in self.blocks:
                x = blk(x)
            x = window_reverse(x, w, Hp, Wp)
            if pad_r or pad_b:
                x = x[:, :, :H, :W]
            x = x.contiguous(memory_format=torch.channels_last)
        return self.downsample(x) if self.downsample is not None else x


class VisionModel(nn.Module):
    """MambaVision (and GKAVision: a GKA layer in place of the Mamba mixer, spec gkavision.md 7.3)."""

    def __init__(self, cfg, gka_impl, gka_aux):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.in_dim, cfg.dim, cfg.stem_stride)
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        levels, k = [], 0
        for i, d in enumerate(cfg.depths):
            C = cfg.dim * 2 ** i
            blocks = []
            for j in range(d):
                rate = dpr[k + j]
                if i < 2:
                    blocks.append(ConvBlock(C, rate, cfg.layer_scale_conv))
                    continue
                attention = j >= (d + 1) // 2  # d even: the last d/2; d odd: the last floor(d/2)
                if (attention and cfg.gka_replace_attention) or (not attention and cfg.gka_replace_mamba):
                    mixer = GatedKalmaNet(C, cfg.gka_heads[i - 2], cfg.gka_head_dim[i - 2], cfg.gka_use_gate,
                                          cfg.gka_num_iter, cfg.gka_ridge_ratio, gka_impl, gka_aux)
                elif attention:
                    mixer = Attention(C, cfg.num_heads[i])
                else:
                    mixer = MambaVisionMixer(C)
                blocks.append(Block(C, mixer, cfg.mlp_ratio, rate, cfg.layer_scale))
            k += d
            levels.append(Level(blocks, i < 2, cfg.window_size[i], C if i < len(cfg.depths) - 1 else 0))
        self.levels = nn.ModuleList(levels)
        nf = cfg.dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.BatchNorm2d(nf, eps=1e-5)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(nf, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        """Spec 2.10: every Linear trunc-normal(0.02) with zero bias (GKA's and dt_proj included); LayerNorm
        1/0; convolutions keep PyTorch's default; A_log, D, dt_bias keep their module init."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        x = torch.flatten(self.avgpool(self.norm(x)), 1)
        return self.head(x)


# ---- training step and timing -----------------------------------------------------------------------------

def adamw(model, lr, wd, device):
    """timm's create_optimizer_v2 groups: ndim <= 1 or '.bias' -> no decay; torch AdamW, fused if possible."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=device.type == "cuda"), \
            "foreach" if device.type == "cuda" else "single-tensor"


def soft_targets(B, classes, device, smoothing=0.1, lam=0.7):
    """Mixup-style targets with label smoothing folded in (timm mixup_target), one lam per batch."""
    y = torch.arange(B, device=device) % classes
    off, on = smoothing / classes, 1.0 - smoothing + smoothing / classes
    one = torch.full((B, classes), off, device=device).scatter_(1, y[:, None], on)
    return lam * one + (1.0 - lam) * one.flip(0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def gib(n):
    return n / 2 ** 30


def run_one(cfg, mode, args, device, impl, aux):
    """Builds the model, times training and inference; returns a result dict (error set on failure)."""
    res = {"model": cfg.name, "mode": mode, "batch": args.batch, "img_size": args.img_size, "device": str(device)}
    notes = []
    has_gka = cfg.gka_replace_mamba or cfg.gka_replace_attention
    has_mamba = (not cfg.gka_replace_mamba) and any(d >= 1 for d in cfg.depths[2:])
    if has_gka:
        res["gka_impl"] = "authors' Triton op (gka_chebyshev_gla)" if impl == "triton" else \
            "PyTorch reference (gka_reference, not timed-comparable)"
        res["gka_aux"] = "fla Triton conv + RMSNorm" if aux == "fla" else "PyTorch conv + RMSNorm"
        if impl != "triton":
            notes.append("GKA recurrence: PyTorch reference" + (f" ({KERNELS.error})" if KERNELS.error else ""))
    if has_mamba:
        res["selective_scan"] = "pure-PyTorch chunked scan, fp32 (fallback: mamba_ssm not used)"
        notes.append("selective scan: pure-PyTorch fallback, not mamba_ssm")
    model = opt = fwd = x = targets = None
    try:
        torch.manual_seed(args.seed)
        model = VisionModel(cfg, impl, aux).to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        res["params"] = sum(p.numel() for p in model.parameters())
        expect = C_MODEL_PARAMS.get(cfg.name)
        res["params_c_model"] = expect
        opt, res["adamw"] = adamw(model, args.lr, args.weight_decay, device)
        params = [p for p in model.parameters()]
        if mode == "compile":
            # the authors' op is compiler-disabled, so each GKA block's frame is compiled on its own, once per
            # block (their drop-path rates differ): the default limit of 8 would leave the rest eager
            for knob in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, knob):
                    setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
            fwd = torch.compile(model, mode=args.compile_mode)
            res["compile_mode"] = args.compile_mode
        else:
            fwd = model
        x = torch.randn(args.batch, cfg.in_chans, args.img_size, args.img_size, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = soft_targets(args.batch, cfg.num_classes, device)
        amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp)

        def train_step():
            with torch.autocast(**amp):
                logits = fwd(x)
                loss = torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
            loss.backward()
            if args.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, args.clip_grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
            res["loss"] = loss.detach()

        def infer_step():
            with torch.no_grad(), torch.autocast(**amp):
                res["logits_shape"] = list(fwd(x).shape)

        cuda = device.type == "cuda"
        for phase, step, train in (("train", train_step, True), ("infer", infer_step, False)):
            model.train(train)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                res[f"{phase}_static_gb"] = gib(torch.cuda.memory_allocated(device))
            # the first step (Triton autotuning, cuDNN benchmark, compilation) is neither warm-up nor timed
            res[f"{phase}_first_step_s"] = timed(step, device)
            for _ in range(args.warmup):
                step()
            t = [timed(step, device) for _ in range(args.steps)]
            res[f"{phase}_step_ms_median"] = 1e3 * statistics.median(t)
            res[f"{phase}_step_ms_all"] = [round(1e3 * s, 3) for s in t]
            res[f"{phase}_images_per_s"] = args.batch / statistics.median(t)
            if cuda:
                res[f"{phase}_peak_gb"] = gib(torch.cuda.max_memory_allocated(device))
                res[f"{phase}_peak_reserved_gb"] = gib(torch.cuda.max_memory_reserved(device))
        res["loss"] = float(res["loss"])
        if not math.isfinite(res["loss"]):
            notes.append(f"non-finite loss {res['loss']}")
    except Exception as e:  # a failing compile or an OOM is reported, the other rows still run
        res["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        res["traceback"] = traceback.format_exc(limit=8)
        if args.verbose:
            print(res["traceback"], file=sys.stderr)
    finally:
        res["notes"] = notes
        del model, opt, fwd, x, targets
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if mode == "compile":
            torch._dynamo.reset()
    return res


def report_line(r):
    head = f"{r['model']:<14s} {r['mode']:<8s} batch {r['batch']:4d}"
    if "params" in r:
        exp = r.get("params_c_model")
        head += f"  params {r['params']:,}" + ("" if exp is None else (" (= C model)" if r["params"] == exp else
                                                                         f" (C model {exp:,}: MISMATCH)"))
    if "error" in r:
        return head + f"  FAILED: {r['error']}"
    mem = ""
    if "train_peak_gb" in r:
        mem = f", peak memory train {r['train_peak_gb']:.1f} GiB / inference {r['infer_peak_gb']:.1f} GiB"
    line = (f"{head}: train {r['train_images_per_s']:9.1f} images/s, inference {r['infer_images_per_s']:9.1f} "
            f"images/s{mem} (first steps {r['train_first_step_s']:.1f} s / {r['infer_first_step_s']:.1f} s)")
    if r["notes"]:
        line += "  [" + "; ".join(r["notes"]) + "]"
    return line


# ---- self-test: the pieces against independent references -------------------------------------------------

def selftest(device):
    ok = True

    def check(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {name}: {err:.2e} (tolerance {tol:.0e})")

    print("self-test on", device)
    # 1. gka_reference against the worked example of spec gka.md 5.3 (Chebyshev, n = 30)
    dd = dict(dtype=torch.float64, device=device)
    q = torch.tensor([[1, 0], [0.6, 0.8], [0, 1]], **dd).view(1, 3, 1, 2)
    k = torch.tensor([[0.4, 0.3], [0, 0.7], [0.6, 0]], **dd).view(1, 3, 1, 2)
    v = torch.tensor([[1, 2], [-1, 0.5], [0.3, -0.2]], **dd).view(1, 3, 1, 2)
    alpha = torch.tensor([0.5, 0.7, 0.9], **dd).view(1, 3, 1)
    g = torch.full((1, 3, 1), math.log(0.9), **dd)
    want = torch.tensor([[0.6961925895, 1.3923851791], [0.4032350131, 1.7589459989],
                         [-0.6321016040, 0.9298557637]], **dd)
    o = gka_reference(q, k, v, alpha, g, 2 ** -0.5, 0.02, 30).view(3, 2).double()
    check("GKA reference vs spec gka.md 5.3 (fp32 inside)", (o - want).abs().max().item(), 1e-5)
    # 2. the chunked linear scan and its adjoint against a sequential loop, several lengths
    gen = torch.Generator(device="cpu").manual_seed(0)
    for L in (1, 5, 49, 196, 200):
        a = torch.rand(3, L, 4, 2, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        b = torch.randn(3, L, 4, 2, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        h = LinearScan.apply(a, b)
        hs, ref = [], torch.zeros_like(b[:, 0])
        for t in range(L):
            ref = a[:, t] * ref + b[:, t]
            hs.append(ref)
        ref = torch.stack(hs, 1)
        w = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(device)
        ga, gb = torch.autograd.grad((h * w).sum(), (a, b))
        ra, rb = torch.autograd.grad((ref * w).sum(), (a, b))
        err = max((h - ref).abs().max().item(), (ga - ra).abs().max().item(), (gb - rb).abs().max().item())
        check(f"linear scan L={L} (values and gradients vs a sequential loop)", err, 1e-12)
    # 3. selective_scan against spec gkavision.md 2.7 step 5-7 written token by token
    S, L, Ch, N = 2, 49, 6, 8
    x, dpre, Bm, Cm = (torch.randn(S, L, n, generator=gen, dtype=torch.float64).to(device)
                       for n in (Ch, Ch, N, N))
    A = -torch.arange(1, N + 1, dtype=torch.float64, device=device).repeat(Ch, 1)
    D, bias = (torch.randn(Ch, generator=gen, dtype=torch.float64).to(device) for _ in range(2))
    y = selective_scan(x, dpre, A, Bm, Cm, D, bias).double()
    h, ys = torch.zeros(S, Ch, N, dtype=torch.float64, device=device), []
    for t in range(L):
        delta = F.softplus(dpre[:, t] + bias)  # [S, Ch]
        h = torch.exp(delta[..., None] * A) * h + (delta * x[:, t])[..., None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + D * x[:, t])
    check("selective scan vs the token-by-token definition (fp32 inside)",
          ((y - torch.stack(ys, 1)).abs().max() / torch.stack(ys, 1).abs().max()).item(), 1e-5)
    # 4. the authors' op against the reference (bf16 op vs fp32 definition: spec gka.md 9.11 expects ~1e-2)
    if device.type == "cuda" and KERNELS.gka is not None:
        torch.manual_seed(7)
        for S, L, H, K in ((2, 196, 5, 32), (2, 49, 10, 32)):
            q = F.normalize(torch.randn(S, L, H, K, device=device), dim=-1)
            k = F.normalize(torch.randn(S, L, H, K, device=device), dim=-1) * 0.6
            v = torch.randn(S, L, H, K, device=device)
            alpha = torch.sigmoid(torch.randn(S, L, H, device=device))
            g = torch.log(0.8 + 0.19 * torch.rand(S, L, H, device=device))
            bf = [t.to(torch.bfloat16) for t in (q, k, v, alpha)]
            o_t = gka_triton(bf[0], bf[1], bf[2], bf[3], g, K ** -0.5, 0.02, 30).float()
            o_r = gka_reference(*[t.float() for t in bf[:4]], g, K ** -0.5, 0.02, 30)
            err = ((o_t - o_r).pow(2).mean().sqrt() / o_r.pow(2).mean().sqrt()).item()
            check(f"authors' op vs reference, {S}x{L}x{H}x{K} (error ratio)", err, 0.3)
    elif device.type == "cuda":
        print(f"  skip authors' op: {KERNELS.error}")
    print("self-test", "passed" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetched", default=os.path.join(REPO, ".fetched", "baseline"),
                    help="folder with gka_cheb/ (the authors' ops/chebyshev) and fla/ (default: %(default)s)")
    ap.add_argument("--models", default="gkavision_t,mambavision_t",
                    help="comma-separated config names (configs/NAME.cfg) or .cfg paths")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per phase (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps after the first (compile) step")
    ap.add_argument("--compile", action="store_true", help="also run each model under torch.compile")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode: default, max-autotune-no-cudagraphs, ... (default: %(default)s)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gka-impl", choices=("auto", "triton", "ref"), default="auto",
                    help="GKA recurrence: the authors' Triton op, or the PyTorch reference (auto: Triton on "
                         "CUDA when it loads, else the reference)")
    ap.add_argument("--gka-aux", choices=("torch", "fla"), default="torch",
                    help="short convs and RMSNorm of the GKA layer: PyTorch ops, or fla's Triton kernels as "
                         "in the authors' layer (CUDA only)")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                    help="bf16 autocast (default on)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip-grad", type=float, default=5.0, help="global-norm clipping, 0: off")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--selftest", action="store_true", help="check the reference pieces and exit")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failed runs")
    args = ap.parse_args()
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("need --batch >= 1, --steps >= 1, --warmup >= 0")

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as timm's train.py
    want_triton = device.type == "cuda" and args.gka_impl in ("auto", "triton")
    if want_triton or (device.type == "cuda" and args.selftest):
        KERNELS.load(args.fetched, want_aux=args.gka_aux == "fla")
    if args.gka_impl == "triton" and KERNELS.gka is None:
        sys.exit(f"--gka-impl triton: the authors' op is not usable here: "
                 f"{KERNELS.error or 'it needs a CUDA device'}")
    impl = "triton" if (want_triton and KERNELS.gka is not None) else "ref"
    aux = args.gka_aux
    if aux == "fla" and (impl != "triton" or KERNELS.causal_conv1d is None):
        print(f"--gka-aux fla unavailable ({KERNELS.error or 'needs CUDA and the Triton op'}): PyTorch ops used")
        aux = "torch"

    env = {"torch": torch.__version__, "device": str(device)}
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    print(f"torch {env['torch']}, triton {env['triton']}, device {env.get('device_name', device)}; "
          f"GKA recurrence: {'authors Triton op' if impl == 'triton' else 'PyTorch reference'}"
          + (f" (Triton op not loaded: {KERNELS.error})" if KERNELS.error else "")
          + f"; GKA convs/RMSNorm: {aux}; MambaVision selective scan: pure-PyTorch fallback (mamba_ssm not used)")
    print(f"bf16 autocast {'on' if args.amp else 'off'}, channels-last {'on' if args.channels_last else 'off'}, "
          f"AdamW lr {args.lr} wd {args.weight_decay}, clip {args.clip_grad}, batch {args.batch}, "
          f"{args.img_size}x{args.img_size}, median of {args.steps} steps after 1 + {args.warmup}", flush=True)

    if args.selftest:
        sys.exit(0 if selftest(device) else 1)

    results = []
    modes = ["eager"] + (["compile"] if args.compile else [])
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        cfg = model_config(name)
        for mode in modes:
            r = run_one(cfg, mode, args, device, impl, aux)
            results.append(r)
            print(report_line(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "args": vars(args), "results": results}, f, indent=1)
        print("wrote", args.json)
    bad = [r for r in results if r.get("params_c_model") not in (None, r.get("params"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
