#!/usr/bin/env python3
"""Hostile-input cases for the C ABI of libchatterbox_ort, driven with ctypes.

Run by tests/hostile.rs, ONE CASE PER PROCESS, so that an abort or a
segmentation fault in the library is seen by the caller as a signal instead
of killing the whole harness:

    python3 capi_cases.py list            # the case names, one a line
    python3 capi_cases.py run NAME        # runs one case

`run` needs the environment variables HOSTILE_LIB (libchatterbox_ort.so),
HOSTILE_BUNDLE (the tiny bundle folder) and HOSTILE_DIR (an empty folder the
case may write into). It prints one JSON line {"pass": bool, "detail": str}
as its last stdout line and exits 0 (the verdict is in the JSON); a crash
or a hang is judged by the caller.

Only the Python standard library is used. The declarations mirror
include/chatterbox_ort.h (ABI version 1).
"""

import ctypes
import json
import math
import os
import stat
import struct
import sys
import threading
import traceback

# ---- the ABI -----------------------------------------------------------------

STATUS = {
    0: "CBX_OK",
    1: "CBX_INVALID_ARGUMENT",
    2: "CBX_INVALID_TEXT",
    3: "CBX_INVALID_AUDIO",
    4: "CBX_IO",
    5: "CBX_BUNDLE",
    6: "CBX_MODEL_MISMATCH",
    7: "CBX_RUNTIME",
    8: "CBX_PROVIDER_UNAVAILABLE",
    9: "CBX_BUDGET",
    10: "CBX_CANCELLED",
    11: "CBX_INTERNAL",
}
OK = "CBX_OK"
INVALID_ARGUMENT = "CBX_INVALID_ARGUMENT"
INVALID_TEXT = "CBX_INVALID_TEXT"
INVALID_AUDIO = "CBX_INVALID_AUDIO"
IO = "CBX_IO"
BUNDLE = "CBX_BUNDLE"
MODEL_MISMATCH = "CBX_MODEL_MISMATCH"
RUNTIME = "CBX_RUNTIME"
PROVIDER_UNAVAILABLE = "CBX_PROVIDER_UNAVAILABLE"
BUDGET = "CBX_BUDGET"
CANCELLED = "CBX_CANCELLED"

PROVIDER_CPU, PROVIDER_CUDA, PROVIDER_AUTO = 0, 1, 2
U32_MAX = 2**32 - 1
MAX_TEXT_BYTES = int(os.environ.get("HOSTILE_MAX_TEXT_BYTES", "131072"))  # the library's bound, from tests/hostile.rs
U64_MAX = 2**64 - 1


# The structs and the callback type as the ctypes example declares them (one place to
# keep in step with include/chatterbox_ort.h).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python"))
from synth import CbxChunkCallback, CbxEngineOptions, CbxRequest  # noqa: E402

VP = ctypes.c_void_p
PVP = ctypes.POINTER(ctypes.c_void_p)


