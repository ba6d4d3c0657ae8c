"""Chatterbox on Ray Serve: the OpenAI speech route over one engine per replica.

>>> from chatterbox_ort.ray_serve import build_app
>>> from ray import serve
>>> serve.run(build_app("onnx/full", voices="/shared/voices", max_replicas=4), route_prefix="/")

The route is the one `chatterbox-ort serve` answers (`POST /v1/audio/speech`, `GET
/v1/audio/voices`, `POST /v1/audio/voices`, `DELETE /v1/audio/voices/{name}`, `GET
/v1/models`, `GET /health`) with the same request checks, errors and encoders: both use the
engine's `openai` module (`chatterbox_ort.OpenAISpeech`). Each replica loads its own engine;
Ray Serve routes requests to replicas and adds or removes replicas by the number of requests
each one has ongoing (running + queued), between `min_replicas` and `max_replicas`.

Needs `ray[serve]` (not a dependency of the package: `pip install "ray[serve]"`).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations
# (`Request`, imported inside build_app) at runtime.
from typing import Any, Optional

from . import Engine, OpenAISpeech, OpenAIError

__all__ = ["build_app"]


def build_app(
    bundle: str,
    *,
    voices: Optional[str] = None,
    voice_cache: int = 16,
    max_input_chars: int = 4096,
    provider: str = "cpu",
    threads: Optional[int] = None,
    residency: str = "idle=300",
    min_replicas: int = 1,
    max_replicas: int = 1,
    target_ongoing_requests: float = 1.0,
    max_ongoing_requests: int = 2,
    max_queued_requests: int = 16,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Any:
    """The Ray Serve application (bind it with `serve.run`).

    - `bundle`, `provider`, `threads`, `residency`: each replica's engine (paths must exist on
      every node: a shared filesystem or the same image).
    - `voices`: the voice library folder (shared between replicas for uploads to be seen by
      all), `voice_cache` loaded voices per replica, `max_input_chars` per request.
    - Autoscaling: between `min_replicas` and `max_replicas`, aiming at
      `target_ongoing_requests` per replica; a replica takes `max_ongoing_requests` at once
      (more wait in Ray's queue, up to `max_queued_requests`, then 503).
    - `num_cpus`/`num_gpus`: what a replica reserves on its node.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from ray import serve
    from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

    if not 1 <= min_replicas <= max_replicas:
        raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {min_replicas}, {max_replicas}")

    app = FastAPI(title="chatterbox-ort on Ray Serve")

    def error(e: OpenAIError) -> Response:
        return Response(e.body, status_code=e.status, media_type="application/json")

    @serve.deployment(
        autoscaling_config={
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        },
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
    )
    @serve.ingress(app)
    class Chatterbox:
        def __init__(self) -> None:
            self.engine = Engine(bundle, provider=provider, threads=threads, residency=residency)
            self.api = OpenAISpeech(
                self.engine, voices=voices, voice_cache=voice_cache, max_input_chars=max_input_chars
            )

        @app.post("/v1/audio/speech")
        async def speech(self, request: Request) -> Response:
            body = await request.body()
            try:
                job = self.api.prepare(body)
            except OpenAIError as e:
                return error(e)
            stream = self.api.run(job)
            if job.streaming:

                async def chunks():
                    try:
                        async for piece in iterate_in_threadpool(stream):
                            yield piece
                    finally:
                        # A client that went away closes the generator: cancel the synthesis.
                        stream.close()

                return StreamingResponse(chunks(), media_type=job.content_type)
            try:
                data = await run_in_threadpool(b"".join, stream)
            except OpenAIError as e:
                return error(e)
            finally:
                stream.close()
            return Response(data, media_type=job.content_type)

        @app.get("/v1/audio/voices")
        def list_voices(self) -> Response:
            try:
                return JSONResponse({"object": "list", "data": self.api.voices()})
            except OpenAIError as e:
                return error(e)

        @app.post("/v1/audio/voices")
        async def upload_voice(self, request: Request, name: str, overwrite: bool = False) -> Response:
            wav = await request.body()
            try:
                info = await run_in_threadpool(self.api.add_voice, name, wav, overwrite)
            except OpenAIError as e:
                return error(e)
            return JSONResponse(info, status_code=201)

        @app.delete("/v1/audio/voices/{name}")
        def delete_voice(self, name: str) -> Response:
            try:
                self.api.remove_voice(name)
            except OpenAIError as e:
                return error(e)
            return JSONResponse({"id": name, "object": "voice", "deleted": True})

        @app.get("/v1/models")
        def models(self) -> Response:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "chatterbox-ort"}
                for m in self.api.models()
            ]
            return JSONResponse({"object": "list", "data": data})

        @app.get("/health")
        def health(self) -> Response:
            return JSONResponse({"status": "ok", "model": self.api.models()[0]})

    return Chatterbox.bind()
