"""The in-place KV cache of `t3_decoder` (both T3 families).

Every attention of the decoder is one ONNX Runtime `com.microsoft::GroupQueryAttention`
node whose `past_key`/`past_value` inputs are graph inputs of a fixed capacity and whose
`present_key`/`present_value` outputs are graph outputs of the same shape. When the
engine binds each `present_*` output to the buffer it gives as `past_*` (IoBinding), the
kernel writes the new positions into that buffer and copies nothing: a decode step costs
the same at position 1000 as at position 50, and the same binding keeps a CUDA cache on
the device.

Graph contract (docs/BUNDLE.md):
  inputs   inputs_embeds [B, seq, D]; past_len [1] (int64, positions already cached);
           past_key_i, past_value_i [B, H, capacity, hd]
  outputs  logits [B, seq, V]; present_key_i, present_value_i [B, H, capacity, hd]
The multilingual decoder adds the last output alignment [seq, capacity]: the mean, over its
aligned heads, of their attention probabilities for batch row 0 (`attention_probs`).
The new rows take positions past_len .. past_len + seq - 1 (needs past_len + seq <=
capacity); they attend causally to everything before them. ONNX Runtime's CPU kernel
needs batch 1 when seq > 1 and past_len > 0 (a prefill after a cached prefix).

The torch module of each family runs the same arithmetic eagerly (the reference
modules' weights and norms, `attend` below), and the export checks it against the
reference HF forward with a DynamicCache before ONNX Runtime is checked against it.
"""

from __future__ import annotations

import torch


class GroupQueryAttention(torch.autograd.Function):
    """softmax(q k^T * scale + causal) v over the cache after writing k, v into it.

    q [B, S, Hq*hd], k/v [B, S, Hkv*hd], past_k/past_v [B, Hkv, C, hd], seqlens_k [B] int32
    (total - 1), total int32 scalar. Returns (out [B, S, Hq*hd], present_k, present_v)."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total, num_heads: int, kv_heads: int, scale: float):
        b, s, _ = q.shape
        hd = past_k.shape[-1]
        t = int(total)
        p = t - s
        kk = k.reshape(b, s, kv_heads, hd).transpose(1, 2)
        vv = v.reshape(b, s, kv_heads, hd).transpose(1, 2)
        present_k, present_v = past_k.clone(), past_v.clone()
        present_k[:, :, p:t] = kk
        present_v[:, :, p:t] = vv
        keys = present_k[:, :, :t].repeat_interleave(num_heads // kv_heads, dim=1)
        values = present_v[:, :, :t].repeat_interleave(num_heads // kv_heads, dim=1)
        qq = q.reshape(b, s, num_heads, hd).transpose(1, 2)
        scores = (qq @ keys.transpose(-1, -2)) * scale
        visible = torch.arange(t)[None, :] <= (torch.arange(s) + p)[:, None]
        scores = scores.masked_fill(~visible, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ values
        return out.transpose(1, 2).reshape(b, s, num_heads * hd), present_k, present_v

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total, num_heads, kv_heads, scale):
        out, present_k, present_v = g.op("com.microsoft::GroupQueryAttention", q, k, v, past_k, past_v, seqlens_k,
                                         total, num_heads_i=num_heads, kv_num_heads_i=kv_heads, scale_f=scale,
                                         outputs=3)
        out.setType(q.type())
        present_k.setType(past_k.type())
        present_v.setType(past_v.type())
        return out, present_k, present_v


class CacheLengths:
    """What every layer needs from `past_len` [1] (int64) and the input length."""

    def __init__(self, inputs_embeds: torch.Tensor, past_len: torch.Tensor):
        seq = torch._shape_as_tensor(inputs_embeds)[1]
        self.positions = (torch.arange(seq) + past_len[0])[None]  # [1, seq] int64
        total = past_len[0] + seq
        self.total = total.to(torch.int32)  # scalar
        ones = torch.ones_like(inputs_embeds[:, 0, 0], dtype=torch.int32)  # [B]
        self.seqlens_k = ones * (self.total - 1)


def attend(q, k, v, past_k, past_v, lengths: CacheLengths, num_heads: int, kv_heads: int, scale: float):
    """q/k/v as [B, S, heads*hd] (after any rotary); returns (out, present_k, present_v)."""
    return GroupQueryAttention.apply(q, k, v, past_k, past_v, lengths.seqlens_k, lengths.total, num_heads,
                                     kv_heads, float(scale))


def attention_probs(q: torch.Tensor, keys: torch.Tensor, lengths: CacheLengths, scale: float) -> torch.Tensor:
    """One head's attention probabilities, as the reference's eager attention computes them:
    q [seq, hd] (rotary applied) against keys [capacity, hd] (the present cache of its KV
    head), `softmax(q k^T * scale)` over the positions each row sees (causal: position <=
    past_len + row; later cache positions, written or not, are never read). [seq, capacity],
    0 where a position is not visible. `Where` (not an additive mask) keeps whatever an
    unwritten cache position holds out of the result."""
    scores = (q @ keys.transpose(0, 1)) * scale
    capacity = torch._shape_as_tensor(keys)[0]
    visible = torch.arange(capacity)[None, :] <= lengths.positions[0][:, None]
    return torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)


ALIGNMENT = "alignment"


def io_names(n_layers: int, alignment: bool = False):
    """Graph input / output names; `alignment` adds the multilingual decoder's last output."""
    ins, outs = ["inputs_embeds", "past_len"], ["logits"]
    for i in range(n_layers):
        ins += [f"past_key_{i}", f"past_value_{i}"]
        outs += [f"present_key_{i}", f"present_value_{i}"]
    if alignment:
        outs.append(ALIGNMENT)
    return ins, outs


