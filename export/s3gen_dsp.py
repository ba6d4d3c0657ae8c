"""Real-valued, ONNX-exportable signal processing used by the S3Gen-side graphs.

Everything here is written so that (a) in eager PyTorch it reproduces the
reference computation (torch.stft / torch.istft / torch.fft / Kaldi fbank) to
float rounding, and (b) it traces with the TorchScript exporter at opset 17
into plain ONNX ops: no complex tensors, no randomness, no length frozen at
trace time.

* Forward DFTs use either `torch.stft(..., return_complex=False)` (-> ONNX
  `STFT`) on a signal, or `dft()` (-> ONNX `DFT`) on a tensor of frames.
* The inverse real DFT is an ONNX `DFT` with `inverse=1` on the Hermitian
  extension of a one-sided spectrum (real part taken), or, for tiny FFT sizes,
  a matmul with a fixed basis.
* Overlap-add is `overlap_add()`: k shifted copies summed (k = ceil(n / hop)),
  no weights, so a 2048-point iSTFT costs no 16 MB basis.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class _DFT(torch.autograd.Function):
    """ONNX `DFT` (opset 17) over the second-to-last axis of a [..., n, 2]
    (complex as re/im) or [..., n, 1] (real) tensor. Eager: torch.fft."""

    @staticmethod
    def forward(ctx, x, inverse: bool, onesided: bool):  # noqa: D401
        if x.shape[-1] == 2:
            c = torch.complex(x[..., 0], x[..., 1])
        else:
            c = x[..., 0]
        if inverse:
            y = torch.fft.ifft(c, dim=-1)
        elif onesided:
            y = torch.fft.rfft(c, dim=-1)
        else:
            y = torch.fft.fft(c, dim=-1)
        return torch.stack([y.real, y.imag], dim=-1).to(x.dtype)

    @staticmethod
    def symbolic(g, x, inverse, onesided):
        rank = x.type().dim()
        return g.op("DFT", x, axis_i=rank - 2, inverse_i=int(bool(inverse)), onesided_i=int(bool(onesided)))


def rdft(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-sided DFT of real frames [..., n] -> (re, im) [..., n // 2 + 1]."""
    y = _DFT.apply(frames.unsqueeze(-1), False, True)
    return y[..., 0], y[..., 1]


