"""The Python package `chatterbox_ort` against the committed tiny bundles (random weights:
the audio is noise-like, but every code path runs). Run by scripts/test-python.sh."""

import errno
import json
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

import chatterbox_ort as cbx

from conftest import REF_WAV, TINY, TINY_MULTILINGUAL, TINY_TURBO

TEXT = "Hello from Python. This is a test."
SAMPLES_PER_TOKEN = 960  # 40 ms at 24 kHz


def fixed(tokens):
    """Keywords that make a chunk exactly `tokens` speech tokens long (random weights never
    stop on their own)."""
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


def to_i16(x):
    """The CLI's 16-bit conversion (src/audio/wav.rs `to_i16`): clamp, scale by 32767 in
    float32, round half away from zero."""
    y = (np.clip(x, -1.0, 1.0).astype(np.float32) * np.float32(32767.0)).astype(np.float64)
    return (np.sign(y) * np.floor(np.abs(y) + 0.5)).astype(np.int16)


def cli_pcm(cli, bundle, text, args):
    out = subprocess.run(
        [cli, "say", text, "--bundle", str(bundle), "--format", "pcm", "-o", "-", *args],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return np.frombuffer(out.stdout, dtype="<i2")


def stream_threads():
    """Names of this process's threads that run a streaming synthesis."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())
        except OSError:
            pass
    return [n for n in names if n.startswith("chatterbox-str")]


def no_stream_threads():
    """Whether the streaming threads are gone (a joined thread can stay listed in /proc for
    a moment after the join returned)."""
    deadline = time.monotonic() + 2.0
    while stream_threads():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- the engine and its properties -------------------------------------------------------


def test_engine_properties(engine, turbo, multilingual):
    assert engine.sample_rate == 24000
    assert engine.family == "original"
    assert turbo.family == "turbo"
    assert multilingual.family == "multilingual"
    assert engine.languages == [] and turbo.languages == []
    assert {"en", "fr", "ja", "zh"} <= set(multilingual.languages)
    assert engine.provider == "cpu"
    assert Path(engine.bundle) == TINY
    assert isinstance(engine.default_voice, cbx.Voice)
    assert engine.default_voice.prompt_tokens > 0
    d = engine.defaults
    assert d["temperature"] == pytest.approx(0.8) and d["cfg_weight"] == pytest.approx(0.5)
    assert d["seed"] == 0 and d["watermark"] is True and d["language"] is None
    assert turbo.defaults["top_k"] == 1000
    assert "family=turbo" in repr(turbo)
    assert cbx.ERROR_KINDS["invalid_argument"] == 1 and cbx.ERROR_KINDS["internal"] == 11
    assert "CPUExecutionProvider" in cbx.available_providers()


def test_onnxruntime_comes_from_the_onnxruntime_package():
    """Without ORT_DYLIB_PATH the engine loads the library of the `onnxruntime` package
    (fresh processes: ONNX Runtime is loaded once per process)."""
    script = (
        "import json, chatterbox_ort as c; c.Engine(%r); print(json.dumps(c.runtime_info()))"
        % str(TINY)
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    info = json.loads(out.stdout)
    import onnxruntime  # only located here; the package itself never imports it

    capi = Path(onnxruntime.__file__).parent / "capi"
    assert Path(info["library_path"]).parent == capi.resolve()
    assert info["source"] == "explicit" and info["version"] == "1.32.0"

    env["ORT_DYLIB_PATH"] = info["library_path"]
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["source"] == "env_var"


# --- synthesis -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bundle,keywords,cli_args",
    [
        (TINY, {}, []),
        (TINY_TURBO, {}, []),
        (TINY_MULTILINGUAL, {"language": "fr"}, ["--language", "fr"]),
    ],
    ids=["original", "turbo", "multilingual"],
)
def test_synthesize_equals_the_cli(request, cli, bundle, keywords, cli_args):
    eng = request.getfixturevalue(
        {TINY: "engine", TINY_TURBO: "turbo", TINY_MULTILINGUAL: "multilingual"}[bundle]
    )
    audio = eng.synthesize(TEXT, seed=11, **fixed(25), **keywords)
    assert isinstance(audio, np.ndarray)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.flags.c_contiguous and audio.flags.writeable
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    reference = cli_pcm(
        cli, bundle, TEXT,
        ["--seed", "11", "--max-new-tokens", "25", "--min-new-tokens", "25", *cli_args],
    )
    assert len(audio) == len(reference)
    np.testing.assert_array_equal(to_i16(audio), reference)


def test_synthesize_is_deterministic_per_seed(engine):
    a = engine.synthesize(TEXT, seed=3, **fixed(20))
    b = engine.synthesize(TEXT, seed=3, **fixed(20))
    c = engine.synthesize(TEXT, seed=4, **fixed(20))
    assert len(a) == 20 * SAMPLES_PER_TOKEN
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_keywords_change_the_audio(engine):
    base = engine.synthesize(TEXT, seed=5, **fixed(15))
    for kw in [
        {"temperature": 0.5},
        {"cfg_weight": 0.0},
        {"exaggeration": 0.9},
        {"flow_steps": 3},
        {"watermark": False},
        {"top_p": 0.5},
        {"repetition_penalty": 1.0},
    ]:
        other = engine.synthesize(TEXT, seed=5, **fixed(15), **kw)
        assert len(other) == len(base), kw
        assert not np.array_equal(other, base), kw
    # Giving a default explicitly changes nothing.
    d = engine.defaults
    same = engine.synthesize(
        TEXT, seed=5, **fixed(15), temperature=d["temperature"], min_p=d["min_p"],
        flow_steps=d["flow_steps"], watermark=True,
    )
    np.testing.assert_array_equal(same, base)


def test_multilingual_languages(multilingual):
    for lang, text in [("ja", "こんにちは、世界。"), ("zh", "你好，世界。"), ("de", "Guten Tag.")]:
        audio = multilingual.synthesize(text, language=lang, **fixed(10))
        assert len(audio) == 10 * SAMPLES_PER_TOKEN, lang


def test_concurrent_syntheses_equal_sequential_ones(engine):
    expected = {s: engine.synthesize(TEXT, seed=s, **fixed(12)) for s in (1, 2, 3)}
    got = {}

    def run(seed):
        got[seed] = engine.synthesize(TEXT, seed=seed, **fixed(12))

    threads = [threading.Thread(target=run, args=(s,)) for s in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, a in expected.items():
        np.testing.assert_array_equal(got[s], a)


def test_gil_is_released_during_synthesis(engine):
    """Another Python thread keeps running while the engine works: its longest pause inside
    the synthesis is a small part of the synthesis (holding the GIL would stop it for the
    whole call)."""
    stamps = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.002)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        engine.synthesize(TEXT, seed=1, **fixed(150))
        end = time.perf_counter()
    finally:
        stop.set()
        ticker.join()
    inside = [t for t in stamps if start <= t <= end]
    gaps = np.diff([start, *inside, end])
    assert end - start > 0.3, "the synthesis was too short to tell"
    assert len(inside) > 20, f"{len(inside)} ticks in {end - start:.2f} s"
    assert gaps.max() < 0.5 * (end - start), f"longest pause {gaps.max():.3f} s of {end - start:.2f} s"


def test_ctrl_c_stops_a_synthesis():
    """SIGINT during a long synthesis, or while waiting for a stream's next piece, raises
    KeyboardInterrupt within a few tenths of a second and stops the synthesis; the engine
    works afterwards (own process: pytest handles SIGINT itself)."""
    script = f"""
import os, signal, threading, time
import chatterbox_ort as c
# A process started in the background (CI) may inherit SIGINT ignored, and Python keeps it so.
signal.signal(signal.SIGINT, signal.default_int_handler)
e = c.Engine({str(TINY)!r})
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
t = time.perf_counter()
try:
    e.synthesize("Hello.", max_new_tokens=2000, min_new_tokens=2000)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted after %.2f s" % (time.perf_counter() - t))
print(len(e.synthesize("Hello.", max_new_tokens=5, min_new_tokens=5)))
it = e.stream("Hello.", max_new_tokens=2000, min_new_tokens=2000, chunk_tokens=4000)
next(it)  # then nothing comes for a long time: the next pass is at 4020 tokens
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
t = time.perf_counter()
try:
    next(it)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted after %.2f s" % (time.perf_counter() - t))
def streaming():
    for n in os.listdir("/proc/self/task"):
        try:
            if open("/proc/self/task/%s/comm" % n).read().startswith("chatterbox-str"):
                return True
        except OSError:
            pass
    return False
deadline = time.monotonic() + 2.0
while time.monotonic() < deadline and streaming():
    time.sleep(0.01)
print(time.monotonic() < deadline)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].startswith("interrupted after"), out.stdout + out.stderr
    assert float(lines[0].split()[2]) < 3.0, lines[0]
    assert lines[1] == str(5 * SAMPLES_PER_TOKEN)
    # Waiting in a stream's next(): the stream is closed too.
    assert lines[2].startswith("interrupted after"), out.stdout + out.stderr
    assert float(lines[2].split()[2]) < 3.0, lines[2]
    assert lines[3] == "True", "the streaming thread is still there"


