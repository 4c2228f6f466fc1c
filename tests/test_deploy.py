"""`fusionkit deploy compose|k8s CONFIG`: the files it writes are valid (the compose file against the Compose
Specification's schema, the manifests against Kubernetes 1.30's, both offline) and say what the config says:
one bridge per endpoint, the router pointed at each bridge's service, every key from the Secret (or a Compose
variable), never a value; the repo's deploy/ is what configs/demo.yaml generates; the Dockerfile builds the
one image every role runs. Images cannot be pulled here: test_replicas_processes.py runs the same processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from fusionkit_cli.config_loader import load_config
from fusionkit_cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
K8S_VERSION = "1.30.0"

PANEL = """
endpoints:
  - {id: gpt, provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}
  - {id: Claude.Sonnet, provider: anthropic, model: claude-sonnet-4, api_key_env: ANTHROPIC_API_KEY}
  - {id: local, provider: mock, model: mock-1, port: 9101, mock: {seed: 3}}
judge_model: gpt
server: {api_key_env: TEAM_KEY, run_lease_s: 20}
"""
KEYS = {"gpt": "OPENAI_API_KEY", "Claude.Sonnet": "ANTHROPIC_API_KEY", "local": None}


def generate(tmp_path: Path, target: str, *flags: str, config: str = PANEL) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "panel.yaml"
    source.write_text(config)
    out = tmp_path / "deploy"
    result = CliRunner().invoke(cli, ["deploy", target, str(source), "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    return out


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return validate(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))


def validate_k8s(*paths: Path) -> subprocess.CompletedProcess[str]:
    return validate(str(BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *map(str, paths))


def manifests(out: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted((out / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def test_the_compose_file_is_valid_and_says_what_the_config_says(tmp_path: Path) -> None:
    out = generate(tmp_path, "compose", "--replicas", "3", "--image", "registry.example/fusionkit:1")
    checked = validate_compose(out / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    services = compose["services"]
    bridges = {name: s for name, s in services.items() if name.startswith("bridge-")}
    # One bridge per endpoint, each serving its endpoint with the bridge key required and only its own provider key.
    assert {s["command"][s["command"].index("--endpoint") + 1] for s in bridges.values()} == set(KEYS)
    for service in bridges.values():
        endpoint = service["command"][service["command"].index("--endpoint") + 1]
        assert "--auth-key-env" in service["command"] and service["image"] == "registry.example/fusionkit:1"
        expected = {"FUSIONKIT_BRIDGE_KEY"} | ({KEYS[endpoint]} if KEYS[endpoint] else set())
        assert set(service["environment"]) == expected
        assert all(value.startswith(f"${{{name}:?") for name, value in service["environment"].items())
    # The router: N replicas, on the shared PostgreSQL, pointed at every bridge's service, its key from the environment.
    router = services["router"]
    assert router["deploy"]["replicas"] == 3
    assert router["environment"]["FUSIONKIT_RUN_STORE"] == "postgresql://fusionkit@postgres:5432/fusionkit"
    assert router["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert router["environment"]["TEAM_KEY"].startswith("${TEAM_KEY:?")
    assert set(router["depends_on"]) == {"postgres", *bridges}
    routes = json.loads((out / "fusionkit/bridges.json").read_text())
    assert set(routes) == set(KEYS)
    for endpoint, url in routes.items():
        service = url.removeprefix("http://").split(":")[0]
        assert service in bridges and url.endswith(":8000")
        assert bridges[service]["command"][bridges[service]["command"].index("--endpoint") + 1] == endpoint
    assert "server router:8080" in (out / "nginx.conf").read_text() and services["nginx"]["ports"] == ["8080:80"]


def test_the_routers_database_settings_hold_for_a_password_with_url_characters(tmp_path: Path) -> None:
    out = generate(tmp_path, "compose")
    router = yaml.safe_load((out / "compose.yaml").read_text())["services"]["router"]["environment"]
    password = "p@ss/w:rd#?&%20"
    # What the router's environment is once Compose has inserted the variable's value, as it is.
    environment = {
        name: re.sub(r"\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}", password, value) for name, value in router.items()
    }
    params = psycopg.conninfo.conninfo_to_dict(environment["FUSIONKIT_RUN_STORE"])
    assert (params["host"], params["port"], params["dbname"], params["user"]) == (
        "postgres",
        "5432",
        "fusionkit",
        "fusionkit",
    )
    assert params.get("password", environment.get("PGPASSWORD")) == password  # libpq reads PGPASSWORD unparsed


def test_the_manifests_are_valid_and_say_what_the_config_says(tmp_path: Path) -> None:
    out = generate(tmp_path, "k8s", "--replicas", "2", "--max-replicas", "6")
    checked = validate_k8s(*sorted((out / "k8s").glob("*.yaml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    documents = manifests(out)
    deployments, services = by_kind(documents, "Deployment"), by_kind(documents, "Service")
    (secret,) = by_kind(documents, "Secret").values()
    (config_map,) = by_kind(documents, "ConfigMap").values()
    (hpa,) = by_kind(documents, "HorizontalPodAutoscaler").values()
    assert all(value == "" for value in secret["stringData"].values())  # no key is ever written into a file

    def container(deployment: dict[str, Any]) -> dict[str, Any]:
        (only,) = deployment["spec"]["template"]["spec"]["containers"]
        return dict(only)

    def env_names(deployment: dict[str, Any]) -> set[str]:
        names = set()
        for variable in container(deployment)["env"]:
            reference = variable["valueFrom"]["secretKeyRef"]  # every variable comes from the Secret
            assert (reference["name"], reference["key"]) == (secret["metadata"]["name"], variable["name"])
            assert variable["name"] in secret["stringData"]
            names.add(variable["name"])
        return names

    # A Deployment and a Service per bridge, the Service selecting the Deployment's pods.
    for name, deployment in deployments.items():
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"] == pods
        probes = container(deployment)
        assert probes["readinessProbe"]["httpGet"]["path"] == probes["livenessProbe"]["httpGet"]["path"] == "/health"
    bridges = {n: d for n, d in deployments.items() if n.startswith("bridge-")}
    served = {container(d)["args"][container(d)["args"].index("--endpoint") + 1]: d for d in bridges.values()}
    assert set(served) == set(KEYS) and len(bridges) == 3
    for endpoint, deployment in served.items():
        assert env_names(deployment) == {"FUSIONKIT_BRIDGE_KEY"} | ({KEYS[endpoint]} if KEYS[endpoint] else set())

    router = deployments["fusionkit-router"]
    assert router["spec"]["replicas"] == 2
    assert env_names(router) == {"FUSIONKIT_RUN_STORE", "TEAM_KEY", "FUSIONKIT_BRIDGE_KEY"}
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fusionkit-router"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # The router reaches each endpoint's bridge through that bridge's Service.
    routes = json.loads(config_map["data"]["bridges.json"])
    for endpoint, url in routes.items():
        service = services[url.removeprefix("http://").split(":")[0]]
        assert service["spec"]["ports"][0]["port"] == int(url.rsplit(":", 1)[1])
        assert service["metadata"]["name"] in bridges
        assert container(bridges[service["metadata"]["name"]])["args"].count(endpoint) == 1


def test_the_containers_config_is_the_panel_with_a_deployments_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = generate(tmp_path, "k8s")
    (config_map,) = by_kind(manifests(out), "ConfigMap").values()
    written = tmp_path / "in-container.yaml"
    written.write_text(config_map["data"]["panel.yaml"])
    monkeypatch.setenv("FUSIONKIT_RUN_STORE", "postgresql://fk:pw@db:5432/fk")
    inside, source = load_config(written), load_config(tmp_path / "panel.yaml")
    assert inside.endpoints == [e.model_copy(update={"port": None}) for e in source.endpoints]
    assert (inside.judge_model, inside.server.run_lease_s) == ("gpt", 20)
    assert (inside.server.host, inside.server.port, inside.server.api_key_env) == ("0.0.0.0", 8080, "TEAM_KEY")
    assert inside.server.run_store == "postgresql://fk:pw@db:5432/fk"
    monkeypatch.delenv("FUSIONKIT_RUN_STORE")  # unset: a database URL still, never a local SQLite file
    assert load_config(written).server.run_store.startswith("postgresql://fusionkit@postgres")


def test_the_validators_catch_a_broken_file(tmp_path: Path) -> None:
    out = generate(tmp_path, "k8s")
    broken = tmp_path / "broken.yaml"
    router = (out / "k8s/router.yaml").read_text()
    broken.write_text(router.replace("replicas: 2", "replicas: two"))
    assert validate_k8s(broken).returncode != 0
    compose = generate(tmp_path / "c", "compose") / "compose.yaml"
    bad = tmp_path / "compose.yaml"
    bad.write_text(compose.read_text().replace("    restart: unless-stopped", "    restarts: unless-stopped", 1))
    assert validate_compose(bad).returncode != 0


def test_generating_again_removes_the_manifests_of_endpoints_that_are_gone(tmp_path: Path) -> None:
    out = generate(tmp_path, "k8s")
    assert (out / "k8s/bridge-local.yaml").exists()
    mine = out / "k8s/mine.yaml"
    mine.write_text("# not generated\n")
    generate(
        tmp_path,
        "k8s",
        config=PANEL.replace("  - {id: local, provider: mock, model: mock-1, port: 9101, mock: {seed: 3}}\n", ""),
    )
    assert not (out / "k8s/bridge-local.yaml").exists() and mine.exists()


def test_generating_again_keeps_a_filled_in_secret_and_adds_only_the_keys_it_lacks(tmp_path: Path) -> None:
    out = generate(tmp_path, "k8s")
    secret_file = out / "k8s/secret.yaml"
    (secret,) = yaml.safe_load_all(secret_file.read_text())
    filled = {name: f"value of {name}" for name in secret["stringData"]}
    secret_file.write_text(yaml.safe_dump({**secret, "stringData": filled}))
    unchanged = secret_file.read_text()

    again = CliRunner().invoke(cli, ["deploy", "k8s", str(tmp_path / "panel.yaml"), "--out", str(out)])
    assert again.exit_code == 0 and "it has every key" in again.output, again.output
    assert secret_file.read_text() == unchanged  # the same config: the file is not even rewritten

    # A config change that needs one more key: the values are kept, the new key is added empty.
    grown = PANEL.replace(
        "judge_model: gpt", "  - {id: g, provider: google, model: gemini, api_key_env: GEMINI_KEY}\njudge_model: gpt"
    )
    generate(tmp_path, "k8s", config=grown)
    (kept,) = yaml.safe_load_all(secret_file.read_text())
    assert kept["stringData"] == {**filled, "GEMINI_KEY": ""}
    assert validate_k8s(*sorted((out / "k8s").glob("*.yaml"))).returncode == 0

    # A file this cannot read as a Secret is left alone, and said so.
    secret_file.write_text("my own: [secret\n")
    odd = CliRunner().invoke(cli, ["deploy", "k8s", str(tmp_path / "panel.yaml"), "--out", str(out)])
    assert odd.exit_code == 0 and "left" in odd.output and "as it is" in odd.output, odd.output
    assert secret_file.read_text() == "my own: [secret\n"


def test_a_bad_config_is_refused_with_its_key_path(tmp_path: Path) -> None:
    source = tmp_path / "panel.yaml"
    source.write_text("endpoints: [{id: a, provider: nope, model: m}]\n")
    result = CliRunner().invoke(cli, ["deploy", "k8s", str(source), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "endpoints[0].provider" in result.output
    assert not (tmp_path / "out").exists()


def test_the_repos_deploy_directory_is_what_the_demo_config_generates(tmp_path: Path) -> None:
    committed = REPO / "deploy"
    for target in ("compose", "k8s"):
        result = CliRunner().invoke(
            cli,
            ["deploy", target, str(REPO / "configs/demo.yaml"), "--out", str(tmp_path), "--image", "fusionkit:latest"],
        )
        assert result.exit_code == 0, result.output
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    for path in fresh:
        assert (committed / path).read_text() == (tmp_path / path).read_text(), f"deploy/{path} is stale"
    assert validate_compose(committed / "compose.yaml").returncode == 0
    assert validate_k8s(*sorted((committed / "k8s").glob("*.yaml"))).returncode == 0


def test_the_dockerfile_builds_the_one_image_every_role_runs() -> None:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")  # continued lines as one
    lines = [line.split() for line in text.splitlines() if line and line[0] != "#"]
    copied = [source for words in lines if words[0] == "COPY" for source in words[1:-1]]
    for source in copied:
        assert (REPO / source).exists(), source
    assert {"bridge", "server", "fusionkit_cli", "pyproject.toml"} <= set(copied)  # what the distribution installs
    entrypoint = next(words for words in lines if words[0] == "ENTRYPOINT")
    assert json.loads(" ".join(entrypoint[1:])) == ["fusionkit"]
    command = json.loads(" ".join(next(words for words in lines if words[0] == "CMD")[1:]))
    assert command[0] in COMMANDS and "serve-endpoint" in COMMANDS
    assert any(words[0] == "USER" and words[1] != "root" for words in lines)
    # Installed from the lock, with the uv the Makefile pins: the image has what `make setup` tested.
    assert "uv.lock" in copied
    installs = " ".join(" ".join(words) for words in lines if words[0] == "RUN")
    assert "uv sync --locked" in installs and "pip install ." not in installs
    pinned = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert pinned is not None and ["ARG", f"UV_VERSION={pinned[1]}"] in lines
