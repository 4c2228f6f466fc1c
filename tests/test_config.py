"""Config loading: fusionkit 0.1 keys, ${VAR} expansion, and errors that name file, key path and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fusionkit_cli.config_loader import ConfigError, load_config
from fusionkit_cli.main import cli

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "panel.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads_with_defaults() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert config.panel_members == ["fast", "careful", "structured"]
    assert (config.judge, config.synthesizer, config.default_mode) == ("careful", "careful", "panel")
    assert config.sample_count == 4 and config.self_temperatures == [0.2, 0.4, 0.6, 0.8]
    assert config.server.run_store == ".fusionkit/runs.sqlite3"


def test_role_defaults_follow_the_spec(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "endpoints:\n  - {id: a, provider: mock, model: m}\n"
            "  - {id: b, provider: mock, model: n}\njudge_model: b\n",
        )
    )
    assert (config.default_endpoint, config.judge, config.synthesizer) == ("a", "b", "b")


def test_env_expansion_with_defaults_and_types(tmp_path: Path) -> None:
    text = (
        "endpoints:\n  - id: a\n    provider: openai-compatible\n    model: ${MODEL}\n"
        "    base_url: ${URL:-http://127.0.0.1:9/v1}\n    port: ${PORT:-9100}\n"
    )
    config = load_config(write(tmp_path, text), environ={"MODEL": "qwen"})
    endpoint = config.endpoints[0]
    assert (endpoint.model, endpoint.base_url, endpoint.port) == ("qwen", "http://127.0.0.1:9/v1", 9100)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert "endpoints[0].model: environment variable MODEL is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "endpoints:\n  - {id: a, provider: opneai, model: m}\n",
            "endpoints[0].provider: found 'opneai'; allowed: 'openai', 'anthropic', 'google', "
            "'openai-compatible' or 'mock'",
        ),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m, colour: red}\n",
            "endpoints[0].colour: unknown key; allowed keys here: id, provider, model",
        ),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m}\n  - {id: a, provider: mock, model: n}\n",
            "endpoints[1].id: found 'a'; allowed: a unique id",
        ),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m, port: 9000}\n"
            "  - {id: b, provider: mock, model: n, port: 9000}\n",
            "endpoints[1].port: found 9000",
        ),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m}\njudge_model: ghost\n",
            "judge_model: found 'ghost'; allowed: one of the endpoint ids: a",
        ),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m}\npanel_models: [a, nope]\n",
            "panel_models[1]: found 'nope'",
        ),
        ("endpoints:\n  - {id: a, provider: openai-compatible, model: m}\n", "needs 'base_url'"),
        (
            "endpoints:\n  - {id: a, provider: mock, model: m, api_key_env: sk-live-123}\n",
            "endpoints[0].api_key_env: found 'sk-live-123'; must be the NAME of an environment variable",
        ),
        ("endpoints: []\n", "endpoints: found []"),
        ("- just a list\n", "the top level must be a mapping"),
        ("endpoints: [\n", "not valid YAML"),
        ("endpoints:\n  - {id: a, provider: mock, model: m}\nbudget: {max_cost: -1}\n", "budget.max_cost: found -1"),
    ],
)
def test_errors_name_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message


def test_validate_prints_a_summary_or_exits_2(tmp_path: Path) -> None:
    ok = CliRunner().invoke(cli, ["validate", str(ROOT / "configs" / "demo.yaml")])
    assert ok.exit_code == 0
    for expected in ("valid", "fast", "mock/mock-concise", "judge:         careful", "default mode:  panel"):
        assert expected in ok.output
    missing = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "file not found" in missing.output
    bad = CliRunner().invoke(
        cli, ["validate", str(write(tmp_path, "endpoints:\n  - {id: a, provider: x, model: m}\n"))]
    )
    assert bad.exit_code == 2 and "endpoints[0].provider" in bad.output and "Traceback" not in bad.output
