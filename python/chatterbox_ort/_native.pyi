"""Types of the native module (``chatterbox_ort._native``); import from ``chatterbox_ort``."""

from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Type, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]
_Samples = npt.NDArray[np.float32]

__version__: str
ERROR_KINDS: Dict[str, int]
"""Every error kind name and its code (``{"invalid_argument": 1, ...}``)."""

class Voice:
    """A voice: the conditioning computed from a reference clip. Immutable."""

    @staticmethod
    def load(path: _Path) -> "Voice":
        """Reads a voice file written by :meth:`save` (or ``chatterbox-ort voice``)."""
    def save(self, path: _Path) -> None:
        """Writes the voice (safetensors; a regular file is replaced atomically)."""
    @property
    def prompt_tokens(self) -> int:
        """Speech tokens of the voice's S3Gen prompt (40 ms each)."""
    def __eq__(self, other: object) -> bool: ...

class Stream(Iterator[_Samples]):
    """The pieces of a streaming synthesis (float32 arrays), in order; joined they are the
    whole audio. Closing it (or dropping it) cancels the synthesis."""

    def __iter__(self) -> "Stream": ...
    def __next__(self) -> _Samples: ...
    def close(self) -> None:
        """Stops the synthesis if it still runs and waits for its thread. Idempotent."""
    def __enter__(self) -> "Stream": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Engine:
    """A loaded model bundle. Thread-safe; the GIL is released while the models run."""

    def __init__(
        self,
        bundle: _Path,
        *,
        provider: str = "cpu",
        threads: Optional[int] = None,
        residency: Optional[str] = None,
        onnxruntime_library: Optional[_Path] = None,
    ) -> None:
        """Loads the bundle in folder ``bundle``.

        ``provider``: "cpu", "cuda[:N]" or "auto[:N]". ``threads``: ONNX Runtime intra-op
        threads per session (None: ONNX Runtime's default). ``residency``: a preset of the
        CLI's ``--residency`` ("resident", "swap", "cpu", "idle=SECS", "budget=SIZE", ...;
        None: everything resident). ``onnxruntime_library``: the ONNX Runtime library to
        load (None: ``ORT_DYLIB_PATH``, else the ``onnxruntime`` package's)."""
    @property
    def sample_rate(self) -> int: ...
    @property
    def family(self) -> str:
        """"original", "turbo" or "multilingual"."""
    @property
    def languages(self) -> List[str]:
        """Language ids of a multilingual bundle (empty for the others)."""
    @property
    def bundle(self) -> Path:
        """The bundle folder."""
    @property
    def provider(self) -> str: ...
    @property
    def default_voice(self) -> Voice: ...
    @property
    def defaults(self) -> Dict[str, Any]:
        """The values of the synthesis keywords when not given (the bundle's defaults)."""
    def voice_from_wav(self, path: _Path) -> Voice: ...
    def voice_from_samples(self, samples: npt.ArrayLike, sample_rate: int) -> Voice:
        """A voice from mono samples (1-D, converted to float32) at ``sample_rate`` Hz."""
    def synthesize(
        self,
        text: str,
        voice: Optional[Voice] = None,
        *,
        seed: int = 0,
        exaggeration: Optional[float] = None,
        cfg_weight: Optional[float] = None,
        temperature: Optional[float] = None,
        min_p: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        repetition_penalty: Optional[float] = None,
        max_new_tokens: Optional[int] = None,
        min_new_tokens: Optional[int] = None,
        flow_steps: Optional[int] = None,
        watermark: bool = True,
        language: Optional[str] = None,
    ) -> _Samples:
        """Mono float32 samples in [-1, 1] at ``sample_rate``. ``None`` keywords take the
        bundle's defaults (:attr:`defaults`); ``language`` is required by multilingual
        bundles and refused by the others."""
    def stream(
        self,
        text: str,
        voice: Optional[Voice] = None,
        *,
        first_chunk_tokens: Optional[int] = None,
        chunk_tokens: Optional[int] = None,
        overlap: bool = False,
        seed: int = 0,
        exaggeration: Optional[float] = None,
        cfg_weight: Optional[float] = None,
        temperature: Optional[float] = None,
        min_p: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        repetition_penalty: Optional[float] = None,
        max_new_tokens: Optional[int] = None,
        min_new_tokens: Optional[int] = None,
        flow_steps: Optional[int] = None,
        watermark: bool = True,
        language: Optional[str] = None,
    ) -> Stream:
        """Token-level streaming: S3Gen runs after ``first_chunk_tokens`` (default 20)
        speech tokens, then every ``chunk_tokens`` (default 40); ``overlap`` decodes the
        next tokens meanwhile. Argument errors raise here, synthesis errors from
        ``next()``."""
    def set_residency(self, residency: str) -> None:
        """Changes the residency policy (a ``--residency`` preset)."""
    def release_idle(self) -> None:
        """Destroys now the sessions the policy does not keep resident and no synthesis
        uses."""
    def stats(self) -> Dict[str, Any]:
        """Residency accounting: ``provider``, ``residency``, ``components`` (per component:
        ``name``, ``policy``, ``loaded``, ``sessions_created``, ...), ``stages``,
        ``rss_bytes``, ..."""

def runtime_info() -> Optional[Dict[str, Any]]:
    """The loaded ONNX Runtime (``library_path``, ``source``, ``version``); None before the
    first engine."""

def available_providers() -> List[str]:
    """Execution providers of the loaded ONNX Runtime (empty before the first engine)."""

class SpeechJob:
    """A checked OpenAI speech request (from ``OpenAISpeech.prepare``)."""

    @property
    def content_type(self) -> str: ...
    @property
    def streaming(self) -> bool: ...
    @property
    def voice(self) -> str: ...

class SpeechBytes(Iterator[bytes]):
    """The response body of a speech request, piece by piece; closing it cancels the
    synthesis. A failure raises ``OpenAIError``."""

    def __iter__(self) -> SpeechBytes: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> SpeechBytes: ...
    def __exit__(self, *exc: object) -> bool: ...

class OpenAISpeech:
    """The OpenAI speech API of ``chatterbox-ort serve`` over an engine, without HTTP: the
    same request checks, errors (``OpenAIError``), voice library and encoders."""

    def __init__(
        self,
        engine: Engine,
        *,
        voices: Optional[_Path] = None,
        voice_cache: int = 16,
        max_input_chars: int = 4096,
    ) -> None: ...
    def prepare(self, body: bytes) -> SpeechJob: ...
    def run(self, job: SpeechJob) -> SpeechBytes: ...
    def voices(self) -> List[Dict[str, str]]: ...
    def add_voice(self, name: str, wav: bytes, overwrite: bool = False) -> Dict[str, str]: ...
    def remove_voice(self, name: str) -> None: ...
    def models(self) -> List[str]: ...
