"""What the OpenVINO backend promises beyond the shared contract: the precision asked for is the one it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends.base import BackendError
from edge_runtime.backends.openvino_backend import openvino_available
from edge_runtime.tests.conftest import SIZE

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed here "
                                "(pip install 'slsg[openvino]')")


def _backend(path: Path, **kwargs):
    from edge_runtime.backends.openvino_backend import OpenVinoBackend

    return OpenVinoBackend(path, **{"threads": 1, **kwargs})


def test_f32_is_asked_for_explicitly_and_compiled_so(bundle_dir: Path) -> None:
    """OpenVINO's CPU default is bf16 where the CPU has it: an FP32 backend that left the hint unset would run
    an ungated bf16 model."""
    be = _backend(bundle_dir / "model.onnx", precision="f32")
    assert str(be.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    assert be.precision == "f32" and be.model == "fp32" and be.threads == 1


def test_bf16_on_a_cpu_without_it_is_refused_not_run_as_f32(bundle_dir: Path) -> None:
    from edge_runtime.backends.openvino_backend import cpu_has_bf16

    if cpu_has_bf16():
        be = _backend(bundle_dir / "model.onnx", precision="bf16", model="bf16")
        assert be.precision == "bf16"
        return
    with pytest.raises(BackendError, match="no bf16"):
        _backend(bundle_dir / "model.onnx", precision="bf16", model="bf16")


def test_unknown_precision_or_hint_is_refused(bundle_dir: Path) -> None:
    with pytest.raises(BackendError, match="precision"):
        _backend(bundle_dir / "model.onnx", precision="fp8")
    with pytest.raises(BackendError, match="hint"):
        _backend(bundle_dir / "model.onnx", hint="FAST")


def test_engine_only_call_reruns_the_last_input(bundle_dir: Path) -> None:
    be = _backend(bundle_dir / "model.onnx")
    be.run(np.full((1, SIZE, SIZE, 3), 51, np.uint8))
    assert be.infer_only() > 0


#: Two backends released first-in-first-out, then a signal with a Python handler. OpenVINO's own stack swap
#: leaves a freed alternate signal stack registered; a handler on it is a SIGSEGV (exit -11) instead of a stop.
RELEASE_THEN_SIGNAL = """
import gc, os, signal, sys
from edge_runtime.backends.openvino_backend import OpenVinoBackend
first = OpenVinoBackend(sys.argv[1], threads=1)
second = OpenVinoBackend(sys.argv[1], threads=1)
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
"""


def test_released_backends_leave_a_signal_handler_runnable(bundle_dir: Path) -> None:
    """A line PC probes backends, drops them, then stops on SIGTERM: the handler must run, not crash."""
    import subprocess
    import sys

    faulthandler = ["-X", "faulthandler"]  # as pytest has it: an alternate stack is registered to start with
    for flags in ([], faulthandler):
        done = subprocess.run([sys.executable, *flags, "-c", RELEASE_THEN_SIGNAL, str(bundle_dir / "model.onnx")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "handled", (flags, done.returncode, done.stderr)


def test_compiling_keeps_the_threads_signal_stack(bundle_dir: Path) -> None:
    from edge_runtime.backends.signal_stack import current_signal_stack

    before = current_signal_stack()
    backend = _backend(bundle_dir / "model.onnx")
    assert current_signal_stack() == before
    del backend
    assert current_signal_stack() == before
