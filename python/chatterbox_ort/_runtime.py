"""Which ONNX Runtime library an engine loads.

The engine loads ONNX Runtime at run time. In order: the ``onnxruntime_library`` argument
of :class:`chatterbox_ort.Engine`; ``ORT_DYLIB_PATH``; the library inside the installed
``onnxruntime`` Python package (a dependency of this one; ``onnxruntime-gpu`` installs
into the same folder); then the engine's own search (beside the executable, the copy
provisioned when the package was built).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import List, Optional

_LIBRARY = re.compile(r"^(lib)?onnxruntime(\.so(\.[0-9.]+)?|(\.[0-9.]+)?\.dylib|\.dll)$")


def _version_key(path: Path) -> List[int]:
    return [int(part) for part in re.findall(r"[0-9]+", path.name)]


def package_library() -> Optional[str]:
    """The ONNX Runtime library of the installed ``onnxruntime`` package, or None.

    The package is located without being imported.
    """
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    found: List[Path] = []
    for folder in spec.submodule_search_locations:
        capi = Path(folder) / "capi"
        if capi.is_dir():
            found.extend(p for p in capi.iterdir() if _LIBRARY.match(p.name) and p.is_file())
    if not found:
        return None
    return str(max(found, key=_version_key))


def default_library() -> Optional[str]:
    """The library an engine loads when none is given: None when ``ORT_DYLIB_PATH`` is
    set (the engine reads it) or no ``onnxruntime`` package is installed (the engine
    searches on its own), else the package's library."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return None
    return package_library()