class CbxConvertRequest(ctypes.Structure):
    """include/chatterbox_ort.h: the settings of one voice conversion."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("flow_steps", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("watermark", ctypes.c_int32),
    ]


def load_library(path):
    lib = ctypes.CDLL(path)
    st = ctypes.c_int
    decl = {
        "cbx_last_error_message": (ctypes.c_char_p, []),
        "cbx_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "cbx_version": (ctypes.c_char_p, []),
        "cbx_abi_version": (ctypes.c_uint32, []),
        "cbx_onnxruntime_version": (ctypes.c_char_p, []),
        # Pointer-typed structs are declared as void* so a case can pass NULL
        # or a raw buffer of any size.
        "cbx_engine_options_default": (st, [VP]),
        "cbx_engine_create": (st, [VP, VP]),
        "cbx_engine_free": (None, [VP]),
        "cbx_request_default": (st, [VP, VP]),
        "cbx_engine_set_residency": (st, [VP, ctypes.c_char_p]),
        "cbx_engine_stats_json": (st, [VP, VP]),
        "cbx_string_free": (None, [VP]),
        "cbx_voice_from_wav_file": (st, [VP, ctypes.c_char_p, VP]),
        "cbx_voice_from_samples": (st, [VP, VP, ctypes.c_size_t, ctypes.c_uint32, VP]),
        "cbx_voice_save": (st, [VP, ctypes.c_char_p]),
        "cbx_voice_load": (st, [ctypes.c_char_p, VP]),
        "cbx_voice_free": (None, [VP]),
        "cbx_synthesize": (st, [VP, ctypes.c_char_p, VP, VP, VP]),
        "cbx_synthesize_streaming": (st, [VP, ctypes.c_char_p, VP, VP, CbxChunkCallback, VP]),
        "cbx_audio_samples": (st, [VP, VP, VP, VP]),
        "cbx_audio_free": (None, [VP]),
        "cbx_vc_target_from_wav_file": (st, [VP, ctypes.c_char_p, VP]),
        "cbx_vc_target_from_samples": (st, [VP, VP, ctypes.c_size_t, ctypes.c_uint32, VP]),
        "cbx_vc_target_from_voice": (st, [VP, VP]),
        "cbx_vc_target_free": (None, [VP]),
        "cbx_convert_request_default": (st, [VP, VP]),
        "cbx_convert": (st, [VP, VP, ctypes.c_size_t, ctypes.c_uint32, VP, VP, VP]),
        "cbx_convert_streaming": (st, [VP, VP, ctypes.c_size_t, ctypes.c_uint32, VP, VP, CbxChunkCallback, VP]),
        "cbx_convert_wav_file": (st, [VP, ctypes.c_char_p, VP, VP, VP]),
    }
    for name, (restype, argtypes) in decl.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
    return lib


# ---- verdicts ----------------------------------------------------------------


class Fail(Exception):
    pass


class Ctx:
    def __init__(self):
        self.lib = load_library(os.environ["HOSTILE_LIB"])
        self.bundle = os.environ["HOSTILE_BUNDLE"]
        self.dir = os.environ["HOSTILE_DIR"]
        self.root = os.geteuid() == 0
        self.cpus = os.cpu_count() or 1
        self._engine = None
        self.notes = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def bpath(self, name):
        return os.fsencode(self.path(name))

    def message(self):
        m = self.lib.cbx_last_error_message()
        if m is None:
            raise Fail("cbx_last_error_message() returned NULL")
        return m.decode("utf-8", "replace")

    def expect(self, call, status, want=None, needles=(), forbid=()):
        """Checks a status. want: None (any error), OK, or a tuple of status names.

        On an error, the message must be non-empty, one line, mention each
        needle ('a|b' = either, case-insensitive) and none of `forbid`."""
        name = STATUS.get(status, f"unknown status {status}")
        if want == OK:
            if status != 0:
                raise Fail(f"{call}: {name} ({self.message()!r}), expected CBX_OK")
            return
        if status == 0:
            raise Fail(f"{call}: CBX_OK, expected {want or 'an error'}")
        msg = self.message()
        if want is not None and name not in want:
            raise Fail(f"{call}: {name} ({msg!r}), expected {' or '.join(want)}")
        if not msg.strip():
            raise Fail(f"{call}: {name} with an empty cbx_last_error_message()")
        if "\n" in msg or "\r" in msg:
            raise Fail(f"{call}: {name}: message is not one line: {msg!r}")
        low = msg.lower()
        for n in needles:
            if not any(alt.lower() in low for alt in n.split("|")):
                raise Fail(f"{call}: {name}: message {msg!r} does not mention `{n}`")
        for f in forbid:
            if f.lower() in low:
                raise Fail(f"{call}: {name}: message {msg!r} mentions `{f}`")
        if "panicked" in low:
            raise Fail(f"{call}: {name}: message reports a panic: {msg!r}")
        self.notes.append(f"{call}: {name}: {msg}")

    # -- objects --

    def options(self, **fields):
        o = CbxEngineOptions()
        self.expect("cbx_engine_options_default", self.lib.cbx_engine_options_default(ctypes.byref(o)), OK)
        o.bundle_dir = os.fsencode(self.bundle)
        o.provider = PROVIDER_CPU
        o.threads = 1
        for k, v in fields.items():
            setattr(o, k, v)
        return o

    def create(self, options):
        """Returns (status, engine handle or None); checks the out-pointer contract."""
        out = VP(0xDEADBEEF)
        s = self.lib.cbx_engine_create(ctypes.byref(options) if options is not None else None, ctypes.byref(out))
        if s != 0 and out.value is not None:
            raise Fail(f"cbx_engine_create failed ({STATUS.get(s)}) but left *out = {out.value:#x} (must be NULL)")
        return s, out

    def engine(self):
        """The engine most cases use. `swap` residency creates sessions only when a
        stage runs, so a case refused by argument checks costs no session set-up
        (checks must not depend on the residency; the CLI cases load `resident`)."""
        if self._engine is None:
            s, e = self.create(self.options(residency=b"swap"))
            self.expect("cbx_engine_create", s, OK)
            self._engine = e
        return self._engine

    def request(self, **fields):
        r = CbxRequest()
        self.expect("cbx_request_default", self.lib.cbx_request_default(self.engine(), ctypes.byref(r)), OK)
        r.max_new_tokens = 3
        r.min_new_tokens = 0
        r.flow_steps = 1
        for k, v in fields.items():
            setattr(r, k, v)
        return r

    def synth(self, text, request=None, voice=None):
        out = VP(0xDEADBEEF)
        s = self.lib.cbx_synthesize(
            self.engine(), text, voice, ctypes.byref(request) if request is not None else None, ctypes.byref(out)
        )
        if s != 0 and out.value is not None:
            raise Fail(f"cbx_synthesize failed ({STATUS.get(s)}) but left *out non-NULL")
        return s, out

    def voice_from_samples(self, samples, rate):
        buf = (ctypes.c_float * len(samples))(*samples) if samples else None
        out = VP(0xDEADBEEF)
        s = self.lib.cbx_voice_from_samples(self.engine(), buf, len(samples), rate, ctypes.byref(out))
        if s != 0 and out.value is not None:
            raise Fail(f"cbx_voice_from_samples failed ({STATUS.get(s)}) but left *out non-NULL")
        return s, out

    def voice_load(self, path):
        out = VP(0xDEADBEEF)
        s = self.lib.cbx_voice_load(path, ctypes.byref(out))
        if s != 0 and out.value is not None:
            raise Fail(f"cbx_voice_load failed ({STATUS.get(s)}) but left *out non-NULL")
        return s, out

    def bundle_voice(self):
        s, v = self.voice_load(os.fsencode(os.path.join(self.bundle, "voice.safetensors")))
        self.expect("cbx_voice_load(bundle voice)", s, OK)
        return v

    def copy_bundle(self, name, edit):
        """A copy of the bundle (hard links, else copies) with an edited manifest."""
        dst = self.path(name)
        os.makedirs(dst)
        for entry in os.listdir(self.bundle):
            src = os.path.join(self.bundle, entry)
            if not os.path.isfile(src) or entry == "manifest.json":
                continue
            try:
                os.link(src, os.path.join(dst, entry))
            except OSError:
                with open(src, "rb") as f, open(os.path.join(dst, entry), "wb") as g:
                    g.write(f.read())
        with open(os.path.join(self.bundle, "manifest.json")) as f:
            manifest = json.load(f)
        edit(manifest)
        with open(os.path.join(dst, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        return dst


def tone(seconds, rate, amplitude=0.3):
    import math

    n = int(seconds * rate)
    return [amplitude * math.sin(2 * math.pi * 220.0 * i / rate) + 0.05 * math.sin(2 * math.pi * 1730.0 * i / rate)
            for i in range(n)]


def wav_pcm16(path, samples, rate):
    data = struct.pack(f"<{len(samples)}h", *(max(-32768, min(32767, int(s * 32767))) for s in samples))
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    hdr += b"data" + struct.pack("<I", len(data))
    with open(path, "wb") as f:
        f.write(hdr + data)


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# ---- no engine -----------------------------------------------------------------


@case
def c_status_name_out_of_range(c):
    for v in (-1, 12, 255, 2**31 - 1, -(2**31)):
        n = c.lib.cbx_status_name(v)
        if n != b"CBX_UNKNOWN":
            raise Fail(f"cbx_status_name({v}) = {n!r}, expected CBX_UNKNOWN")


@case
def c_free_null_everything(c):
    c.lib.cbx_engine_free(None)
    c.lib.cbx_voice_free(None)
    c.lib.cbx_audio_free(None)
    c.lib.cbx_string_free(None)


@case
def c_onnxruntime_version_before_any_engine(c):
    v = c.lib.cbx_onnxruntime_version()
    if v is not None:
        return  # loaded already is acceptable
    if not c.message().strip():
        raise Fail("cbx_onnxruntime_version() returned NULL without a message")


@case
def c_options_default_null(c):
    c.expect("cbx_engine_options_default(NULL)", c.lib.cbx_engine_options_default(None), (INVALID_ARGUMENT,))


@case
def c_create_null_options(c):
    s, _ = c.create(None)
    c.expect("cbx_engine_create(NULL, out)", s, (INVALID_ARGUMENT,), ["options"])


@case
def c_create_null_out(c):
    o = c.options()
    c.expect("cbx_engine_create(opts, NULL)", c.lib.cbx_engine_create(ctypes.byref(o), None), (INVALID_ARGUMENT,))


@case
def c_create_struct_size_zero(c):
    s, _ = c.create(c.options(struct_size=0))
    c.expect("cbx_engine_create(struct_size 0)", s, (INVALID_ARGUMENT,), ["struct_size"])


@case
def c_create_struct_size_four(c):
    s, _ = c.create(c.options(struct_size=4))
    c.expect("cbx_engine_create(struct_size 4)", s, (INVALID_ARGUMENT,), ["struct_size"])


@case
def c_create_struct_size_from_newer_header(c):
    # A caller built against a newer header: a larger struct whose extra bytes are zero.
    o = c.options()
    big = ctypes.create_string_buffer(4096)
    ctypes.memmove(big, ctypes.byref(o), ctypes.sizeof(o))
    struct.pack_into("<I", big, 0, 4096)
    out = VP()
    c.expect("cbx_engine_create(struct_size 4096)", c.lib.cbx_engine_create(big, ctypes.byref(out)), OK)
    c.lib.cbx_engine_free(out)


@case
def c_create_null_bundle_dir(c):
    s, _ = c.create(c.options(bundle_dir=None))
    c.expect("cbx_engine_create(bundle_dir NULL)", s, (INVALID_ARGUMENT,), ["bundle"])


@case
def c_create_missing_bundle(c):
    s, _ = c.create(c.options(bundle_dir=c.bpath("no-such-folder")))
    c.expect("cbx_engine_create(missing folder)", s, (BUNDLE, IO), ["no-such-folder"])


@case
def c_create_bundle_dir_invalid_utf8(c):
    s, _ = c.create(c.options(bundle_dir=c.bpath("caf") + b"\xe9\xff"))
    c.expect("cbx_engine_create(non-UTF-8 missing folder)", s, (BUNDLE, IO, INVALID_ARGUMENT))


@case
def c_create_bundle_dir_is_a_file(c):
    p = c.path("file")
    open(p, "w").write("not a bundle")
    s, _ = c.create(c.options(bundle_dir=os.fsencode(p)))
    c.expect("cbx_engine_create(bundle is a file)", s, (BUNDLE, IO), ["file"])


@case
def c_create_residency_unknown(c):
    s, _ = c.create(c.options(residency=b"sometimes"))
    c.expect("cbx_engine_create(residency sometimes)", s, (INVALID_ARGUMENT,), ["sometimes|residency"])


@case
def c_create_residency_invalid_utf8(c):
    s, _ = c.create(c.options(residency=b"swap\xff"))
    c.expect("cbx_engine_create(residency non-UTF-8)", s, (INVALID_ARGUMENT,), ["residency|utf"])


@case
def c_create_residency_idle_overflow(c):
    s, _ = c.create(c.options(residency=b"idle=1e300"))
    c.expect("cbx_engine_create(residency idle=1e300)", s, (INVALID_ARGUMENT,), ["idle|residency"])


@case
def c_create_residency_budget_impossible(c):
    s, _ = c.create(c.options(residency=b"budget=1B"))
    c.expect("cbx_engine_create(residency budget=1B)", s, (BUDGET, INVALID_ARGUMENT), ["budget"])


@case
def c_create_provider_unknown(c):
    s, _ = c.create(c.options(provider=99))
    c.expect("cbx_engine_create(provider 99)", s, (INVALID_ARGUMENT,), ["provider"])


@case
def c_create_cuda_device_huge(c):
    s, _ = c.create(c.options(provider=PROVIDER_CUDA, cuda_device=U32_MAX))
    c.expect("cbx_engine_create(CUDA device 4294967295)", s, (PROVIDER_UNAVAILABLE, INVALID_ARGUMENT, RUNTIME))


@case
def c_create_threads_100000(c):
    s, _ = c.create(c.options(threads=100000))
    c.expect("cbx_engine_create(threads 100000)", s, (INVALID_ARGUMENT,), ["threads"])


@case
def c_create_threads_u32_max(c):
    s, _ = c.create(c.options(threads=U32_MAX))
    c.expect("cbx_engine_create(threads UINT32_MAX)", s, (INVALID_ARGUMENT,), ["threads"])


@case
def c_create_threads_at_bound(c):
    s, e = c.create(c.options(threads=4 * c.cpus))
    c.expect(f"cbx_engine_create(threads {4 * c.cpus} = 4 x CPUs)", s, OK)
    c.lib.cbx_engine_free(e)


@case
def c_create_threads_past_bound(c):
    s, _ = c.create(c.options(threads=4 * c.cpus + 1))
    c.expect(f"cbx_engine_create(threads {4 * c.cpus + 1})", s, (INVALID_ARGUMENT,), ["threads"])


@case
def c_create_onnxruntime_missing(c):
    s, _ = c.create(c.options(onnxruntime_library=c.bpath("libonnxruntime-missing.so")))
    c.expect("cbx_engine_create(onnxruntime_library missing)", s, (RUNTIME,), ["libonnxruntime-missing"])


@case
def c_create_onnxruntime_not_a_library(c):
    p = c.path("libfake.so")
    open(p, "w").write("this is not an ELF file\n")
    s, _ = c.create(c.options(onnxruntime_library=os.fsencode(p)))
    c.expect("cbx_engine_create(onnxruntime_library is text)", s, (RUNTIME,), ["libfake"])


@case
def c_create_manifest_layers_1e9(c):
    def edit(m):
        m["config"]["t3"]["num_layers"] = 10**9

    d = c.copy_bundle("bndl-layers", edit)
    s, _ = c.create(c.options(bundle_dir=os.fsencode(d)))
    c.expect("cbx_engine_create(num_layers 1e9)", s, (BUNDLE, MODEL_MISMATCH, INVALID_ARGUMENT), ["layer"])


@case
def c_manifest_flow_steps_1e9(c):
    def edit(m):
        m["generation"]["flow_steps"] = 10**9

    d = c.copy_bundle("bndl-flow", edit)
    s, e = c.create(c.options(bundle_dir=os.fsencode(d)))
    if s != 0:
        c.expect("cbx_engine_create(generation.flow_steps 1e9)", s, (BUNDLE, INVALID_ARGUMENT), ["flow_steps"])
        return
    c._engine = e
    r = CbxRequest()
    s = c.lib.cbx_request_default(e, ctypes.byref(r))
    if s != 0:
        c.expect("cbx_request_default", s, (BUNDLE, INVALID_ARGUMENT), ["flow_steps"])
        return
    r.max_new_tokens = 3
    s, _ = c.synth(b"Hi there.", r)
    c.expect("cbx_synthesize(manifest flow_steps 1e9)", s, (INVALID_ARGUMENT,), ["flow_steps"])


# ---- engine: requests and synthesis ------------------------------------------------


@case
def c_request_default_null_engine(c):
    r = CbxRequest()
    c.expect("cbx_request_default(NULL, req)", c.lib.cbx_request_default(None, ctypes.byref(r)), (INVALID_ARGUMENT,))


@case
def c_request_default_null_request(c):
    c.expect("cbx_request_default(engine, NULL)", c.lib.cbx_request_default(c.engine(), None), (INVALID_ARGUMENT,))


@case
def c_synth_null_engine(c):
    out = VP()
    r = CbxRequest()
    s = c.lib.cbx_synthesize(None, b"Hi.", None, ctypes.byref(r), ctypes.byref(out))
    c.expect("cbx_synthesize(NULL engine)", s, (INVALID_ARGUMENT,), ["engine"])


@case
def c_synth_null_text(c):
    s, _ = c.synth(None, c.request())
    c.expect("cbx_synthesize(NULL text)", s, (INVALID_ARGUMENT,), ["text"])


@case
def c_synth_null_out(c):
    r = c.request()
    s = c.lib.cbx_synthesize(c.engine(), b"Hi.", None, ctypes.byref(r), None)
    c.expect("cbx_synthesize(NULL out)", s, (INVALID_ARGUMENT,), ["out"])


@case
def c_synth_invalid_utf8(c):
    s, _ = c.synth(b"caf\xe9 \xff\xfe", c.request())
    c.expect("cbx_synthesize(non-UTF-8)", s, (INVALID_TEXT,), ["utf"])


@case
def c_synth_empty_text(c):
    s, _ = c.synth(b"", c.request())
    c.expect("cbx_synthesize(empty)", s, (INVALID_TEXT,), ["empty"])


@case
def c_synth_whitespace_text(c):
    s, _ = c.synth(b" \t\n\r  ", c.request())
    c.expect("cbx_synthesize(whitespace)", s, (INVALID_TEXT,), ["empty|whitespace"])


@case
def c_synth_text_too_long(c):
    s, _ = c.synth(b"a" * (MAX_TEXT_BYTES + 1), c.request())
    c.expect(f"cbx_synthesize({MAX_TEXT_BYTES + 1} bytes)", s, (INVALID_TEXT, INVALID_ARGUMENT), ["text"])


@case
def c_synth_request_struct_size_zero(c):
    s, _ = c.synth(b"Hi.", c.request(struct_size=0))
    c.expect("cbx_synthesize(request struct_size 0)", s, (INVALID_ARGUMENT,), ["struct_size"])


@case
def c_synth_flow_steps_u32_max(c):
    s, _ = c.synth(b"Hi there.", c.request(flow_steps=U32_MAX))
    c.expect("cbx_synthesize(flow_steps UINT32_MAX)", s, (INVALID_ARGUMENT,), ["flow_steps"])


@case
def c_synth_flow_steps_zero(c):
    s, _ = c.synth(b"Hi there.", c.request(flow_steps=0))
    c.expect("cbx_synthesize(flow_steps 0)", s, (INVALID_ARGUMENT,), ["flow_steps"])


@case
def c_synth_flow_steps_101(c):
    s, _ = c.synth(b"Hi there.", c.request(flow_steps=101))
    c.expect("cbx_synthesize(flow_steps 101)", s, (INVALID_ARGUMENT,), ["flow_steps"])


@case
def c_synth_max_new_tokens_zero(c):
    s, _ = c.synth(b"Hi there.", c.request(max_new_tokens=0))
    c.expect("cbx_synthesize(max_new_tokens 0)", s, (INVALID_ARGUMENT,), ["max_new_tokens"])


@case
def c_synth_max_new_tokens_u32_max(c):
    s, _ = c.synth(b"Hi there.", c.request(max_new_tokens=U32_MAX))
    c.expect("cbx_synthesize(max_new_tokens UINT32_MAX)", s, (INVALID_ARGUMENT,), ["max_new_tokens"])


@case
def c_synth_min_new_tokens_above_max(c):
    s, _ = c.synth(b"Hi there.", c.request(max_new_tokens=3, min_new_tokens=4))
    c.expect("cbx_synthesize(min_new_tokens > max)", s, (INVALID_ARGUMENT,), ["min_new_tokens"])


def _bad_request(field, value):
    def run(c):
        s, _ = c.synth(b"Hi there.", c.request(**{field: value}))
        c.expect(f"cbx_synthesize({field} {value})", s, (INVALID_ARGUMENT,), [field])

    run.__name__ = f"c_synth_{field}_{str(value).replace('-', 'neg').replace('.', '_')}"
    CASES[run.__name__] = run


_bad_request("temperature", float("nan"))
_bad_request("temperature", 0.0)
_bad_request("top_p", 0.0)
_bad_request("top_p", 1.5)
_bad_request("min_p", 1.0)
_bad_request("min_p", float("nan"))
_bad_request("repetition_penalty", -1.0)
_bad_request("exaggeration", float("inf"))
_bad_request("exaggeration", -1.0)
_bad_request("cfg_weight", float("nan"))


@case
def c_synth_seed_u64_max(c):
    s, a = c.synth(b"Hi there.", c.request(seed=U64_MAX, max_new_tokens=3, min_new_tokens=3))
    c.expect("cbx_synthesize(seed UINT64_MAX)", s, OK)
    c.lib.cbx_audio_free(a)


@case
def c_synth_odd_watermark_flag(c):
    s, a = c.synth(b"Hi there.", c.request(watermark=-7))
    c.expect("cbx_synthesize(watermark -7)", s, OK)
    c.lib.cbx_audio_free(a)


@case
def c_streaming_null_callback(c):
    r = c.request()
    s = c.lib.cbx_synthesize_streaming(c.engine(), b"Hi there.", None, ctypes.byref(r), CbxChunkCallback(), None)
    c.expect("cbx_synthesize_streaming(NULL callback)", s, (INVALID_ARGUMENT,), ["callback"])


@case
def c_streaming_cancel(c):
    r = c.request()

    def stop(_samples, _count, _rate, _user):
        return 1

    cb = CbxChunkCallback(stop)
    s = c.lib.cbx_synthesize_streaming(c.engine(), b"Hi there. How are you?", None, ctypes.byref(r), cb, None)
    c.expect("cbx_synthesize_streaming(cancel)", s, (CANCELLED,))


@case
def c_audio_samples_null_outs(c):
    s, a = c.synth(b"Hi there.", c.request())
    c.expect("cbx_synthesize", s, OK)
    s = c.lib.cbx_audio_samples(a, None, None, None)
    c.lib.cbx_audio_free(a)
    c.expect("cbx_audio_samples(audio, NULL, NULL, NULL)", s, (INVALID_ARGUMENT,))


@case
def c_audio_samples_null_audio(c):
    p = VP()
    n = ctypes.c_size_t()
    r = ctypes.c_uint32()
    s = c.lib.cbx_audio_samples(None, ctypes.byref(p), ctypes.byref(n), ctypes.byref(r))
    c.expect("cbx_audio_samples(NULL, ...)", s, (INVALID_ARGUMENT,), ["audio"])


@case
def c_set_residency_null(c):
    c.expect("cbx_engine_set_residency(NULL preset)", c.lib.cbx_engine_set_residency(c.engine(), None),
             (INVALID_ARGUMENT,))


@case
def c_set_residency_null_engine(c):
    c.expect("cbx_engine_set_residency(NULL engine)", c.lib.cbx_engine_set_residency(None, b"swap"),
             (INVALID_ARGUMENT,))


@case
def c_set_residency_unknown(c):
    c.expect("cbx_engine_set_residency(sometimes)", c.lib.cbx_engine_set_residency(c.engine(), b"sometimes"),
             (INVALID_ARGUMENT,), ["sometimes|residency"])


@case
def c_set_residency_idle_nan(c):
    c.expect("cbx_engine_set_residency(idle=nan)", c.lib.cbx_engine_set_residency(c.engine(), b"idle=nan"),
             (INVALID_ARGUMENT,), ["idle|residency"])


@case
def c_set_residency_idle_overflow(c):
    c.expect("cbx_engine_set_residency(idle=1e300)", c.lib.cbx_engine_set_residency(c.engine(), b"idle=1e300"),
             (INVALID_ARGUMENT,), ["idle|residency"])


@case
def c_set_residency_budget_impossible(c):
    c.expect("cbx_engine_set_residency(budget=1B)", c.lib.cbx_engine_set_residency(c.engine(), b"budget=1B"),
             (BUDGET, INVALID_ARGUMENT), ["budget"])


@case
def c_synth_streaming_callback_odd_return(c):
    r = c.request()
    calls = []

    def odd(_samples, _count, _rate, _user):
        calls.append(1)
        return -12345

    cb = CbxChunkCallback(odd)
    s = c.lib.cbx_synthesize_streaming(c.engine(), b"Hi there. Bye now.", None, ctypes.byref(r), cb, None)
    c.expect("cbx_synthesize_streaming(callback returns -12345)", s, (CANCELLED,))
    if len(calls) != 1:
        raise Fail(f"the callback was called {len(calls)} times after asking to stop")


@case
def c_stats_json_null_out(c):
    c.expect("cbx_engine_stats_json(engine, NULL)", c.lib.cbx_engine_stats_json(c.engine(), None),
             (INVALID_ARGUMENT,))


@case
def c_stats_json_null_engine(c):
    out = VP()
    c.expect("cbx_engine_stats_json(NULL, out)", c.lib.cbx_engine_stats_json(None, ctypes.byref(out)),
             (INVALID_ARGUMENT,))


# ---- voices ------------------------------------------------------------------------


@case
def c_voice_wav_null_path(c):
    out = VP()
    s = c.lib.cbx_voice_from_wav_file(c.engine(), None, ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(NULL path)", s, (INVALID_ARGUMENT,), ["path"])


@case
def c_voice_wav_missing(c):
    out = VP(0xDEADBEEF)
    s = c.lib.cbx_voice_from_wav_file(c.engine(), c.bpath("missing.wav"), ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(missing)", s, (INVALID_AUDIO, IO), ["missing.wav"])
    if out.value is not None:
        raise Fail("*out not NULL after failure")


@case
def c_voice_wav_not_a_wav(c):
    p = c.path("notes.wav")
    open(p, "w").write("These are my notes, not audio.\n" * 100)
    out = VP()
    s = c.lib.cbx_voice_from_wav_file(c.engine(), os.fsencode(p), ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(text file)", s, (INVALID_AUDIO,), ["notes.wav"])


@case
def c_voice_wav_dev_zero(c):
    out = VP()
    s = c.lib.cbx_voice_from_wav_file(c.engine(), b"/dev/zero", ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(/dev/zero)", s, (INVALID_AUDIO, IO), ["/dev/zero"])


@case
def c_voice_wav_invalid_utf8_path(c):
    out = VP()
    s = c.lib.cbx_voice_from_wav_file(c.engine(), c.bpath("x") + b"\xff.wav", ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(non-UTF-8 missing path)", s, (INVALID_AUDIO, IO))


@case
def c_voice_wav_1hz_55_hours(c):
    p = c.path("one-hertz.wav")
    wav_pcm16(p, [0.1 * ((i % 7) - 3) for i in range(198000)], 1)
    out = VP()
    s = c.lib.cbx_voice_from_wav_file(c.engine(), os.fsencode(p), ctypes.byref(out))
    c.expect("cbx_voice_from_wav_file(1 Hz, 55 h)", s, (INVALID_AUDIO,), ["one-hertz.wav"])


@case
def c_voice_samples_null_with_count(c):
    out = VP()
    s = c.lib.cbx_voice_from_samples(c.engine(), None, 16000, 16000, ctypes.byref(out))
    c.expect("cbx_voice_from_samples(NULL, 16000)", s, (INVALID_ARGUMENT,), ["samples"])


@case
def c_voice_samples_count_zero(c):
    s, _ = c.voice_from_samples([], 16000)
    c.expect("cbx_voice_from_samples(count 0)", s, (INVALID_AUDIO, INVALID_ARGUMENT))


@case
def c_voice_samples_null_out(c):
    buf = (ctypes.c_float * 16000)()
    s = c.lib.cbx_voice_from_samples(c.engine(), buf, 16000, 16000, None)
    c.expect("cbx_voice_from_samples(out NULL)", s, (INVALID_ARGUMENT,), ["out"])


@case
def c_voice_samples_rate_zero(c):
    s, _ = c.voice_from_samples(tone(1.0, 16000), 0)
    c.expect("cbx_voice_from_samples(rate 0)", s, (INVALID_ARGUMENT, INVALID_AUDIO), ["rate"])


@case
def c_voice_samples_rate_3999(c):
    s, _ = c.voice_from_samples(tone(1.0, 3999), 3999)
    c.expect("cbx_voice_from_samples(rate 3999)", s, (INVALID_AUDIO,), ["rate"])


@case
def c_voice_samples_rate_384001(c):
    s, _ = c.voice_from_samples(tone(1.0, 384001), 384001)
    c.expect("cbx_voice_from_samples(rate 384001)", s, (INVALID_AUDIO,), ["rate"])


@case
def c_voice_samples_rate_u32_max(c):
    s, _ = c.voice_from_samples(tone(0.001, 16000) * 50, U32_MAX)
    c.expect("cbx_voice_from_samples(rate UINT32_MAX)", s, (INVALID_AUDIO, INVALID_ARGUMENT), ["rate"])


@case
def c_voice_samples_1hz_bomb(c):
    s, _ = c.voice_from_samples([0.1] * 400000, 1)
    c.expect("cbx_voice_from_samples(400000 samples at 1 Hz)", s, (INVALID_AUDIO,), ["rate"])


@case
def c_voice_samples_nan(c):
    x = tone(1.0, 16000)
    x[8000] = float("nan")
    s, _ = c.voice_from_samples(x, 16000)
    c.expect("cbx_voice_from_samples(NaN)", s, (INVALID_AUDIO,), ["nan|finite"])


@case
def c_voice_samples_inf(c):
    x = tone(1.0, 16000)
    x[100] = float("-inf")
    s, _ = c.voice_from_samples(x, 16000)
    c.expect("cbx_voice_from_samples(-inf)", s, (INVALID_AUDIO,), ["inf|finite"])


@case
def c_voice_samples_1e30(c):
    s, _ = c.voice_from_samples([1e30] * 16000, 16000)
    c.expect("cbx_voice_from_samples(1e30)", s, (INVALID_AUDIO,), forbid=["token"])


@case
def c_voice_samples_magnitude_1001(c):
    x = tone(1.0, 16000)
    x[10] = 1001.0
    s, _ = c.voice_from_samples(x, 16000)
    c.expect("cbx_voice_from_samples(sample 1001)", s, (INVALID_AUDIO,), forbid=["token"])


@case
def c_voice_samples_too_short(c):
    s, _ = c.voice_from_samples(tone(0.3, 16000), 16000)
    c.expect("cbx_voice_from_samples(0.3 s)", s, (INVALID_AUDIO,), ["0.5|short|long"])


@case
def c_voice_samples_too_long(c):
    s, _ = c.voice_from_samples([0.0] * (4000 * 301), 4000)
    c.expect("cbx_voice_from_samples(301 s)", s, (INVALID_AUDIO,), ["300"])


@case
def c_voice_samples_valid(c):
    s, v = c.voice_from_samples(tone(1.0, 16000), 16000)
    c.expect("cbx_voice_from_samples(1 s tone)", s, OK)
    c.lib.cbx_voice_free(v)


@case
def c_voice_save_null_voice(c):
    c.expect("cbx_voice_save(NULL, path)", c.lib.cbx_voice_save(None, c.bpath("v.safetensors")),
             (INVALID_ARGUMENT,), ["voice"])
    if os.path.exists(c.path("v.safetensors")):
        raise Fail("a file was written for a NULL voice")


@case
def c_voice_save_null_path(c):
    v = c.bundle_voice()
    c.expect("cbx_voice_save(voice, NULL)", c.lib.cbx_voice_save(v, None), (INVALID_ARGUMENT,), ["path"])


@case
def c_voice_save_empty_path(c):
    v = c.bundle_voice()
    c.expect("cbx_voice_save(voice, \"\")", c.lib.cbx_voice_save(v, b""), (INVALID_ARGUMENT, IO), ["path"])


@case
def c_voice_save_missing_folder(c):
    v = c.bundle_voice()
    p = c.bpath("no-such-folder") + b"/v.safetensors"
    c.expect("cbx_voice_save(missing folder)", c.lib.cbx_voice_save(v, p), (IO,),
             ["no-such-folder/v.safetensors"], forbid=[".tmp"])
    msg = c.message()
    if msg.count("No such file or directory") > 1:
        raise Fail(f"the cause is repeated: {msg!r}")


@case
def c_voice_save_to_directory(c):
    v = c.bundle_voice()
    d = c.path("a-folder")
    os.mkdir(d)
    c.expect("cbx_voice_save(a folder)", c.lib.cbx_voice_save(v, os.fsencode(d)), (INVALID_ARGUMENT, IO),
             ["a-folder"])
    if not os.path.isdir(d) or os.listdir(d):
        raise Fail("the folder was changed")


@case
def c_voice_save_char_device(c):
    if not c.root:
        c.notes.append("skipped: mknod needs root")
        return
    node = c.path("node")
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    v = c.bundle_voice()
    s = c.lib.cbx_voice_save(v, os.fsencode(node))
    if s != 0:
        c.expect("cbx_voice_save(char device)", s, (IO, INVALID_ARGUMENT))
    st = os.lstat(node)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        raise Fail(f"{node} is no longer the character device 1:3 (mode {st.st_mode:o})")


@case
def c_voice_save_concurrent_8_threads(c):
    v = c.bundle_voice()
    target = c.bpath("shared.voice.safetensors")
    barrier = threading.Barrier(8)
    results = [None] * 8

    def worker(i):
        barrier.wait()
        s = c.lib.cbx_voice_save(v, target)
        results[i] = (s, c.lib.cbx_last_error_message().decode("utf-8", "replace") if s else "")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [(i, STATUS.get(s), m) for i, (s, m) in enumerate(results) if s != 0]
    if bad:
        raise Fail(f"concurrent cbx_voice_save failures: {bad}")
    s, w = c.voice_load(target)
    c.expect("cbx_voice_load(after 8 concurrent saves)", s, OK)
    c.lib.cbx_voice_free(w)
    left = sorted(set(os.listdir(c.dir)) - {"shared.voice.safetensors"})
    if left:
        raise Fail(f"files left beside the voice: {left}")


@case
def c_voice_load_null_path(c):
    out = VP()
    c.expect("cbx_voice_load(NULL, out)", c.lib.cbx_voice_load(None, ctypes.byref(out)), (INVALID_ARGUMENT,),
             ["path"])


@case
def c_voice_load_null_out(c):
    p = os.fsencode(os.path.join(c.bundle, "voice.safetensors"))
    c.expect("cbx_voice_load(path, NULL)", c.lib.cbx_voice_load(p, None), (INVALID_ARGUMENT,), ["out"])


@case
def c_voice_load_missing(c):
    s, _ = c.voice_load(c.bpath("gone.safetensors"))
    c.expect("cbx_voice_load(missing)", s, (IO,), ["gone.safetensors"])


@case
def c_voice_load_garbage(c):
    p = c.path("garbage.safetensors")
    open(p, "wb").write(os.urandom(4096))
    s, _ = c.voice_load(os.fsencode(p))
    c.expect("cbx_voice_load(random bytes)", s, (BUNDLE, IO), ["garbage.safetensors"])


@case
def c_voice_load_dev_zero(c):
    s, _ = c.voice_load(b"/dev/zero")
    c.expect("cbx_voice_load(/dev/zero)", s, (BUNDLE, IO, INVALID_ARGUMENT), ["/dev/zero"])


@case
def c_voice_load_directory(c):
    s, _ = c.voice_load(os.fsencode(c.dir))
    c.expect("cbx_voice_load(a folder)", s, (IO, BUNDLE, INVALID_ARGUMENT))


@case
def c_voice_load_truncated(c):
    data = open(os.path.join(c.bundle, "voice.safetensors"), "rb").read()
    p = c.path("cut.safetensors")
    open(p, "wb").write(data[: len(data) // 2])
    s, _ = c.voice_load(os.fsencode(p))
    c.expect("cbx_voice_load(truncated)", s, (BUNDLE,), ["cut.safetensors"])


@case
def c_voice_load_header_length_lies(c):
    p = c.path("liar.safetensors")
    open(p, "wb").write(struct.pack("<Q", 2**63 - 1) + b"{}" + b" " * 6)
    s, _ = c.voice_load(os.fsencode(p))
    c.expect("cbx_voice_load(header length 2^63)", s, (BUNDLE,), ["liar.safetensors"])


@case
def c_voice_load_too_big(c):
    p = c.path("big.safetensors")
    with open(p, "wb") as f:
        f.truncate((16 << 20) + 1)
    s, _ = c.voice_load(os.fsencode(p))
    c.expect("cbx_voice_load(16 MiB + 1)", s, (BUNDLE, IO, INVALID_ARGUMENT), ["big.safetensors"])


@case
def c_synth_with_voice_tokens_out_of_range(c):
    data = bytearray(open(os.path.join(c.bundle, "voice.safetensors"), "rb").read())
    n = struct.unpack_from("<Q", data, 0)[0]
    header = json.loads(data[8:8 + n])
    start, _end = header["t3.cond_prompt_speech_tokens"]["data_offsets"]
    struct.pack_into("<q", data, 8 + n + start, 10**12)
    p = c.path("tokens.safetensors")
    open(p, "wb").write(bytes(data))
    s, v = c.voice_load(os.fsencode(p))
    if s != 0:
        c.expect("cbx_voice_load(token 1e12)", s, (BUNDLE,), ["token"])
        return
    s, _ = c.synth(b"Hi there.", c.request(), v)
    c.expect("cbx_synthesize(voice with token 1e12)", s, (INVALID_ARGUMENT, BUNDLE), ["token"])


# ---- voice conversion ----------------------------------------------------------------


def _convert_request(c, **fields):
    r = CbxConvertRequest()
    c.expect("cbx_convert_request_default",
             c.lib.cbx_convert_request_default(c.engine(), ctypes.byref(r)), OK)
    if r.struct_size != ctypes.sizeof(CbxConvertRequest):
        raise Fail(f"CbxConvertRequest.struct_size {r.struct_size}, sizeof {ctypes.sizeof(CbxConvertRequest)}")
    r.flow_steps = 1
    r.watermark = 0
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def _convert(c, samples, rate, request=None, target=None, count=None, buf=None):
    """cbx_convert with `samples` (a list) or a raw `buf`; checks the out-pointer contract."""
    if buf is None:
        buf = (ctypes.c_float * len(samples))(*samples) if samples else None
    n = len(samples) if count is None else count
    out = VP(0xDEADBEEF)
    r = request if request is not None else _convert_request(c)
    s = c.lib.cbx_convert(c.engine(), buf, n, rate, target, ctypes.byref(r), ctypes.byref(out))
    if s != 0 and out.value is not None:
        raise Fail(f"cbx_convert failed ({STATUS.get(s)}) but left *out non-NULL")
    return s, out


def _audio_len(c, audio):
    data, count, rate = VP(), ctypes.c_size_t(), ctypes.c_uint32()
    c.expect("cbx_audio_samples", c.lib.cbx_audio_samples(audio, ctypes.byref(data), ctypes.byref(count),
                                                          ctypes.byref(rate)), OK)
    if rate.value != 24000:
        raise Fail(f"converted audio at {rate.value} Hz")
    return count.value


@case
def c_convert_valid(c):
    s, a = _convert(c, tone(0.5, 16000), 16000)
    c.expect("cbx_convert(0.5 s at 16 kHz)", s, OK)
    n = _audio_len(c, a)
    c.lib.cbx_audio_free(a)
    if n not in (13 * 960, 13 * 960 - 480):
        raise Fail(f"{n} samples for 13 tokens")


@case
def c_convert_valid_40_ms_seed_u64_max(c):
    s, a = _convert(c, tone(0.04, 16000), 16000, _convert_request(c, seed=U64_MAX))
    c.expect("cbx_convert(40 ms, seed UINT64_MAX)", s, OK)
    c.lib.cbx_audio_free(a)


@case
def c_convert_request_default_null(c):
    c.expect("cbx_convert_request_default(engine, NULL)",
             c.lib.cbx_convert_request_default(c.engine(), None), (INVALID_ARGUMENT,), ["request"])
    r = CbxConvertRequest()
    c.expect("cbx_convert_request_default(NULL, req)",
             c.lib.cbx_convert_request_default(None, ctypes.byref(r)), (INVALID_ARGUMENT,), ["engine"])


@case
def c_convert_null_engine(c):
    buf = (ctypes.c_float * 8000)(*tone(0.5, 16000))
    out = VP()
    s = c.lib.cbx_convert(None, buf, 8000, 16000, None, None, ctypes.byref(out))
    c.expect("cbx_convert(NULL engine)", s, (INVALID_ARGUMENT,), ["engine"])


@case
def c_convert_null_out(c):
    buf = (ctypes.c_float * 8000)(*tone(0.5, 16000))
    s = c.lib.cbx_convert(c.engine(), buf, 8000, 16000, None, None, None)
    c.expect("cbx_convert(NULL out)", s, (INVALID_ARGUMENT,), ["out"])


@case
def c_convert_null_samples_with_count(c):
    s, _ = _convert(c, [], 16000, count=8000)
    c.expect("cbx_convert(NULL samples, count 8000)", s, (INVALID_ARGUMENT,), ["samples"])


@case
def c_convert_empty(c):
    s, _ = _convert(c, [], 16000)
    c.expect("cbx_convert(no samples)", s, (INVALID_AUDIO,), ["empty"])


@case
def c_convert_zero_rate(c):
    s, _ = _convert(c, tone(0.5, 16000), 0)
    c.expect("cbx_convert(rate 0)", s, (INVALID_ARGUMENT,), ["sample_rate"])


@case
def c_convert_rate_out_of_bounds(c):
    for rate in (3999, 384001, U32_MAX):
        s, _ = _convert(c, tone(0.5, 16000), rate)
        c.expect(f"cbx_convert(rate {rate})", s, (INVALID_AUDIO,), ["sample rate"])


@case
def c_convert_silent(c):
    s, _ = _convert(c, [0.0] * 16000, 16000)
    c.expect("cbx_convert(all zeros)", s, (INVALID_AUDIO,), ["silent"])
    s, _ = _convert(c, [5e-5, -5e-5] * 8000, 16000)
    c.expect("cbx_convert(peak 5e-5)", s, (INVALID_AUDIO,), ["silent"])


@case
def c_convert_shorter_than_a_token(c):
    s, _ = _convert(c, tone(0.5, 16000)[:639], 16000)
    c.expect("cbx_convert(639 samples at 16 kHz)", s, (INVALID_AUDIO,), ["0.04 s"])


@case
def c_convert_count_past_the_hour(c):
    # A 16-sample buffer with a count far beyond it: refused from the count, never read.
    buf = (ctypes.c_float * 16)()
    for count in (3600 * 16000 + 1, 2**62, 2**64 - 1):
        s, _ = _convert(c, [], 16000, count=count, buf=buf)
        c.expect(f"cbx_convert(count {count})", s, (INVALID_AUDIO,), ["3600 s"])


@case
def c_convert_one_hour_and_a_sample(c):
    n = 4000 * 3600 + 1
    buf = (ctypes.c_float * n)()
    s, _ = _convert(c, [], 4000, count=n, buf=buf)
    c.expect("cbx_convert(1 h + 1 sample at 4 kHz)", s, (INVALID_AUDIO,), ["3600 s"])


@case
def c_convert_nan_inf_huge(c):
    for i, v, needle in ((100, float("nan"), "sample 100"), (7, float("inf"), "finite"), (9, 1e6, "1000")):
        x = tone(0.5, 16000)
        x[i] = v
        s, _ = _convert(c, x, 16000)
        c.expect(f"cbx_convert(sample {i} = {v})", s, (INVALID_AUDIO,), [needle])


@case
def c_convert_request_struct_size_zero(c):
    r = _convert_request(c)
    r.struct_size = 0
    s, _ = _convert(c, tone(0.5, 16000), 16000, r)
    c.expect("cbx_convert(struct_size 0)", s, (INVALID_ARGUMENT,), ["struct_size"])


@case
def c_convert_flow_steps_out_of_range(c):
    for v in (0, 101, U32_MAX):
        s, _ = _convert(c, tone(0.5, 16000), 16000, _convert_request(c, flow_steps=v))
        c.expect(f"cbx_convert(flow_steps {v})", s, (INVALID_ARGUMENT,), ["flow_steps"])


@case
def c_convert_streaming_null_callback(c):
    buf = (ctypes.c_float * 8000)(*tone(0.5, 16000))
    r = _convert_request(c)
    s = c.lib.cbx_convert_streaming(c.engine(), buf, 8000, 16000, None, ctypes.byref(r), CbxChunkCallback(), None)
    c.expect("cbx_convert_streaming(NULL callback)", s, (INVALID_ARGUMENT,), ["callback"])


@case
def c_convert_streaming_cancel_odd_return(c):
    buf = (ctypes.c_float * 8000)(*tone(0.5, 16000))
    r = _convert_request(c)
    calls = []

    def odd(_samples, count, rate, _user):
        calls.append((count, rate))
        return -12345

    cb = CbxChunkCallback(odd)
    s = c.lib.cbx_convert_streaming(c.engine(), buf, 8000, 16000, None, ctypes.byref(r), cb, None)
    c.expect("cbx_convert_streaming(callback returns -12345)", s, (CANCELLED,))
    if len(calls) != 1 or calls[0][1] != 24000:
        raise Fail(f"callback calls {calls}, expected one at 24000 Hz")


@case
def c_convert_streaming_bad_source(c):
    r = _convert_request(c)
    calls = []
    cb = CbxChunkCallback(lambda *_: calls.append(1) or 0)
    buf = (ctypes.c_float * 16000)()
    s = c.lib.cbx_convert_streaming(c.engine(), buf, 16000, 16000, None, ctypes.byref(r), cb, None)
    c.expect("cbx_convert_streaming(silent)", s, (INVALID_AUDIO,), ["silent"])
    if calls:
        raise Fail("the callback was called for a refused source")


def _convert_wav(c, path, target=None):
    out = VP(0xDEADBEEF)
    r = _convert_request(c)
    s = c.lib.cbx_convert_wav_file(c.engine(), path, target, ctypes.byref(r), ctypes.byref(out))
    if s != 0 and out.value is not None:
        raise Fail(f"cbx_convert_wav_file failed ({STATUS.get(s)}) but left *out non-NULL")
    return s, out


@case
def c_convert_wav_file_bad_sources(c):
    s, _ = _convert_wav(c, None)
    c.expect("cbx_convert_wav_file(NULL path)", s, (INVALID_ARGUMENT,), ["source_path"])
    s, _ = _convert_wav(c, c.bpath("ghost.wav"))
    c.expect("cbx_convert_wav_file(missing)", s, (INVALID_AUDIO, IO), ["ghost.wav"])
    s, _ = _convert_wav(c, b"/dev/zero")
    c.expect("cbx_convert_wav_file(/dev/zero)", s, (INVALID_AUDIO, IO), ["/dev/zero"])
    wav_pcm16(c.path("silent.wav"), [0.0] * 16000, 16000)
    s, _ = _convert_wav(c, c.bpath("silent.wav"))
    c.expect("cbx_convert_wav_file(silent)", s, (INVALID_AUDIO,), ["silent.wav", "silent"])
    # 3601 s of 8-bit audio at 4 kHz (14 MB): refused after reading one frame past the hour.
    data = b"\x64" * (4000 * 3601)
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 4000, 4000, 1, 8)
    hdr += b"data" + struct.pack("<I", len(data))
    with open(c.path("long.wav"), "wb") as f:
        f.write(hdr + data)
    s, _ = _convert_wav(c, c.bpath("long.wav"))
    c.expect("cbx_convert_wav_file(3601 s)", s, (INVALID_AUDIO,), ["long.wav", "3600 s"])


@case
def c_convert_wav_file_valid(c):
    wav_pcm16(c.path("s.wav"), tone(1.0, 22050), 22050)
    s, a = _convert_wav(c, c.bpath("s.wav"))
    c.expect("cbx_convert_wav_file(1 s at 22.05 kHz)", s, OK)
    n = _audio_len(c, a)
    c.lib.cbx_audio_free(a)
    if n not in (25 * 960, 25 * 960 - 480):
        raise Fail(f"{n} samples for 25 tokens")


@case
def c_vc_target_bad_inputs(c):
    out = VP(0xDEADBEEF)
    c.expect("cbx_vc_target_from_voice(NULL)", c.lib.cbx_vc_target_from_voice(None, ctypes.byref(out)),
             (INVALID_ARGUMENT,), ["voice"])
    if out.value is not None:
        raise Fail("*out not NULL after a failure")
    c.expect("cbx_vc_target_from_wav_file(NULL path)",
             c.lib.cbx_vc_target_from_wav_file(c.engine(), None, ctypes.byref(out)), (INVALID_ARGUMENT,), ["path"])
    c.expect("cbx_vc_target_from_wav_file(missing)",
             c.lib.cbx_vc_target_from_wav_file(c.engine(), c.bpath("ghost.wav"), ctypes.byref(out)),
             (INVALID_AUDIO, IO), ["ghost.wav"])
    wav_pcm16(c.path("short.wav"), tone(0.3, 16000), 16000)
    c.expect("cbx_vc_target_from_wav_file(0.3 s)",
             c.lib.cbx_vc_target_from_wav_file(c.engine(), c.bpath("short.wav"), ctypes.byref(out)),
             (INVALID_AUDIO,), ["short.wav", "0.5 s"])
    x = tone(0.3, 16000)
    buf = (ctypes.c_float * len(x))(*x)
    c.expect("cbx_vc_target_from_samples(0.3 s)",
             c.lib.cbx_vc_target_from_samples(c.engine(), buf, len(x), 16000, ctypes.byref(out)),
             (INVALID_AUDIO,), ["0.5 s"])
    c.expect("cbx_vc_target_from_samples(count 2^62)",
             c.lib.cbx_vc_target_from_samples(c.engine(), buf, 2**62, 16000, ctypes.byref(out)),
             (INVALID_AUDIO,), ["300 s"])
    c.expect("cbx_vc_target_from_samples(NULL, 8000)",
             c.lib.cbx_vc_target_from_samples(c.engine(), None, 8000, 16000, ctypes.byref(out)),
             (INVALID_ARGUMENT,), ["samples"])
    c.expect("cbx_vc_target_from_samples(rate 0)",
             c.lib.cbx_vc_target_from_samples(c.engine(), buf, len(x), 0, ctypes.byref(out)),
             (INVALID_ARGUMENT,), ["sample_rate"])
    c.expect("cbx_vc_target_from_samples(NULL out)",
             c.lib.cbx_vc_target_from_samples(c.engine(), buf, len(x), 16000, None), (INVALID_ARGUMENT,), ["out"])
    c.lib.cbx_vc_target_free(None)


@case
def c_vc_targets_convert(c):
    """A target from samples, from a WAV and from a voice: each converts; the WAV's and its voice's alike."""
    x = tone(1.0, 22050)
    wav_pcm16(c.path("t.wav"), x, 22050)
    t_wav = VP()
    c.expect("cbx_vc_target_from_wav_file", c.lib.cbx_vc_target_from_wav_file(
        c.engine(), c.bpath("t.wav"), ctypes.byref(t_wav)), OK)
    voice = VP()
    c.expect("cbx_voice_from_wav_file", c.lib.cbx_voice_from_wav_file(
        c.engine(), c.bpath("t.wav"), ctypes.byref(voice)), OK)
    t_voice = VP()
    c.expect("cbx_vc_target_from_voice", c.lib.cbx_vc_target_from_voice(voice, ctypes.byref(t_voice)), OK)
    c.lib.cbx_voice_free(voice)
    buf = (ctypes.c_float * len(x))(*x)
    t_samples = VP()
    c.expect("cbx_vc_target_from_samples", c.lib.cbx_vc_target_from_samples(
        c.engine(), buf, len(x), 22050, ctypes.byref(t_samples)), OK)
    outs = []
    for t in (t_wav, t_voice, t_samples):
        s, a = _convert(c, tone(0.5, 16000), 16000, _convert_request(c, seed=5), target=t)
        c.expect("cbx_convert(target)", s, OK)
        data, count, rate = ctypes.POINTER(ctypes.c_float)(), ctypes.c_size_t(), ctypes.c_uint32()
        c.lib.cbx_audio_samples(a, ctypes.byref(data), ctypes.byref(count), ctypes.byref(rate))
        outs.append(list(data[:count.value]))
        c.lib.cbx_audio_free(a)
    for t in (t_wav, t_voice, t_samples):
        c.lib.cbx_vc_target_free(t)
    if outs[0] != outs[1]:
        raise Fail("a WAV target and the target of its voice convert differently")
    if any(not all(math.isfinite(v) and abs(v) <= 1.0 for v in o) for o in outs):
        raise Fail("converted samples not finite or outside [-1, 1]")


# ---- driver ------------------------------------------------------------------------


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "list":
        for name in CASES:
            print(name)
        return 0
    if len(sys.argv) != 3 or sys.argv[1] != "run" or sys.argv[2] not in CASES:
        print(f"usage: {sys.argv[0]} list | run NAME", file=sys.stderr)
        return 2
    ctx = None
    try:
        ctx = Ctx()
        CASES[sys.argv[2]](ctx)
        verdict = {"pass": True, "detail": "; ".join(ctx.notes)}
    except Fail as e:
        verdict = {"pass": False, "detail": str(e)}
    except Exception:  # a harness error is a failure too, with its traceback
        verdict = {"pass": False, "detail": "harness error: " + traceback.format_exc()}
    sys.stdout.flush()
    print(json.dumps(verdict), flush=True)
    # Skip engine teardown (and interpreter finalisation races with library threads).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
