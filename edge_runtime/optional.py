"""Optional packages, imported when a feature first uses them.

The runtime installs with numpy, OpenCV and ONNX Runtime alone; TensorRT, OpenVINO, onnx, MQTT, Modbus, OPC UA and
Aravis come with extras. A module that needs one names it at its top with `lazy`, so every module of ours can be
imported anywhere (imports stay at the top of files) and the package is loaded only when the feature that needs it
runs. Without it the user gets one `MissingDependency` that names the feature and the `pip install` that adds it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edge_runtime.errors import SlsgError


class MissingDependency(SlsgError, ImportError):
    """A feature needs a package that is not installed; the message says which and how to install it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module`, imported now; without it, a `MissingDependency` naming `feature` and the extra `slsg[extra]`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(f"{feature} needs the {module.split('.')[0]} package ({err}): "
                                f"pip install 'slsg[{extra}]'") from None


def available(module: str) -> bool:
    """Whether `module` imports here (a broken install counts as absent)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError):
        return False
    return True


class _Lazy(ModuleType):
    """A stand-in for a module that imports it on first attribute access."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        super().__init__(module)
        self._spec = (module, extra, feature)
        self._module: ModuleType | None = None

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if self._module is None:
            self._module = require(*self._spec)
        return getattr(self._module, name)


def lazy(module: str, extra: str, feature: str) -> ModuleType:
    """A module object for `module` that imports it only when first used (see `require` for the error)."""
    return _Lazy(module, extra, feature)


#: The optional packages several modules use, one stand-in each (`from edge_runtime.optional import onnx`).
onnx = lazy("onnx", "onnx", "Reading or editing an ONNX graph (head refits, OpenVINO's INT8 weights)")
openvino = lazy("openvino", "openvino", "The OpenVINO backend")