# --- streaming -----------------------------------------------------------------------------


def test_stream_pieces_join_to_the_synthesis(engine):
    kw = dict(seed=9, watermark=False, **fixed(60))
    pieces = list(engine.stream(TEXT, first_chunk_tokens=12, chunk_tokens=20, **kw))
    assert len(pieces) > 1
    assert all(p.dtype == np.float32 and p.ndim == 1 and len(p) > 0 for p in pieces)
    joined = np.concatenate(pieces)
    whole = engine.synthesize(TEXT, **kw)
    assert len(joined) == len(whole) == 60 * SAMPLES_PER_TOKEN
    # The last piece is computed from every token, as the synthesis is: equal after its
    # 40 ms cross-fade (without the watermark; docs/STREAMING.md).
    start = len(joined) - len(pieces[-1]) + SAMPLES_PER_TOKEN
    np.testing.assert_array_equal(joined[start:], whole[start:])
    # The same seed gives the same stream, with or without overlap.
    again = list(engine.stream(TEXT, first_chunk_tokens=12, chunk_tokens=20, overlap=True, **kw))
    assert len(again) == len(pieces)
    for a, b in zip(again, pieces):
        np.testing.assert_array_equal(a, b)


def test_stream_of_several_text_chunks(engine):
    text = " ".join(f"Sentence number {i} is here to make the text long enough." for i in range(12))
    kw = dict(seed=2, **fixed(12))
    whole = engine.synthesize(text, **kw)
    joined = np.concatenate(list(engine.stream(text, **kw)))
    assert len(joined) == len(whole) > 2 * 12 * SAMPLES_PER_TOKEN


