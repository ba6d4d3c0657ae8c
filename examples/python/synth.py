#!/usr/bin/env python3
"""Text to a WAV file through libchatterbox_ort's C API, with ctypes only.

    python3 examples/python/synth.py --bundle onnx/tiny --out hello.wav "Hello from Python."

Needs nothing beyond the standard library: the declarations below mirror
include/chatterbox_ort.h, and the WAV is written with the `wave` module.
"""

import argparse
import array
import ctypes
import os
import sys
import wave

ABI_VERSION = 1  # CBX_ABI_VERSION of the header these declarations mirror

CBX_OK = 0
CBX_CANCELLED = 10
CBX_PROVIDER_CPU = 0


class CbxEngineOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("provider", ctypes.c_uint32),
        ("bundle_dir", ctypes.c_char_p),
        ("residency", ctypes.c_char_p),
        ("threads", ctypes.c_uint32),
        ("cuda_device", ctypes.c_uint32),
        ("onnxruntime_library", ctypes.c_char_p),
    ]


class CbxRequest(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("exaggeration", ctypes.c_float),
        ("cfg_weight", ctypes.c_float),
        ("temperature", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("top_p", ctypes.c_float),
        ("repetition_penalty", ctypes.c_float),
        ("max_new_tokens", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("min_new_tokens", ctypes.c_uint32),
        ("flow_steps", ctypes.c_uint32),
        ("watermark", ctypes.c_int32),
        ("top_k", ctypes.c_uint32),
        ("language", ctypes.c_char * 8),
    ]


# int32_t (*)(const float *samples, size_t count, uint32_t sample_rate, void *user_data)
CbxChunkCallback = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p
)


class ChatterboxError(RuntimeError):
    def __init__(self, lib, call, status):
        name = lib.cbx_status_name(status).decode()
        message = lib.cbx_last_error_message().decode("utf-8", "replace")
        super().__init__(f"{call}: {name}: {message}")
        self.status = status


def default_library_path():
    """target/release, then target/debug, beside this repository."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for profile in ("release", "debug"):
        candidate = os.path.join(repo, "target", profile, "libchatterbox_ort.so")
        if os.path.exists(candidate):
            return candidate
    return "libchatterbox_ort.so"


def load_library(path):
    lib = ctypes.CDLL(path)
    status = ctypes.c_int  # CbxStatus is a C enum
    engine_p, voice_p, audio_p = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
    declarations = {
        "cbx_version": (ctypes.c_char_p, []),
        "cbx_abi_version": (ctypes.c_uint32, []),
        "cbx_onnxruntime_version": (ctypes.c_char_p, []),
        "cbx_last_error_message": (ctypes.c_char_p, []),
        "cbx_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "cbx_engine_options_default": (status, [ctypes.POINTER(CbxEngineOptions)]),
        "cbx_engine_create": (status, [ctypes.POINTER(CbxEngineOptions), ctypes.POINTER(engine_p)]),
        "cbx_engine_free": (None, [engine_p]),
        "cbx_request_default": (status, [engine_p, ctypes.POINTER(CbxRequest)]),
        "cbx_voice_from_wav_file": (status, [engine_p, ctypes.c_char_p, ctypes.POINTER(voice_p)]),
        "cbx_voice_free": (None, [voice_p]),
        "cbx_synthesize": (
            status,
            [engine_p, ctypes.c_char_p, voice_p, ctypes.POINTER(CbxRequest), ctypes.POINTER(audio_p)],
        ),
        "cbx_synthesize_streaming": (
            status,
            [engine_p, ctypes.c_char_p, voice_p, ctypes.POINTER(CbxRequest), CbxChunkCallback, ctypes.c_void_p],
        ),
        "cbx_audio_samples": (
            status,
            [
                audio_p,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.POINTER(ctypes.c_uint32),
            ],
        ),
        "cbx_audio_free": (None, [audio_p]),
    }
    for name, (restype, argtypes) in declarations.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    if lib.cbx_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path} has C ABI {lib.cbx_abi_version()}, this script speaks {ABI_VERSION}")
    return lib


def check(lib, call, status):
    if status != CBX_OK:
        raise ChatterboxError(lib, call, status)


def write_wav(path, samples, sample_rate):
    """Mono 16-bit PCM with the standard library's wave module."""
    pcm = array.array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text")
    parser.add_argument("--bundle", required=True, help="bundle folder (holding manifest.json)")
    parser.add_argument("--out", required=True, help="WAV file to write")
    parser.add_argument("--library", default=default_library_path(), help="path of libchatterbox_ort.so")
    parser.add_argument("--voice", help="reference WAV to clone (default: the bundle's voice)")
    parser.add_argument("--language", help="the text's language on a multilingual bundle (fr, zh, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--min-new-tokens", type=int)
    parser.add_argument("--flow-steps", type=int)
    parser.add_argument("--no-watermark", action="store_true")
    parser.add_argument("--stream", action="store_true", help="receive the audio chunk by chunk")
    args = parser.parse_args()

    lib = load_library(args.library)

    options = CbxEngineOptions()
    check(lib, "cbx_engine_options_default", lib.cbx_engine_options_default(ctypes.byref(options)))
    options.bundle_dir = os.fsencode(args.bundle)
    options.provider = CBX_PROVIDER_CPU
    engine = ctypes.c_void_p()
    check(lib, "cbx_engine_create", lib.cbx_engine_create(ctypes.byref(options), ctypes.byref(engine)))
    voice = ctypes.c_void_p()
    try:
        print(f"chatterbox-ort {lib.cbx_version().decode()}, ONNX Runtime {lib.cbx_onnxruntime_version().decode()}")
        if args.voice:
            check(
                lib,
                "cbx_voice_from_wav_file",
                lib.cbx_voice_from_wav_file(engine, os.fsencode(args.voice), ctypes.byref(voice)),
            )

        request = CbxRequest()
        check(lib, "cbx_request_default", lib.cbx_request_default(engine, ctypes.byref(request)))
        request.seed = args.seed
        if args.language:
            request.language = args.language.encode("ascii")
        if args.max_new_tokens is not None:
            request.max_new_tokens = args.max_new_tokens
        if args.min_new_tokens is not None:
            request.min_new_tokens = args.min_new_tokens
        if args.flow_steps is not None:
            request.flow_steps = args.flow_steps
        if args.no_watermark:
            request.watermark = 0

        text = args.text.encode("utf-8")
        if args.stream:
            chunks = []

            def on_chunk(samples, count, sample_rate, _user_data):
                # `samples` is valid only during this call: copy it.
                chunks.append((sample_rate, samples[:count]))
                return 0  # non-zero would cancel

            callback = CbxChunkCallback(on_chunk)  # keep a reference while the call runs
            status = lib.cbx_synthesize_streaming(engine, text, voice, ctypes.byref(request), callback, None)
            check(lib, "cbx_synthesize_streaming", status)
            sample_rate = chunks[0][0] if chunks else 24000
            samples = [s for _, chunk in chunks for s in chunk]
        else:
            audio = ctypes.c_void_p()
            check(
                lib,
                "cbx_synthesize",
                lib.cbx_synthesize(engine, text, voice, ctypes.byref(request), ctypes.byref(audio)),
            )
            try:
                data = ctypes.POINTER(ctypes.c_float)()
                count = ctypes.c_size_t()
                rate = ctypes.c_uint32()
                check(
                    lib,
                    "cbx_audio_samples",
                    lib.cbx_audio_samples(audio, ctypes.byref(data), ctypes.byref(count), ctypes.byref(rate)),
                )
                samples = data[: count.value]  # copies out of the library's buffer
                sample_rate = rate.value
            finally:
                lib.cbx_audio_free(audio)
    finally:
        lib.cbx_voice_free(voice)
        lib.cbx_engine_free(engine)

    write_wav(args.out, samples, sample_rate)
    print(f"wrote {args.out}: {len(samples) / sample_rate:.2f} s at {sample_rate} Hz")


if __name__ == "__main__":
    try:
        main()
    except ChatterboxError as error:
        print(error, file=sys.stderr)
        sys.exit(1)
