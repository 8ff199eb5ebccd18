"""Every error class of ours derives from `SlsgError`, so the one handler in each CLI reports it as a message
(what is wrong, what to do) instead of a traceback; a new error class without the base fails here."""

from __future__ import annotations

import importlib
import inspect

from typer.testing import CliRunner

from edge_runtime.errors import SlsgError
from slsg.cli import app
from slsg.tests.test_import_layers import ROOT, is_test_module, our_modules


def _error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in our_modules(ROOT):
        if is_test_module(name) or name.startswith("benchmarks"):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency (tensorrt, cuda, openvino) is absent here
            continue
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name:
                found[f"{name}.{cls_name}"] = cls
    return found


def test_every_error_class_of_ours_derives_from_the_one_base():
    classes = _error_classes()
    assert len(classes) >= 20  # the walk really imported the packages
    missing = sorted(name for name, cls in classes.items() if not issubclass(cls, SlsgError))
    assert not missing, f"error classes without SlsgError as a base: {missing}"


def test_an_error_no_command_catches_is_a_message_and_exit_2(tmp_path):
    """A RUN folder that is not one raises CheckpointError (a RuntimeError) deep inside `predict`."""
    (tmp_path / "RUN").mkdir()
    (tmp_path / "img.png").write_bytes(b"")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "RUN"), str(tmp_path / "img.png"), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "not a RUN folder" in result.output and "Traceback" not in result.output