def test_closing_a_stream_cancels_it(engine):
    it = engine.stream(TEXT, seed=1, **fixed(1000))
    first = next(it)
    assert len(first) > 0
    assert stream_threads(), "no streaming thread while streaming"
    t = time.perf_counter()
    it.close()
    assert time.perf_counter() - t < 3.0
    assert no_stream_threads()
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # idempotent
    assert len(engine.synthesize(TEXT, **fixed(5))) == 5 * SAMPLES_PER_TOKEN


def test_dropping_a_stream_cancels_it(engine):
    t = time.perf_counter()
    for i, _ in enumerate(engine.stream(TEXT, seed=1, **fixed(1000))):
        if i == 1:
            break  # the iterator is dropped here
    assert time.perf_counter() - t < 10.0
    assert no_stream_threads()
    with engine.stream(TEXT, seed=1, **fixed(1000)) as it:
        next(it)
    assert no_stream_threads()
    # Never iterated at all.
    it = engine.stream(TEXT, seed=1, **fixed(1000))
    del it
    assert no_stream_threads()
    assert len(engine.synthesize(TEXT, **fixed(5))) == 5 * SAMPLES_PER_TOKEN


def test_stream_errors_surface_when_iterating(engine, multilingual):
    it = engine.stream("   ")
    with pytest.raises(cbx.InvalidTextError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    # Argument errors are raised by the call itself.
    with pytest.raises(cbx.InvalidArgumentError) as e:
        engine.stream(TEXT, first_chunk_tokens=1)
    assert e.value.parameter == "first_chunk_tokens"
    with pytest.raises(cbx.InvalidArgumentError) as e:
        engine.stream(TEXT, chunk_tokens=0)
    assert e.value.parameter == "chunk_tokens"
    with pytest.raises(cbx.InvalidArgumentError) as e:
        multilingual.stream(TEXT)
    assert e.value.parameter == "language"


# --- errors --------------------------------------------------------------------------------


def test_error_classes():
    assert issubclass(cbx.InvalidArgumentError, cbx.ChatterboxError)
    for cls in (cbx.InvalidArgumentError, cbx.InvalidTextError, cbx.InvalidAudioError):
        assert issubclass(cls, ValueError)
    assert issubclass(cbx.IoError, OSError)
    assert issubclass(cbx.OnnxRuntimeError, RuntimeError)
    classes = [getattr(cbx, name) for name in cbx.__all__ if name.endswith("Error")]
    # OpenAIError is the HTTP-shaped error of the OpenAI route, not an engine kind.
    assert not issubclass(cbx.OpenAIError, cbx.ChatterboxError)
    kinds = {c.kind: c.code for c in classes if c not in (cbx.ChatterboxError, cbx.OpenAIError)}
    assert kinds == cbx.ERROR_KINDS


@pytest.mark.parametrize(
    "keywords,parameter",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": 1.0}, "min_p"),
        ({"cfg_weight": -0.1}, "cfg_weight"),
        ({"exaggeration": -1.0}, "exaggeration"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"flow_steps": 0}, "flow_steps"),
        ({"flow_steps": 101}, "flow_steps"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"max_new_tokens": 10**6}, "max_new_tokens"),
        ({"min_new_tokens": 2000}, "min_new_tokens"),
        ({"top_k": -5}, "top_k"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"language": "fr"}, "language"),
        ({"language": "french!"}, "language"),
    ],
)
def test_bad_keywords_raise_invalid_argument(engine, keywords, parameter):
    with pytest.raises(cbx.InvalidArgumentError) as e:
        engine.synthesize(TEXT, **keywords)
    err = e.value
    assert isinstance(err, ValueError) and isinstance(err, cbx.ChatterboxError)
    assert err.kind == "invalid_argument" and err.code == 1
    assert err.parameter == parameter
    assert parameter in str(err)


