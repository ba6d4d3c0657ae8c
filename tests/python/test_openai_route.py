"""The OpenAI speech route without HTTP (`OpenAISpeech`), and on a local Ray Serve cluster
(`chatterbox_ort.ray_serve.build_app`) started by the test and spoken to with the official
`openai` client: the same checks, errors and audio as `chatterbox-ort serve`."""

import io
import json
import socket
import urllib.request
import wave

import openai
import pytest

import chatterbox_ort as cbx
from conftest import REF_WAV, TINY

FAST = {"max_new_tokens": 24, "min_new_tokens": 24, "flow_steps": 1, "seed": 5}


def body(**fields):
    b = {"model": "tts-1", "input": "Hello from Ray.", "voice": "alloy", **FAST}
    b.update(fields)
    return json.dumps(b).encode()


def frames(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        return w.getnframes()


@pytest.fixture(scope="module")
def api(engine, tmp_path_factory):
    return cbx.OpenAISpeech(engine, voices=tmp_path_factory.mktemp("voices"), voice_cache=2)


def test_prepare_and_run(api):
    job = api.prepare(body(response_format="wav"))
    assert (job.content_type, job.streaming, job.voice) == ("audio/wav", False, "alloy")
    wav = b"".join(api.run(job))
    assert frames(wav) == 24 * 960
    job = api.prepare(body(response_format="pcm", stream_format="audio", max_new_tokens=60,
                           min_new_tokens=60, first_chunk_tokens=10, chunk_tokens=10))
    assert job.streaming and job.content_type == "audio/pcm"
    pieces = list(api.run(job))
    assert len(pieces) > 2 and sum(map(len, pieces)) == 60 * 960 * 2
    assert api.models()[0] == "chatterbox"


def test_errors_are_openai_errors(api):
    cases = [
        (body(speed=2.0), 400, "speed"),
        (body(model="whisper-1"), 404, "model"),
        (body(voice="../x"), 400, "voice"),
        (body(bogus=1), 400, "bogus"),
        (b"{", 400, None),
    ]
    for b, status, param in cases:
        with pytest.raises(cbx.OpenAIError) as e:
            api.prepare(b)
        assert (e.value.status, e.value.param) == (status, param), e.value
        assert json.loads(e.value.body)["error"]["message"] == e.value.message
    # A voice that does not exist fails when the run starts.
    job = api.prepare(body(voice="nobody"))
    with pytest.raises(cbx.OpenAIError) as e:
        b"".join(api.run(job))
    assert e.value.status == 404 and e.value.code == "voice_not_found"


def test_voice_library_and_early_close(api):
    info = api.add_voice("rayvoice", REF_WAV.read_bytes())
    assert info["source"] == "library"
    assert {"name": "rayvoice", "id": "rayvoice", "object": "voice", "source": "library"} in api.voices()
    with pytest.raises(cbx.OpenAIError) as e:
        api.add_voice("rayvoice", REF_WAV.read_bytes())
    assert e.value.status == 409
    job = api.prepare(body(voice="rayvoice", response_format="pcm", stream_format="audio",
                           max_new_tokens=1000, min_new_tokens=1000, first_chunk_tokens=10))
    with api.run(job) as stream:
        assert len(next(stream)) > 0
    # Closed: the 1000-token synthesis was cancelled; the next run works.
    assert frames(b"".join(api.run(api.prepare(body(voice="rayvoice", response_format="wav"))))) == 24 * 960
    api.remove_voice("rayvoice")
    with pytest.raises(cbx.OpenAIError):
        api.remove_voice("rayvoice")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_serve_deployment(tmp_path, monkeypatch):
    import ray
    from ray import serve

    from chatterbox_ort.ray_serve import build_app

    # Ray Serve gives its HTTP proxy 5 s to answer a readiness check and kills it after three
    # misses; on a loaded 2-core machine (CI builds the fuzz targets beside these tests) the
    # proxy's worker process takes longer than that to start (CI run of 2026-12-02: "killed by
    # `ray.kill`, never ran"). The controller and proxy inherit these from this process.
    monkeypatch.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    monkeypatch.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            build_app(str(TINY), voices=str(tmp_path / "voices"), threads=1, max_replicas=2, num_cpus=0.5),
            route_prefix="/",
            name="chatterbox",
        )
        base = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        wav = client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello from Ray.", response_format="wav", extra_body=FAST
        ).content
        assert frames(wav) == 24 * 960
        # The same bytes as the route run in this process (and as `chatterbox-ort serve`).
        local = cbx.OpenAISpeech(cbx.Engine(TINY, threads=1))
        assert wav == b"".join(local.run(local.prepare(body(response_format="wav"))))
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Streaming on Ray.", response_format="pcm",
            stream_format="audio",
            extra_body={**FAST, "max_new_tokens": 60, "min_new_tokens": 60, "first_chunk_tokens": 10, "chunk_tokens": 10},
        ) as r:
            chunks = [c for c in r.iter_bytes(chunk_size=None) if c]
        assert len(chunks) > 1 and sum(map(len, chunks)) == 60 * 960 * 2
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=2.0)
        assert e.value.body["param"] == "speed"
        assert [m.id for m in client.models.list()][0] == "chatterbox"
        req = urllib.request.Request(base + "/v1/audio/voices?name=bob", data=REF_WAV.read_bytes(), method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 201
        names = [v["name"] for v in json.load(urllib.request.urlopen(base + "/v1/audio/voices"))["data"]]
        assert "bob" in names
        wav = client.audio.speech.create(
            model="tts-1", voice="bob", input="A new voice.", response_format="wav", extra_body=FAST
        ).content
        assert frames(wav) == 24 * 960
    finally:
        serve.shutdown()
        ray.shutdown()
