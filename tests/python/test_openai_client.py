"""The official `openai` Python client against `chatterbox-ort serve`, unchanged: the server
started on loopback by the test, `client.audio.speech.create` and
`with_streaming_response` in every format, the client's own exceptions for errors."""

import io
import subprocess
import wave

import openai
import pytest

from conftest import TINY

# Random weights never stop by themselves: fix the length (tokens) and keep it short.
FAST = {"max_new_tokens": 24, "min_new_tokens": 24, "flow_steps": 1, "seed": 5}


class Server:
    def __init__(self, cli, *args):
        self.proc = subprocess.Popen(
            [cli, "serve", "--bundle", str(TINY), "--bind", "127.0.0.1:0", "--threads", "1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "http://" in line, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.base = "http://" + line.split("http://")[1].split()[0]

    def client(self, **kw):
        kw.setdefault("api_key", "not-needed-on-loopback")
        return openai.OpenAI(base_url=self.base + "/v1", max_retries=0, timeout=120, **kw)

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def server(cli):
    s = Server(cli)
    yield s
    s.stop()


def wav_frames(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        return w.getnframes()


def test_create_every_format(server):
    client = server.client()
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the OpenAI client.", response_format="wav", extra_body=FAST
    ).content
    frames = wav_frames(wav)
    # 24 speech tokens -> 24 * 960 samples (40 ms each at 24 kHz).
    assert frames == 24 * 960
    pcm = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the OpenAI client.", response_format="pcm", extra_body=FAST
    ).content
    assert pcm == wav[44:], "pcm is the wav's data, sample for sample"
    magic = {"mp3": (b"\xff", b"ID3"), "flac": (b"fLaC",), "opus": (b"OggS",)}
    for fmt, starts in magic.items():
        data = client.audio.speech.create(
            model="chatterbox", voice="default", input="Hello.", response_format=fmt, extra_body=FAST
        ).content
        assert data.startswith(starts), (fmt, data[:8])
        assert len(data) > 500, fmt
    # The default format is mp3, as OpenAI's.
    data = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.", extra_body=FAST).content
    assert data[:3] == b"ID3" or data[0] == 0xFF


def test_with_streaming_response_delivers_chunks(server, tmp_path):
    client = server.client()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input="Streaming, token by token.",
        response_format="pcm",
        stream_format="audio",
        extra_body={**FAST, "max_new_tokens": 80, "min_new_tokens": 80, "first_chunk_tokens": 10, "chunk_tokens": 10},
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        chunks = [c for c in response.iter_bytes(chunk_size=None) if c]
    assert len(chunks) > 2, len(chunks)
    assert sum(map(len, chunks)) == 80 * 960 * 2
    # stream_to_file (whole file) works too.
    out = tmp_path / "speech.wav"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="To a file.", response_format="wav", extra_body=FAST
    ) as response:
        response.stream_to_file(out)
    assert wav_frames(out.read_bytes()) == 24 * 960


def test_errors_are_the_clients_exceptions(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=1.5)
    assert e.value.status_code == 400 and "speed" in e.value.message
    assert e.value.body["param"] == "speed"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="aac")
    assert "aac" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", instructions="Speak softly.")
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    models = [m.id for m in client.models.list()]
    assert models[0] == "chatterbox" and "tts-1" in models


def test_api_key(cli):
    s = Server(cli, "--api-key", "client-test-key")
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client(api_key="wrong-key-0000").audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
        data = s.client(api_key="client-test-key").audio.speech.create(
            model="tts-1", voice="alloy", input="Hi.", response_format="wav", extra_body=FAST
        ).content
        assert wav_frames(data) == 24 * 960
    finally:
        s.stop()
