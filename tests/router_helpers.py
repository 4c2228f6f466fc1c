"""Building router configs and reading runs back, for the router's test suites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.config import PanelConfig


def mock_endpoint(endpoint_id: str, model: str | None = None, **mock: Any) -> dict[str, Any]:
    return {"id": endpoint_id, "provider": "mock", "model": model or f"mock-{endpoint_id}", "mock": mock}


def panel_config(tmp_path: Path, endpoints: list[dict[str, Any]], **settings: Any) -> PanelConfig:
    """A config whose run store lives in the test's tmp dir."""
    data: dict[str, Any] = {"endpoints": endpoints, "default_mode": "panel", **settings}
    data.setdefault("server", {})["run_store"] = str(tmp_path / "runs.sqlite3")
    return PanelConfig.model_validate(data)


def demo_endpoints(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Three mocks with different voices, like configs/demo.yaml but instant."""
    endpoints = [
        mock_endpoint("fast", "mock-concise", seed=1),
        mock_endpoint("careful", "mock-cautious", seed=2),
        mock_endpoint("structured", "mock-structured", seed=3),
    ]
    for endpoint in endpoints:
        endpoint["mock"].update(overrides.get(endpoint["id"], {}))
    return endpoints