def dynamic_axes(n_layers: int, alignment: bool = False) -> dict:
    axes = {"inputs_embeds": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for i in range(n_layers):
        for kind in ("key", "value"):
            axes[f"past_{kind}_{i}"] = {0: "batch", 2: "capacity"}
            axes[f"present_{kind}_{i}"] = {0: "batch", 2: "capacity"}
    if alignment:
        axes[ALIGNMENT] = {0: "seq", 1: "capacity"}
    return axes


def example_inputs(g: torch.Generator, n_layers: int, d: int, kv_heads: int, hd: int, batch: int, seq: int,
                   past: int, capacity: int) -> tuple:
    """Random embeds and a cache holding `past` random positions (zeros after them, which
    is what ONNX Runtime writes past the end when present is not bound to past)."""
    x = [torch.randn(batch, seq, d, generator=g), torch.tensor([past], dtype=torch.int64)]
    for _ in range(2 * n_layers):
        kv = torch.zeros(batch, kv_heads, capacity, hd)
        kv[:, :, :past] = torch.randn(batch, kv_heads, past, hd, generator=g)
        x.append(kv)
    return tuple(x)


def check_against_reference(name: str, module: torch.nn.Module, reference, cases, g: torch.Generator, n_layers: int,
                            d: int, kv_heads: int, hd: int, tol: float = 1e-5) -> float:
    """The in-place module vs `reference(inputs_embeds, past list) -> (logits, presents)` (the
    HF forward with a DynamicCache) on (batch, seq, past) cases: logits and the written
    cache positions. A module with the `alignment` output (one more than logits and the
    presents) is also compared with the reference's third result, the alignment heads'
    mean attention [seq, past + seq] of batch row 0; its columns after past + seq must be
    exactly 0. Returns the worst relative error; raises above `tol`."""
    from common import log, rel_error

    worst = 0.0
    with torch.no_grad():
        for b, s, p in cases:
            cap = p + s + 3
            inp = example_inputs(g, n_layers, d, kv_heads, hd, b, s, p, cap)
            out = module(*inp)
            past = [t[:, :, :p] for t in inp[2:]]
            ref = reference(inp[0], past)
            ref_logits, ref_present = ref[0], ref[1]
            errs = [rel_error(ref_logits.numpy(), out[0].numpy())]
            for r, got in zip(ref_present, out[1:1 + 2 * n_layers]):
                errs.append(rel_error(r.numpy(), got[:, :, :p + s].numpy()))
                if got[:, :, p + s:].abs().max() != 0:
                    raise RuntimeError(f"{name}: cache positions after past + seq were written")
            what = f"rel error {max(errs):.3g}"
            if len(out) > 1 + 2 * n_layers:
                got = out[1 + 2 * n_layers]
                if got.shape != (s, cap) or got[:, p + s:].abs().max() != 0:
                    raise RuntimeError(f"{name}: alignment has shape {tuple(got.shape)} or is non-zero after past + seq")
                ea = rel_error(ref[2].numpy(), got[:, :p + s].numpy())
                errs.append(ea)
                what += f", alignment {ea:.3g}"
            e = max(errs)
            log(f"  {name} in-place module vs reference forward (batch {b}, seq {s}, past {p}): {what}")
            worst = max(worst, e)
    if not worst <= tol:
        raise RuntimeError(f"{name}: the in-place decoder differs from the reference forward: {worst:.3g} > {tol}")
    return worst
