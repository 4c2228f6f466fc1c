"""Config loading: fusionkit 0.1 keys, ${VAR} expansion, and errors that name file, key path and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fusionkit_cli.config_loader import ConfigError, load_config
from fusionkit_cli.main import cli
from tests.up_helpers import run_fusionkit

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
        (
            "endpoints:\n  - {id: a, provider: mock, model: m}\nserver: {api_key_env: sk-live-123}\n",
            "server.api_key_env: found 'sk-live-123'; must be the NAME of an environment variable",
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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://fk:s3cret@db:port/fk",
        "postgresql://fk@db:port/fk?password=s3cret",
        "postgres://fk@db:x/fk?sslmode=require&PASSWORD=s3cret",
    ],
)
def test_a_bad_run_store_url_is_refused_without_its_password(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"endpoints:\n  - {{id: a, provider: mock, model: m}}\nserver: {{run_store: '{url}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "server.run_store: found 'postgres" in message and "a valid postgresql:// URL" in message
    assert "s3cret" not in message


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


LONG_ID = "m" * 252


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            f"{{id: {LONG_ID}, provider: mock, model: m}}",
            (
                "endpoints[0].id: found 'mmmmmmmmmm",  # cut short, not 252 characters
                "m…; allowed: 1 to 64 characters, each a letter, digit, '.', '_' or '-' (found 252 characters)",
            ),
        ),
        ("{id: 'a/b', provider: mock, model: m}", ("endpoints[0].id: found 'a/b'; allowed: 1 to 64 characters",)),
        (
            "{id: a, provider: openai-compatible, model: m, base_url: notaurl}",
            ("endpoints[0].base_url: found 'notaurl'; allowed: an http:// or https:// URL with a host",),
        ),
        ("{id: a, provider: openai, model: m, base_url: 'ftp://host/v1'}", ("endpoints[0].base_url: found 'ftp://",)),
        ("{id: a, provider: openai, model: m, base_url: 'http:///v1'}", ("endpoints[0].base_url: found 'http:///v1'",)),
        (
            "{id: a, provider: openai, model: m, base_url: 'http://h:99999'}",
            ("endpoints[0].base_url: found 'http://h",),
        ),
    ],
    ids=["252-character-id", "slash-in-id", "not-a-url", "ftp", "no-host", "bad-port"],
)
def test_validate_refuses_what_up_could_not_run(tmp_path: Path, endpoint: str, expected: tuple[str, ...]) -> None:
    path = write(tmp_path, f"endpoints:\n  - {endpoint}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: ")
    for part in expected:
        assert part in result.output
    assert "Traceback" not in result.output and LONG_ID not in result.output


def test_an_over_long_id_stops_up_and_serve_endpoint_with_exit_2_not_a_raw_oserror(tmp_path: Path) -> None:
    path = write(tmp_path, f"endpoints:\n  - {{id: {LONG_ID}, provider: mock, model: m}}\n")
    started = run_fusionkit(tmp_path, "up", str(path), "--no-color")
    assert started.returncode == 2, started.stdout + started.stderr
    assert f"error: {path}: endpoints[0].id: found 'mmm" in started.stderr and "1 to 64 characters" in started.stderr
    assert "Traceback" not in started.stdout + started.stderr and not (tmp_path / ".fusionkit").exists()
    bridge = run_fusionkit(tmp_path, "serve-endpoint", "--id", "a" * 65, "--provider", "mock", "--model", "m")
    assert bridge.returncode == 2 and "error: --id: allowed: 1 to 64 characters" in bridge.stderr


def test_ids_up_to_64_characters_and_http_urls_are_valid(tmp_path: Path) -> None:
    text = (
        f"endpoints:\n  - {{id: '{'a' * 64}', provider: mock, model: m}}\n"
        "  - {id: A.b_c-9, provider: openai-compatible, model: m, base_url: 'https://[::1]:8443/v1'}\n"
        "  - {id: local, provider: openai-compatible, model: m, base_url: 'http://localhost:8000/v1'}\n"
    )
    config = load_config(write(tmp_path, text))
    assert [e.id for e in config.endpoints] == ["a" * 64, "A.b_c-9", "local"]


def test_validate_warns_about_keys_the_environment_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FK_UNSET_KEY", raising=False)
    monkeypatch.setenv("FK_EMPTY_KEY", " ")
    monkeypatch.setenv("FK_SET_KEY", "sk-set-123")
    path = write(
        tmp_path,
        "endpoints:\n"
        "  - {id: gpt, provider: openai, model: m}\n"
        "  - {id: claude, provider: anthropic, model: m, api_key_env: FK_UNSET_KEY}\n"
        "  - {id: gemini, provider: google, model: m, api_key_env: FK_EMPTY_KEY}\n"
        "  - {id: ok, provider: openai, model: m, api_key_env: FK_SET_KEY}\n"
        "  - {id: local, provider: openai-compatible, model: m, base_url: 'http://127.0.0.1:9/v1'}\n"
        "  - {id: vllm, provider: openai-compatible, model: m, base_url: 'http://127.0.0.1:9/v1',"
        " api_key_env: FK_UNSET_KEY}\n"
        "  - {id: fake, provider: mock, model: m}\n"
        "server: {api_key_env: FK_UNSET_KEY}\n",
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0 and f"{path}: valid" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {path}: server.api_key_env: environment variable FK_UNSET_KEY is not set (or is empty); "
        "`fusionkit serve` and `fusionkit up` refuse to start without it",
        f"warning: {path}: endpoints[0].api_key_env: endpoint 'gpt' (openai) names no key variable; allowed: the NAME "
        "of the variable that holds its API key; `fusionkit up` refuses to start it (unless --allow-missing-keys)",
        f"warning: {path}: endpoints[1].api_key_env: endpoint 'claude' (anthropic) reads its key from FK_UNSET_KEY, "
        "which is not set (or is empty); `fusionkit up` refuses to start it (unless --allow-missing-keys)",
        f"warning: {path}: endpoints[2].api_key_env: endpoint 'gemini' (google) reads its key from FK_EMPTY_KEY, "
        "which is not set (or is empty); `fusionkit up` refuses to start it (unless --allow-missing-keys)",
        f"warning: {path}: endpoints[5].api_key_env: endpoint 'vllm' (openai-compatible) reads its key from "
        "FK_UNSET_KEY, which is not set (or is empty); `fusionkit up` refuses to start it "
        "(unless --allow-missing-keys)",
    ]
    assert "sk-set-123" not in result.output
