"""Export wrappers for the S3Gen side of Chatterbox (one nn.Module per bundle
component). Each wrapper holds references to the reference submodules (no
copies) and re-states only the parts of the reference forward that cannot be
traced as they are (complex STFTs, randomness, data-dependent Python, tables
with a frozen length). Where a forward is re-stated, the arithmetic follows the
reference line by line; comments name the reference function.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

try:  # package import (export/ as a package) or script import (export/ on sys.path)
    from . import s3gen_dsp as dsp
except ImportError:  # pragma: no cover
    import s3gen_dsp as dsp


# --------------------------------------------------------------------------- s3_tokenizer


class S3TokenizerGraph(torch.nn.Module):
    """wav [1, S] (16 kHz) -> tokens [1, T] int64.

    = S3Tokenizer.forward([wav]) for one clip: log_mel_spectrogram (centred
    STFT 400/160 Hann, last frame dropped, |X|^2, 128 mels, log10 floor 1e-10,
    floor at the whole-clip max - 8, (x + 4) / 4), then AudioEncoderV2 and the
    FSQ encode, with the masks (all ones for one clip) left out and the complex
    RoPE table replaced by cos/sin computed in the graph."""

    def __init__(self, tok):
        super().__init__()
        self.encoder = tok.encoder
        self.codebook = tok.quantizer._codebook
        self.n_fft = tok.n_fft
        self.register_buffer("window", tok.window.detach().clone().float(), persistent=False)
        self.register_buffer("mel_filters", tok._mel_filters.detach().clone().float(), persistent=False)
        # precompute_freqs_cis(64, ...) of AudioEncoderV2 (head dim fixed at 64)
        freqs = 1.0 / (10000.0 ** (torch.arange(0, 64, 2)[:32].float() / 64))
        self.register_buffer("rope_freqs", freqs, persistent=False)
        self.register_buffer("powers", torch.pow(3.0, torch.arange(8, dtype=torch.float32)), persistent=False)
        block0 = self.encoder.blocks[0].attn
        assert block0.n_head * 64 == self.encoder.conv2.out_channels, "S3Tokenizer head dim must be 64"

    def log_mel(self, wav):
        x = dsp.reflect_pad(wav, self.n_fft // 2, self.n_fft // 2)
        re, im = dsp.stft_onnx(x, self.n_fft, 160, self.window)
        re = re[:, :, :-1]
        im = im[:, :, :-1]
        mag = re * re + im * im
        mel = torch.matmul(self.mel_filters, mag)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    def forward(self, wav):
        mel = self.log_mel(wav)
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x))
        x = x.permute(0, 2, 1)
        t = torch.arange(x.shape[1]).to(torch.float32)
        ang = t.unsqueeze(1) * self.rope_freqs.unsqueeze(0)
        cos = torch.cos(ang)
        sin = torch.sin(ang)
        cos = torch.cat([cos, cos], dim=-1).unsqueeze(0).unsqueeze(2)
        sin = torch.cat([sin, sin], dim=-1).unsqueeze(0).unsqueeze(2)
        for block in enc.blocks:
            x = x + self._attn(block.attn, block.attn_ln(x), cos, sin)
            x = x + block.mlp(block.mlp_ln(x))
        # FSQCodebook.encode
        h = self.codebook.project_down(x).float()
        h = h.tanh()
        h = h * 0.9990000128746033
        h = h.round() + 1
        mu = torch.sum(h * self.powers, dim=-1)
        return mu.to(torch.int64)

    @staticmethod
    def _rope(x, cos, sin):
        d = x.shape[-1]
        half_l, half_r = x[:, :, :, : d // 2], x[:, :, :, d // 2:]
        x_r = torch.cat((-half_r, half_l), dim=-1)
        return x * cos + x_r * sin

    def _attn(self, a, x, cos, sin):
        # FSMNMultiHeadAttention.forward / qkv_attention without masks
        q = a.query(x)
        k = a.key(x)
        v = a.value(x)
        b, t, d = q.shape
        scale = (d // a.n_head) ** -0.25
        q = q.view(b, t, a.n_head, -1)
        k = k.view(b, t, a.n_head, -1)
        v = v.view(b, t, a.n_head, -1)
        q = self._rope(q, cos, sin)
        k = self._rope(k, cos, sin)
        # forward_fsmn
        inputs = v.reshape(b, t, -1)
        m = a.fsmn_block(a.pad_fn(inputs.transpose(1, 2))).transpose(1, 2)
        fsm_memory = m + inputs
        q = q.permute(0, 2, 1, 3) * scale
        v = v.permute(0, 2, 1, 3)
        k = k.permute(0, 2, 3, 1) * scale
        qk = (q @ k).float()
        w = torch.softmax(qk, dim=-1).to(q.dtype)
        wv = (w @ v).permute(0, 2, 1, 3).flatten(start_dim=2)
        return a.out(wv) + fsm_memory


# --------------------------------------------------------------------------- campplus


class CampplusGraph(torch.nn.Module):
    """wav [1, S] (16 kHz) -> embedding [1, 192].

    = CAMPPlus.inference([wav[0]]): Kaldi fbank (80 bins) minus its mean over
    time, then CAMPPlus.forward."""

    def __init__(self, campplus):
        super().__init__()
        self.campplus = campplus
        window, banks = dsp.kaldi_constants(80)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("banks", banks, persistent=False)

    def forward(self, wav):
        feat = dsp.kaldi_fbank(wav, self.window, self.banks)
        feat = feat - feat.mean(dim=0, keepdim=True)
        return self.campplus(feat.unsqueeze(0))


# --------------------------------------------------------------------------- s3gen_mel


class S3GenMelGraph(torch.nn.Module):
    """wav [1, S] (24 kHz) -> mel [1, F, 80] = mel_spectrogram(wav).transpose(1, 2)
    (reflect pad 720, STFT 1920/480 Hann uncentred, sqrt(|X|^2 + 1e-9), 80 mels
    0-8 kHz, log(clamp(., 1e-5)))."""

    def __init__(self):
        super().__init__()
        from librosa.filters import mel as librosa_mel_fn

        mel = librosa_mel_fn(sr=24000, n_fft=1920, n_mels=80, fmin=0, fmax=8000)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(1920), persistent=False)

    def forward(self, wav):
        x = dsp.reflect_pad(wav, 720, 720)
        re, im = dsp.stft_onnx(x, 1920, 480, self.window)
        spec = torch.sqrt(re * re + im * im + 1e-9)
        spec = torch.matmul(self.mel_basis, spec)
        spec = torch.log(torch.clamp(spec, min=1e-5))
        return spec.transpose(1, 2)


# --------------------------------------------------------------------------- flow_encoder


class FlowEncoderGraph(torch.nn.Module):
    """tokens [1, N] int64, speaker_emb [1, 192] -> mu [1, 80, 2N], spks [1, 80].

    = the first half of CausalMaskedDiffWithXvec.inference with finalize=True
    (all masks ones for one unpadded sequence): input embedding,
    UpsampleConformerEncoder, encoder_proj; spks = spk_embed_affine_layer(
    normalize(xvector)). The relative positional tables are computed in the
    graph for the actual length (no 5000-position limit)."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow
        enc = flow.encoder
        self.register_buffer("div_term", dsp.espnet_div_term(enc.output_size()), persistent=False)

    def _embed(self, sub, x):
        # LinearNoSubsampling.forward + EspnetRelPositionalEncoding.forward
        x = sub.out(x)
        x = x * sub.pos_enc.xscale
        pos = dsp.rel_pos_table(x.shape[1], self.div_term)
        return x, pos

    def forward(self, tokens, speaker_emb):
        flow = self.flow
        enc = flow.encoder
        emb = F.normalize(speaker_emb, dim=1)
        spks = flow.spk_embed_affine_layer(emb)

        xs = flow.input_embedding(tokens)
        xs, pos = self._embed(enc.embed, xs)
        masks = torch.ones_like(xs[:, :, :1]).transpose(1, 2).to(torch.bool)  # [1, 1, N]
        xs = enc.pre_lookahead_layer(xs)
        for layer in enc.encoders:
            xs, _, _, _ = layer(xs, masks, pos, masks)
        xs = xs.transpose(1, 2).contiguous()
        xs, _ = enc.up_layer(xs, torch.zeros(1, dtype=torch.int64))
        xs = xs.transpose(1, 2).contiguous()
        xs, pos = self._embed(enc.up_embed, xs)
        masks = torch.ones_like(xs[:, :, :1]).transpose(1, 2).to(torch.bool)  # [1, 1, 2N]
        for layer in enc.up_encoders:
            xs, _, _, _ = layer(xs, masks, pos, masks)
        if enc.normalize_before:
            xs = enc.after_norm(xs)
        h = flow.encoder_proj(xs)
        return h.transpose(1, 2).contiguous(), spks


