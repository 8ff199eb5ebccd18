"""The optional packages: imported where a feature first needs them, with one error that says how to install them."""

from __future__ import annotations

import sys

import pytest

from edge_runtime.errors import SlsgError
from edge_runtime.optional import MissingDependency, available, lazy, require


def test_a_missing_package_names_the_feature_and_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency) as err:
        require("paho.mqtt.client", "mqtt", "MQTT")
    assert "MQTT needs the paho package" in str(err.value) and "pip install 'slsg[mqtt]'" in str(err.value)
    assert isinstance(err.value, SlsgError) and isinstance(err.value, ImportError)
    assert not available("paho.mqtt.client")


def test_a_lazy_module_imports_on_first_use_and_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    colorsys = lazy("colorsys", "none", "a colour conversion")
    assert "colorsys" not in sys.modules
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_a_lazy_module_that_is_missing_fails_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "no_such_package_here", None)
    module = lazy("no_such_package_here", "extra", "A feature")
    with pytest.raises(MissingDependency, match=r"A feature needs the no_such_package_here package"):
        getattr(module, "anything")  # noqa: B009 — the attribute access is what imports