def test_bad_arguments_of_other_kinds(engine, multilingual):
    with pytest.raises(TypeError, match="temprature"):
        engine.synthesize(TEXT, temprature=0.5)
    with pytest.raises(TypeError, match="seed"):
        engine.synthesize(TEXT, seed="7")
    with pytest.raises(TypeError):
        engine.synthesize(TEXT, engine.default_voice, 7)  # seed is keyword-only
    with pytest.raises(TypeError):
        engine.synthesize(TEXT, voice="not a voice")
    with pytest.raises(cbx.InvalidTextError) as e:
        engine.synthesize("")
    assert e.value.kind == "invalid_text" and e.value.code == 2
    with pytest.raises(cbx.InvalidTextError):
        engine.synthesize("x" * (200 * 1024))
    with pytest.raises(cbx.InvalidArgumentError, match="language"):
        multilingual.synthesize(TEXT)
    with pytest.raises(cbx.InvalidArgumentError, match="language"):
        multilingual.synthesize(TEXT, language="xx")


def test_engine_arguments(tmp_path):
    with pytest.raises(cbx.InvalidArgumentError) as e:
        cbx.Engine(TINY, residency="sometimes")
    assert e.value.parameter == "residency"
    with pytest.raises(cbx.InvalidArgumentError) as e:
        cbx.Engine(TINY, provider="tpu")
    assert e.value.parameter == "provider"
    for threads in (-1, 0, 10**6):
        with pytest.raises(cbx.InvalidArgumentError) as e:
            cbx.Engine(TINY, threads=threads)
        assert e.value.parameter == "threads"
    with pytest.raises((cbx.BundleError, cbx.IoError)) as e:
        cbx.Engine(tmp_path / "no-such-bundle")
    assert e.value.kind in ("bundle", "io")
    assert "no-such-bundle" in str(e.value) and "no-such-bundle" in e.value.filename
    (tmp_path / "empty").mkdir()
    with pytest.raises((cbx.BundleError, cbx.IoError), match="manifest"):
        cbx.Engine(tmp_path / "empty")
    with pytest.raises(cbx.OnnxRuntimeError, match="does not exist"):
        cbx.Engine(TINY, onnxruntime_library=tmp_path / "libonnxruntime.so")
    assert cbx.Engine(TINY, threads=1).sample_rate == 24000


# --- voices --------------------------------------------------------------------------------


def read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, w.getframerate()