# --------------------------------------------------------------------------- flow_estimator


class MultiHeadAttention(torch.autograd.Function):
    """softmax(q k^T * scale + key padding bias) v as one ONNX Runtime
    `com.microsoft::MultiHeadAttention` node.

    q/k/v [B, T, heads*hd]; key_mask [B, T] int32 (1: attend, 0: padding). The torch side is
    AttnProcessor2_0's arithmetic as it is (views, `scaled_dot_product_attention` with the
    additive bias `mask_to_bias` makes: (1 - mask) * mask_value), so exporting through this
    function leaves the reference's outputs unchanged. In ONNX Runtime the scores, the bias,
    the softmax and the weighted sum of one (batch, head) are computed together (the CPU kernel
    works head by head in cache-sized pieces), instead of separate MatMul / Add / Softmax /
    MatMul / Transpose nodes each passing a [B, heads, T, T] tensor through memory."""

    @staticmethod
    def forward(ctx, q, k, v, key_mask, num_heads: int, scale: float, mask_value: float):
        b, t, d = q.shape
        hd = d // num_heads
        qq, kk, vv = (x.view(b, -1, num_heads, hd).transpose(1, 2) for x in (q, k, v))
        bias = ((1.0 - key_mask.to(q.dtype)) * mask_value)[:, None, None, :]
        out = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=bias, dropout_p=0.0, scale=scale)
        return out.transpose(1, 2).reshape(b, -1, d).to(q.dtype)

    @staticmethod
    def symbolic(g, q, k, v, key_mask, num_heads, scale, mask_value):
        absent = g.op("prim::Constant")  # the optional packed q/k/v bias input: none
        absent.setType(torch._C.NoneType.get())
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, absent, key_mask, num_heads_i=num_heads,
                   scale_f=scale, mask_filter_value_f=mask_value)
        out.setType(q.type())
        return out


