"""Chatterbox text-to-speech on ONNX Runtime.

>>> import chatterbox_ort as cbx
>>> engine = cbx.Engine("onnx/tiny")
>>> audio = engine.synthesize("Hello.", seed=7)   # float32, mono, engine.sample_rate Hz
>>> for piece in engine.stream("Spoken while it is computed."):
...     play(piece)

See the README's "Python package" section.
"""

from ._errors import (
    BudgetError,
    BundleError,
    CancelledError,
    ChatterboxError,
    InternalError,
    InvalidArgumentError,
    InvalidAudioError,
    InvalidTextError,
    IoError,
    OpenAIError,
    ModelMismatchError,
    OnnxRuntimeError,
    ProviderUnavailableError,
)
from ._native import (
    ERROR_KINDS,
    Engine,
    OpenAISpeech,
    SpeechBytes,
    SpeechJob,
    Stream,
    Voice,
    __version__,
    available_providers,
    runtime_info,
)

__all__ = [
    "Engine",
    "Voice",
    "Stream",
    "OpenAISpeech",
    "SpeechJob",
    "SpeechBytes",
    "OpenAIError",
    "runtime_info",
    "available_providers",
    "ERROR_KINDS",
    "__version__",
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
]