def irdft(re: torch.Tensor, im: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `rdft` (numpy / torch `irfft` semantics: the imaginary parts
    of the DC and Nyquist bins are ignored) for even n: [..., n//2+1] -> [..., n]."""
    assert n % 2 == 0 and re.shape[-1] == n // 2 + 1
    idx = torch.arange(n // 2 - 1, 0, -1)  # n/2-1 ... 1
    full_re = torch.cat([re, re.index_select(-1, idx)], dim=-1)
    full_im = torch.cat([im, -im.index_select(-1, idx)], dim=-1)
    y = _DFT.apply(torch.stack([full_re, full_im], dim=-1), True, False)
    return y[..., 0]


def irdft_basis(n: int) -> torch.Tensor:
    """[2 * (n//2+1), n] matrix B with frames = cat(re, im) @ B == irfft(re + i im, n)."""
    nb = n // 2 + 1
    k = np.arange(nb)[:, None]
    t = np.arange(n)[None, :]
    ang = 2.0 * np.pi * k * t / n
    c = np.full((nb, 1), 2.0)
    c[0] = 1.0
    c[-1] = 1.0
    b_re = c * np.cos(ang) / n
    b_im = -c * np.sin(ang) / n
    b_im[0] = 0.0
    b_im[-1] = 0.0
    return torch.from_numpy(np.concatenate([b_re, b_im], 0).astype(np.float32))


def stft_basis(n: int, window: torch.Tensor) -> torch.Tensor:
    """Conv1d kernel [2 * (n//2+1), 1, n]: rows 0..n/2 windowed cos (real part),
    rows n/2+1.. windowed -sin (imaginary part) of torch.stft's convention."""
    nb = n // 2 + 1
    k = np.arange(nb)[:, None]
    t = np.arange(n)[None, :]
    ang = 2.0 * np.pi * k * t / n
    w = window.double().numpy()[None, :]
    basis = np.concatenate([np.cos(ang) * w, -np.sin(ang) * w], 0)
    return torch.from_numpy(basis.astype(np.float32)).unsqueeze(1)


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add of frames [B, T, n] with hop `hop` -> [B, (T + k - 1) * hop],
    k = ceil(n / hop) (the tail past (T - 1) * hop + n is zeros)."""
    n = int(frames.shape[-1])  # static frame size (keeps k and the pad out of the traced graph)
    k = -(-n // hop)
    if k * hop != n:
        frames = F.pad(frames, (0, k * hop - n))
    b = frames.shape[0]
    parts = frames.reshape(b, -1, k, hop)
    out = None
    for j in range(k):
        seg = parts[:, :, j, :].reshape(b, -1)
        seg = F.pad(seg, (j * hop, (k - 1 - j) * hop))
        out = seg if out is None else out + seg
    return out


def istft(re: torch.Tensor, im: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
          basis: torch.Tensor | None = None) -> torch.Tensor:
    """torch.istft(center=True, normalized=False, onesided, length=None) on a
    one-sided spectrum given as re/im [B, n_fft//2+1, T] -> [B, hop * (T - 1)].
    `basis` (from irdft_basis) selects the matmul inverse DFT, else ONNX DFT."""
    re_t = re.transpose(1, 2)
    im_t = im.transpose(1, 2)
    if basis is not None:
        frames = torch.matmul(torch.cat([re_t, im_t], dim=-1), basis)
    else:
        frames = irdft(re_t, im_t, n_fft)
    frames = frames * window
    y = overlap_add(frames, hop)
    wsq = (window * window).reshape(1, 1, -1).expand(re.shape[0], re.shape[2], n_fft)
    env = overlap_add(wsq, hop)
    t = re.shape[2]
    start = n_fft // 2
    length = hop * (t - 1)
    y = y[:, start:start + length]
    env = env[:, start:start + length]
    return y / env


def stft_onnx(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.stft(center=False) of an already padded [B, L] signal as re, im
    [B, n_fft//2+1, T] (exports to the ONNX STFT op). Runs in float64 and
    rounds to float32: onnxruntime's float32 STFT for sizes that are not a
    power of two (400, 1920) is a plain DFT whose rounding (~2e-4 relative
    after a log-mel) would exceed the 1e-4 self-check; in float64 the result
    equals torch's float32 FFT to ~2e-8 at ~1.4x the cost."""
    spec = torch.stft(x.to(torch.float64), n_fft, hop_length=hop, win_length=n_fft, window=window.to(torch.float64),
                      center=False, normalized=False, onesided=True, return_complex=False)
    spec = spec.to(torch.float32)
    return spec[..., 0], spec[..., 1]


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding of [B, L] (as F.pad(mode='reflect') on [B, 1, L])."""
    return F.pad(x.unsqueeze(1), (left, right), mode="reflect").squeeze(1)


def ensure_2d(wav: torch.Tensor) -> torch.Tensor:
    return wav if wav.dim() == 2 else wav.unsqueeze(0)


def periodic_hann(n: int) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float32)


def kaldi_constants(num_mel_bins: int = 80, sample_rate: float = 16000.0):
    """Povey window [400] and Kaldi mel banks [num_mel_bins, 257] (padded like
    torchaudio.compliance.kaldi.fbank) for the defaults CAM++ uses."""
    from torchaudio.compliance import kaldi

    window = torch.hann_window(400, periodic=False, dtype=torch.float32).pow(0.85)
    banks, _ = kaldi.get_mel_banks(num_mel_bins, 512, sample_rate, 20.0, 0.0, 100.0, -500.0, 1.0)
    banks = F.pad(banks.float(), (0, 1), mode="constant", value=0.0)
    return window, banks


def kaldi_fbank(wav: torch.Tensor, window: torch.Tensor, banks: torch.Tensor) -> torch.Tensor:
    """torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80) with the defaults
    (25 ms / 10 ms at 16 kHz, snip_edges, dither 0, DC removal, pre-emphasis
    0.97, Povey window, 512-point power spectrum, log with float eps floor),
    for wav [1, S] -> [m, 80]."""
    x = wav[0]
    m = (x.shape[0] - 400) // 160 + 1
    idx = torch.arange(m).unsqueeze(1) * 160 + torch.arange(400).unsqueeze(0)
    frames = x[idx]  # [m, 400]
    frames = frames - frames.mean(dim=1, keepdim=True)
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * prev
    frames = frames * window.unsqueeze(0)
    frames = F.pad(frames, (0, 112))
    re, im = rdft(frames)
    power = re * re + im * im
    mel = torch.matmul(power, banks.t())
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=torch.float32)
    return torch.max(mel, eps).log()


def rel_pos_table(t: torch.Tensor | int, div_term: torch.Tensor) -> torch.Tensor:
    """The ESPnet relative positional table of EspnetRelPositionalEncoding for
    positions t-1 ... -(t-1): [1, 2t-1, d] (sin at even, cos at odd channels),
    computed in the graph so no length is frozen."""
    pos = torch.arange(t - 1, -t, -1).to(torch.float32)
    ang = pos.unsqueeze(1) * div_term.unsqueeze(0)
    pe = torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1)
    return pe.reshape(1, pe.shape[0], -1)


def espnet_div_term(d_model: int) -> torch.Tensor:
    return torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
