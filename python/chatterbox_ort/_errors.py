"""The exceptions of chatterbox_ort: one class per kind of the engine's errors.

Every exception the engine raises is a :class:`ChatterboxError` carrying ``kind`` (the
snake_case name of the engine's ``ErrorKind``, e.g. ``"invalid_argument"``) and ``code``
(its number, the C API's status). The subclasses also derive from the builtin exception a
Python caller would expect: bad arguments, text and audio are ``ValueError``, file errors
``OSError``, ONNX Runtime failures ``RuntimeError``.
"""

from __future__ import annotations

import os
from typing import Optional, Union

__all__ = [
    "ChatterboxError",
    "InvalidArgumentError",
    "InvalidTextError",
    "InvalidAudioError",
    "IoError",
    "BundleError",
    "ModelMismatchError",
    "OnnxRuntimeError",
    "ProviderUnavailableError",
    "BudgetError",
    "CancelledError",
    "InternalError",
    "OpenAIError",
]


class ChatterboxError(Exception):
    """Base class of the engine's errors.

    Attributes: ``kind`` (snake_case kind name), ``code`` (its number, 1..11), ``message``
    (the engine's message, naming the parameter, file or tensor), ``parameter`` (the bad
    keyword of an ``invalid_argument`` error, else None), ``filename`` (the file of an
    ``io`` or ``bundle`` error, else None).
    """

    kind: str = "internal"
    code: int = 11

    def __init__(
        self,
        message: str,
        *,
        parameter: Optional[str] = None,
        filename: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.filename = filename

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ChatterboxError, ValueError):
    """A keyword or option is out of range or malformed (``parameter`` names it)."""

    kind = "invalid_argument"
    code = 1


class InvalidTextError(ChatterboxError, ValueError):
    """The text is empty, too long, or has a chunk too long for T3."""

    kind = "invalid_text"
    code = 2


class InvalidAudioError(ChatterboxError, ValueError):
    """Reference audio is unreadable, corrupt, too short or too long, or not finite."""

    kind = "invalid_audio"
    code = 3


class IoError(ChatterboxError, OSError):
    """A file could not be read or written (``errno`` and ``filename`` are set)."""

    kind = "io"
    code = 4

    def __init__(
        self,
        message: str,
        *,
        parameter: Optional[str] = None,
        filename: Optional[str] = None,
        errno: Optional[int] = None,
    ) -> None:
        super().__init__(message, parameter=parameter, filename=filename)
        self.errno = errno
        self.strerror = message


class BundleError(ChatterboxError):
    """The bundle (or a voice file) is missing, malformed or fails its checksums."""

    kind = "bundle"
    code = 5


class ModelMismatchError(ChatterboxError):
    """A graph does not match the bundle's manifest."""

    kind = "model_mismatch"
    code = 6


class OnnxRuntimeError(ChatterboxError, RuntimeError):
    """ONNX Runtime could not be loaded or failed."""

    kind = "runtime"
    code = 7


class ProviderUnavailableError(ChatterboxError):
    """The execution provider asked for (CUDA) is not available."""

    kind = "provider_unavailable"
    code = 8


class BudgetError(ChatterboxError):
    """The residency memory budget cannot be met."""

    kind = "budget"
    code = 9


class CancelledError(ChatterboxError):
    """The synthesis was cancelled."""

    kind = "cancelled"
    code = 10


class InternalError(ChatterboxError):
    """A bug in the engine."""

    kind = "internal"
    code = 11


_BY_KIND = {
    cls.kind: cls
    for cls in (
        InvalidArgumentError,
        InvalidTextError,
        InvalidAudioError,
        IoError,
        BundleError,
        ModelMismatchError,
        OnnxRuntimeError,
        ProviderUnavailableError,
        BudgetError,
        CancelledError,
        InternalError,
    )
}


def _from_native(
    kind: str,
    code: int,
    message: str,
    parameter: Optional[str],
    errno: Optional[int],
    path: Optional[Union[str, "os.PathLike[str]"]],
) -> ChatterboxError:
    """The exception for an engine error (called by the native module)."""
    filename = None if path is None else os.fspath(path)
    cls = _BY_KIND.get(kind)
    if cls is None:  # a kind newer than this file: keep its name and code
        exc = ChatterboxError(message, parameter=parameter, filename=filename)
        exc.kind, exc.code = kind, code
        return exc
    if cls is IoError:
        return IoError(message, parameter=parameter, filename=filename, errno=errno)
    return cls(message, parameter=parameter, filename=filename)


class OpenAIError(Exception):
    """A request of the OpenAI speech API (``OpenAISpeech``) failed: what an HTTP server
    answers. Attributes: ``status`` (the HTTP status), ``body`` (the JSON error body,
    ``{"error": {"message", "type", "param", "code"}}``), ``message``, ``type``, ``param``,
    ``code``."""

    def __init__(self, status: int, body: str, message: str, type: str,
                 param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.body, self.message = status, body, message
        self.type, self.param, self.code = type, param, code

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


def _openai_error(status: int, body: str, message: str, type: str,
                  param: Optional[str], code: Optional[str]) -> OpenAIError:
    """The exception for an OpenAI API error (called by the native module)."""
    return OpenAIError(status, body, message, type, param, code)