# `mask_to_bias` (s3gen/decoder.py): the bias of a padded position.
MASK_BIAS = -1.0e10


class FusedAttentionProcessor:
    """A diffusers `Attention` processor for export: AttnProcessor2_0 with the attention itself
    as `MultiHeadAttention` above. It covers what the S3Gen decoders use (self-attention over
    [B, T, C], the key padding bias [B, 1, T] of `mask_to_bias`, no group/spatial norm, no
    residual inside the attention); anything else goes to the stock processor unchanged."""

    def __init__(self, stock):
        self.stock = stock

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        covered = (
            encoder_hidden_states is None and attention_mask is not None and attention_mask.dim() == 3
            and attention_mask.shape[1] == 1 and hidden_states.dim() == 3 and attn.spatial_norm is None
            and attn.group_norm is None and not attn.residual_connection and attn.rescale_output_factor == 1.0
            and not args and not kwargs
        )
        if not covered:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        q = attn.to_q(hidden_states)
        k = attn.to_k(hidden_states)
        v = attn.to_v(hidden_states)
        head_dim = k.shape[-1] // attn.heads
        # The bias is 0 (attend) or MASK_BIAS (padding); the kernel takes the 0/1 mask and adds
        # MASK_BIAS itself. AttnProcessor2_0 calls sdpa with its default scale, 1/sqrt(hd).
        key_mask = (attention_mask[:, 0, :] == 0).to(torch.int32)
        out = MultiHeadAttention.apply(q, k, v, key_mask, int(attn.heads), float(head_dim) ** -0.5, MASK_BIAS)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class fused_attention:
    """Context manager: every diffusers `Attention` under `module` uses FusedAttentionProcessor
    while it is active (the export), its own processor again afterwards."""

    def __init__(self, module):
        from diffusers.models.attention_processor import Attention

        self.attns = [m for m in module.modules() if isinstance(m, Attention)]

    def __enter__(self):
        self.saved = [a.processor for a in self.attns]
        for a, p in zip(self.attns, self.saved):
            a.set_processor(FusedAttentionProcessor(p))
        return self

    def __exit__(self, *exc):
        for a, p in zip(self.attns, self.saved):
            a.set_processor(p)
        return False


