#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run from anywhere: python3 fuzz/make_corpus.py. Small, valid (or nearly valid)
inputs from which libFuzzer mutates; the committed files are this script's output.
"""
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def wav(fmt_tag, channels, rate, bits, frames, *, extensible=False, truncate=0, extra_chunk=False):
    """A WAV of a sine, in any of the encodings the reader accepts or refuses."""
    block = channels * ((bits + 7) // 8)
    data = bytearray()
    for i in range(frames):
        x = 0.5 * math.sin(2 * math.pi * 440 * i / rate)
        for _ in range(channels):
            if fmt_tag == 3:
                data += struct.pack("<f" if bits == 32 else "<d", x)
            elif bits == 8:
                data += struct.pack("<B", int(128 + 127 * x))
            elif bits == 16:
                data += struct.pack("<h", int(32767 * x))
            elif bits == 24:
                data += int(8388607 * x).to_bytes(3, "little", signed=True)
            else:
                data += struct.pack("<i", int(2147483647 * x))
    if extensible:
        sub = b"\x01\x00" if fmt_tag == 1 else b"\x03\x00"
        sub += b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, (1 << channels) - 1) + sub
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        body += b"LIST" + struct.pack("<I", 4) + b"INFO"
    body += b"data" + struct.pack("<I", len(data)) + bytes(data[: len(data) - truncate])
    return b"RIFF" + struct.pack("<I", len(body)) + body


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    # wav
    out("wav", "pcm16_mono_16k.wav", wav(1, 1, 16000, 16, 64))
    out("wav", "pcm8_mono_8k.wav", wav(1, 1, 8000, 8, 64))
    out("wav", "pcm24_stereo_24k.wav", wav(1, 2, 24000, 24, 32))
    out("wav", "pcm32_mono_48k.wav", wav(1, 1, 48000, 32, 32))
    out("wav", "float32_mono_22k.wav", wav(3, 1, 22050, 32, 32))
    out("wav", "float64_mono_16k.wav", wav(3, 1, 16000, 64, 16))
    out("wav", "extensible_pcm16_stereo_44k.wav", wav(1, 2, 44100, 16, 32, extensible=True))
    out("wav", "extensible_float32_3ch_16k.wav", wav(3, 3, 16000, 32, 16, extensible=True))
    out("wav", "truncated_pcm16.wav", wav(1, 1, 16000, 16, 64, truncate=37))
    out("wav", "list_chunk_pcm16.wav", wav(1, 1, 16000, 16, 32, extra_chunk=True))
    out("wav", "half_second_pcm8_4k.wav", wav(1, 1, 4000, 8, 2000))
    # voice_file: the tiny bundle's voice.
    with open(os.path.join(ROOT, "onnx/tiny/voice.safetensors"), "rb") as f:
        voice = f.read()
    out("voice_file", "tiny_voice.safetensors", voice)
    # manifest
    with open(os.path.join(ROOT, "onnx/tiny/manifest.json"), "rb") as f:
        out("manifest", "tiny_manifest.json", f.read())
    out("manifest", "schema_only.json", b'{"schema_version": 1}')
    # text: two bytes of chunk limits (tokens, chars), then the text.
    texts = [
        b"Hello there. How are you today?",
        b"wait... what: a - b; c\xe2\x80\x94d \xe2\x80\x9cquoted\xe2\x80\x9d, ok!",
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, \u00e9clair \u2026 na\u00efve r\u00e9sum\u00e9.".encode(),
        b"A sentence that is rather long, with clauses, commas, and more words than fit in one chunk of the smallest limits.",
        "Emoji \U0001F600 and CJK \u4e2d\u6587 and [STOP] [START] [SPACE] [UNK] tokens.".encode(),
        b"Line one\nline two\r\n\tTabbed\x1cseparator   spaces.",
        b"Supercalifragilisticexpialidocious-antidisestablishmentarianism!!!",
        b"",
    ]
    for i, t in enumerate(texts):
        out("text", f"text_{i}", bytes([5 + 7 * i, 20 + 13 * i]) + t)
    # capi_args: op bytes followed by their arguments (see checks::capi_args).
    seeds = {
        "options_default": b"\x00\x00" + b"\x00" * 16,
        "options_all": b"\x00\x00\x00\x00\x00\x1f\x08\x00\x00\x00\x02\x00\x00\x00" + b"\x00" * 8
        + b"\x05tiny/\x0dswap,prefetch\x03ort",
        "request_default": b"\x00\x00\x00\x00\x01\x00\x00\x02",
        "request_bad_floats": b"\x00\x00\x00\x00\x01\xfe\x07" + struct.pack("<ffffff", float("nan"), -1.0, 0.0, 1.5, float("inf"), -0.0) + b"\x03\x01\x00",
        "samples_short": b"\x00\x00\x00\x00\x03\x60\x10" + struct.pack("<4f", 0.1, -0.2, 0.3, -0.4),
        "samples_repeat": b"\x00\x00\x00\x00\x03\x41\x10" + struct.pack("<4f", 0.1, -0.2, 0.3, -0.4) + b"\xa0\x0f\x00",
        "voice_load": b"\x00\x00\x00\x00\x04\x00\x08safetens",
        "wav_file": b"\x00\x00\x00\x00\x05\x00" + struct.pack("<H", 128) + wav(1, 1, 16000, 16, 32)[:128],
        "residency": b"\x00\x00\x00\x00\x06\x0dbudget=1GiB,x\x06\x0aidle=1e999",
        "misc": b"\x00\x00\x00\x00\x07\x03\x00\x00\x00\x04text",
    }
    for name, data in seeds.items():
        out("capi_args", name, data)


if __name__ == "__main__":
    main()