def test_voice_from_wav_save_load(engine, tmp_path):
    voice = engine.voice_from_wav(REF_WAV)
    assert voice != engine.default_voice
    path = tmp_path / "me.voice.safetensors"
    voice.save(path)
    loaded = cbx.Voice.load(str(path))
    assert loaded == voice
    a = engine.synthesize(TEXT, voice, seed=1, **fixed(10))
    b = engine.synthesize(TEXT, voice=loaded, seed=1, **fixed(10))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, engine.synthesize(TEXT, seed=1, **fixed(10)))
    # The same samples as an array give the same voice (float64 and lists are converted).
    samples, rate = read_wav(REF_WAV)
    assert engine.voice_from_samples(samples, rate) == voice
    assert engine.voice_from_samples(samples.astype(np.float64), rate) == voice
    assert engine.voice_from_samples(samples[::2].tolist(), rate // 2) != voice


def test_voice_errors(engine, tmp_path):
    with pytest.raises(cbx.IoError) as e:
        engine.voice_from_wav(tmp_path / "missing.wav")
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOENT
    assert e.value.filename.endswith("missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEnot really")
    with pytest.raises(cbx.InvalidAudioError):
        engine.voice_from_wav(bad)
    with pytest.raises(cbx.InvalidAudioError):
        engine.voice_from_samples(np.zeros(100, np.float32), 24000)  # under 0.5 s
    with pytest.raises(cbx.InvalidAudioError):
        engine.voice_from_samples(np.full(24000, np.nan, np.float32), 24000)
    with pytest.raises(cbx.InvalidArgumentError) as e:
        engine.voice_from_samples(np.zeros((2, 24000), np.float32), 24000)
    assert e.value.parameter == "samples"
    with pytest.raises(cbx.InvalidArgumentError) as e:
        engine.voice_from_samples(np.zeros(24000, np.float32), -1)
    assert e.value.parameter == "sample_rate"
    with pytest.raises(cbx.IoError):
        cbx.Voice.load(tmp_path / "missing.safetensors")
    with pytest.raises(cbx.BundleError):
        cbx.Voice.load(bad)
    with pytest.raises(cbx.ChatterboxError):
        engine.default_voice.save(tmp_path)  # a folder


def test_turbo_voice(turbo):
    voice = turbo.voice_from_wav(REF_WAV)
    audio = turbo.synthesize("That is funny [laugh].", voice, seed=2, **fixed(10))
    assert len(audio) > 0


# --- residency and stats -------------------------------------------------------------------


def test_stats_and_residency():
    eng = cbx.Engine(TINY, residency="swap")
    stats = eng.stats()
    for key in ("provider", "residency", "budget_bytes", "predicted_peak_bytes", "components",
                "stages", "rss_bytes", "peak_rss_bytes"):
        assert key in stats, key
    assert stats["provider"] == "cpu" and stats["residency"] == "swap"
    names = [c["name"] for c in stats["components"]]
    assert "t3_decoder" in names and "hift" in names
    for c in stats["components"]:
        for key in ("policy", "loaded", "sessions_created", "sessions_destroyed", "run_count",
                    "weight_bytes"):
            assert key in c, key
        assert c["policy"] == "swap" and not c["loaded"]

    # idle: sessions stay after the synthesis until their time is up, or release_idle().
    eng.set_residency("idle=30")
    eng.synthesize(TEXT, **fixed(5))
    stats = eng.stats()
    assert stats["residency"] == "idle=30"
    decoder = next(c for c in stats["components"] if c["name"] == "t3_decoder")
    assert decoder["policy"] == "idle:30" and decoder["loaded"] and decoder["run_count"] > 0
    eng.release_idle()
    assert not any(c["loaded"] for c in eng.stats()["components"])

    eng.set_residency("resident")
    eng.synthesize(TEXT, **fixed(5))
    assert all(c["loaded"] and c["policy"] == "resident" for c in eng.stats()["components"])
    with pytest.raises(cbx.InvalidArgumentError) as e:
        eng.set_residency("idle=-3")
    assert e.value.parameter == "residency"


def test_package_is_typed():
    package = Path(cbx.__file__).parent
    assert (package / "py.typed").is_file()
    stub = (package / "_native.pyi").read_text()
    for name in ("class Engine", "class Voice", "class Stream", "def synthesize", "def stream",
                 "def set_residency", "def release_idle", "def stats"):
        assert name in stub, name