class FlowEstimatorGraph(torch.nn.Module):
    """x, mask, mu, t, spks, cond -> velocity: one ConditionalDecoder call."""

    def __init__(self, estimator):
        super().__init__()
        self.estimator = estimator

    def forward(self, x, mask, mu, t, spks, cond):
        return self.estimator(x, mask, mu, t, spks, cond)


# --------------------------------------------------------------------------- hift


class HiftGraph(torch.nn.Module):
    """mel [1, 80, F], phase_init [1, 9, 1], sine_noise [1, 9, 480 F] -> wav [1, 480 F].

    = HiFTGenerator.inference(mel) with SineGen's draws as inputs:
    `phase_init` is Uniform(-pi, pi).sample((B, 9, 1)) (harmonic 0 is zeroed
    here, as SineGen does), `sine_noise` is randn_like(sine_waves) (scaled in
    the graph by the voiced / unvoiced noise amplitude). The randn_like(uv) of
    SourceModuleHnNSF is discarded by the reference, so it is not an input.
    STFT (16/4 Hann, centred) is a strided conv with the windowed DFT basis;
    the iSTFT is a matmul inverse DFT + overlap-add / window-sum-square; the
    phase cumsum runs in float64 like torch's CPU cumsum accumulator."""

    def __init__(self, hift):
        super().__init__()
        self.hift = hift
        n_fft = hift.istft_params["n_fft"]
        self.n_fft = n_fft
        self.hop = hift.istft_params["hop_len"]
        window = hift.stft_window.detach().clone().float()
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("stft_kernel", dsp.stft_basis(n_fft, window), persistent=False)
        self.register_buffer("istft_basis", dsp.irdft_basis(n_fft), persistent=False)
        sg = hift.m_source.l_sin_gen
        self.n_harm = sg.harmonic_num + 1
        self.register_buffer(
            "harmonics", torch.arange(1, self.n_harm + 1, dtype=torch.float32).reshape(1, -1, 1), persistent=False
        )
        keep = torch.ones(1, self.n_harm, 1)
        keep[:, 0] = 0.0
        self.register_buffer("phase_keep", keep, persistent=False)

    def source(self, f0, phase_init, sine_noise):
        """SineGen + SourceModuleHnNSF for f0 [B, 1, L] -> s [B, 1, L]."""
        sg = self.hift.m_source.l_sin_gen
        f_mat = f0 * self.harmonics / sg.sampling_rate
        cum = torch.cumsum(f_mat.to(torch.float64), dim=-1).to(torch.float32)
        theta = 2 * np.pi * (cum % 1)
        phase = phase_init * self.phase_keep
        sine_waves = sg.sine_amp * torch.sin(theta + phase)
        uv = (f0 > sg.voiced_threshold).to(torch.float32)
        noise_amp = uv * sg.noise_std + (1 - uv) * sg.sine_amp / 3
        noise = noise_amp * sine_noise
        sine_waves = sine_waves * uv + noise
        m = self.hift.m_source
        s = m.l_tanh(m.l_linear(sine_waves.transpose(1, 2)))
        return s.transpose(1, 2)

    def forward(self, mel, phase_init, sine_noise):
        h = self.hift
        f0 = h.f0_predictor(mel)
        s = h.f0_upsamp(f0[:, None])  # [B, 1, L]
        s = self.source(s, phase_init, sine_noise)
        return self.decode(mel, s)

    def decode(self, x, s):
        h = self.hift
        nb = self.n_fft // 2 + 1
        # _stft: torch.stft(center=True, reflect) as a strided conv
        sp = F.pad(s, (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        s_stft = F.conv1d(sp, self.stft_kernel, stride=self.hop)  # [B, 2 * nb, TT] = cat(re, im)

        x = h.conv_pre(x)
        for i in range(h.num_upsamples):
            x = F.leaky_relu(x, h.lrelu_slope)
            x = h.ups[i](x)
            if i == h.num_upsamples - 1:
                x = h.reflection_pad(x)
            si = h.source_downs[i](s_stft)
            si = h.source_resblocks[i](si)
            x = x + si
            xs = None
            for j in range(h.num_kernels):
                if xs is None:
                    xs = h.resblocks[i * h.num_kernels + j](x)
                else:
                    xs = xs + h.resblocks[i * h.num_kernels + j](x)
            x = xs / h.num_kernels
        x = F.leaky_relu(x)
        x = h.conv_post(x)
        magnitude = torch.exp(x[:, :nb, :])
        phase = torch.sin(x[:, nb:, :])
        # _istft
        magnitude = torch.clip(magnitude, max=1e2)
        real = magnitude * torch.cos(phase)
        img = magnitude * torch.sin(phase)
        y = dsp.istft(real, img, self.n_fft, self.hop, self.window, basis=self.istft_basis)
        return torch.clamp(y, -h.audio_limit, h.audio_limit)


# --------------------------------------------------------------------------- perth


class PerthGraph(torch.nn.Module):
    """wav [1, S] (32 kHz) -> wav_out [1, 320 * floor(S / 320)] (32 kHz).

    = the 32 kHz core of PerthImplicitWatermarker.apply_watermark:
    signal_to_magphase (centred STFT 2048/320 Hann, 20 log10 |X| floored at
    1e-9, normalised), Encoder.forward (energy mask, residual on the first
    `subband` bins), magphase_to_cx with the original phase carried as
    (re / |X|, im / |X|) instead of angle(), torch.istft (length=None)."""

    def __init__(self, perth_net):
        super().__init__()
        hp = perth_net.hp
        self.encoder = perth_net.encoder
        self.subband = perth_net.encoder.subband
        self.n_fft = hp.n_fft
        self.hop = hp.hop_size
        self.min_level_db = float(20 * np.log10(hp.stft_magnitude_min))
        self.mag_min = float(hp.stft_magnitude_min)
        self.headroom_db = 15.0
        assert hp.window_fn == "hann" and hp.window_size == hp.n_fft
        self.register_buffer("window", torch.hann_window(hp.n_fft), persistent=False)

    def forward(self, wav):
        x = dsp.reflect_pad(wav, self.n_fft // 2, self.n_fft // 2)
        re, im = dsp.stft_onnx(x, self.n_fft, self.hop, self.window)  # [1, F, T]
        absx = torch.sqrt(re * re + im * im)
        nz = absx > 0
        safe = torch.where(nz, absx, torch.ones_like(absx))
        cos_p = torch.where(nz, re / safe, torch.ones_like(re))
        sin_p = torch.where(nz, im / safe, torch.zeros_like(im))
        # cx_to_magphase + normalize
        mag = 20 * torch.log10(absx.clip(self.mag_min))
        mag = (mag - self.min_level_db) / (-self.min_level_db + self.headroom_db)
        # Encoder.forward
        s = mag.sum(dim=1)
        thresh = s.max(dim=1).values * 0.05
        mask = (s > thresh[:, None]).float()[:, None]
        sub = mag[:, : self.subband]
        res = self.encoder.layers(sub) * mask
        mag = torch.cat([sub + res, mag[:, self.subband:]], dim=1)
        # magphase_to_cx
        mag = mag * (-self.min_level_db + self.headroom_db) + self.min_level_db
        mag = 10.0 ** ((mag / 20).clip(max=10))
        y = dsp.istft(mag * cos_p, mag * sin_p, self.n_fft, self.hop, self.window)
        return y
