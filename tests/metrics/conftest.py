"""Metrics tests: the app with METRICS_ENABLED, plus the settings of a test's ``@pytest.mark.settings(...)``."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "settings(**overrides): app settings for this test, applied before the app is built"
    )


@pytest.fixture
def app_config(app_config, request):
    app_config = {**app_config, "METRICS_ENABLED": True}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        app_config.update(marker.kwargs)
    return app_config
