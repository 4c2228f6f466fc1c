"""What a deployment of one panel config is made of, whatever runs it (Compose or Kubernetes).

    plan = deploy_plan(Path("panel.yaml"), load_config("panel.yaml"), replicas=2, image="fusionkit:0.2.0")
    plan.bridges[0].service        # "bridge-fast": its DNS name and service name
    plan.router_config             # the panel config the containers read, `server` set for a deployment

One image runs every role: `fusionkit serve-endpoint` for each endpoint's bridge, `fusionkit serve` for
the router replicas, which reach the bridges by service name (`bridges.json`) and share a PostgreSQL run
store (`FUSIONKIT_RUN_STORE`). Keys come from the environment, filled from a Secret (Kubernetes) or the
shell / an `.env` file (Compose): the router's bearer key, the key bridges require from the router, each
endpoint's provider key. Nothing secret is written into a generated file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.config import PanelConfig
from server.store import RUN_STORE_ENV

__all__ = [
    "BRIDGE_KEY_ENV",
    "BRIDGE_PORT",
    "CONFIG_DIR",
    "ROUTER_PORT",
    "BridgePlan",
    "DeployPlan",
    "deploy_plan",
    "dump_yaml",
]

CONFIG_DIR = "/etc/fusionkit"  # where every container finds panel.yaml and bridges.json
ROUTER_PORT = 8080
BRIDGE_PORT = 8000
BRIDGE_KEY_ENV = "FUSIONKIT_BRIDGE_KEY"  # the bearer key bridges require; the router sends it
DEFAULT_API_KEY_ENV = "FUSIONKIT_API_KEY"  # the router's bearer key when the config names none
# The database the Compose file runs, and what a Kubernetes Secret's run store URL looks like.
DATABASE = "fusionkit"


class _PlainDumper(yaml.SafeDumper):
    """YAML for people: no `&id001` anchors where two values are equal, no folded long lines."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(*documents: Any) -> str:
    """One or more YAML documents, keys in the order given."""
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, width=1000)


@dataclass(frozen=True)
class BridgePlan:
    """One endpoint's bridge: its service (a DNS label) and the environment it needs."""

    endpoint_id: str
    service: str
    key_env: str | None  # the provider key's variable (endpoints[].api_key_env)

    @property
    def url(self) -> str:
        return f"http://{self.service}:{BRIDGE_PORT}"

    def command(self) -> list[str]:
        return [
            "serve-endpoint",
            "--config",
            f"{CONFIG_DIR}/panel.yaml",
            "--endpoint",
            self.endpoint_id,
            "--host",
            "0.0.0.0",
            "--port",
            str(BRIDGE_PORT),
            "--auth-key-env",
            BRIDGE_KEY_ENV,
        ]


@dataclass(frozen=True)
class DeployPlan:
    """A panel's deployment: its bridges, N router replicas, their shared config and keys."""

    name: str
    image: str
    replicas: int
    max_replicas: int
    api_key_env: str
    bridges: list[BridgePlan]
    router_config: dict[str, Any]
    secret_envs: list[str] = field(default_factory=list)  # every variable a Secret must provide

    def bridges_json(self) -> dict[str, str]:
        """What the router's `--bridges` file says: each endpoint id and the URL of its bridge's service."""
        return {bridge.endpoint_id: bridge.url for bridge in self.bridges}

    def router_command(self) -> list[str]:
        return [
            "serve",
            "--config",
            f"{CONFIG_DIR}/panel.yaml",
            "--bridges",
            f"{CONFIG_DIR}/bridges.json",
            "--bridge-key-env",
            BRIDGE_KEY_ENV,
            "--host",
            "0.0.0.0",
            "--port",
            str(ROUTER_PORT),
        ]

    def panel_yaml(self) -> str:
        return dump_yaml(self.router_config)


def _dns_label(text: str) -> str:
    """`text` as a DNS label (RFC 1123: lowercase letters, digits and '-', at most 63, alphanumeric ends)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63].rstrip("-") or "x"


def _services(endpoint_ids: list[str]) -> list[str]:
    """One service name per endpoint; endpoints whose ids differ only in case or punctuation stay apart."""
    names: list[str] = []
    for endpoint_id in endpoint_ids:
        name = _dns_label(f"bridge-{endpoint_id}")
        if name in names:
            name = _dns_label(f"{name[:55]}-{len(names)}")
        names.append(name)
    return names


def deploy_plan(
    config_path: Path, config: PanelConfig, *, replicas: int, max_replicas: int, image: str, name: str = "fusionkit"
) -> DeployPlan:
    """The deployment of `config` (already validated); `config_path` is read again, unexpanded, for the containers."""
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    api_key_env = config.server.api_key_env or DEFAULT_API_KEY_ENV
    # The containers read the config as written (its ${VAR}s expand in them), serving on every interface with
    # auth on, and with the shared run store: FUSIONKIT_RUN_STORE wins over this default, which names no password.
    raw["server"] = {
        **(raw.get("server") or {}),
        "host": "0.0.0.0",
        "port": ROUTER_PORT,
        "api_key_env": api_key_env,
        "run_store": f"${{{RUN_STORE_ENV}:-postgresql://{DATABASE}@postgres:5432/{DATABASE}}}",
    }
    for endpoint in raw.get("endpoints") or []:
        endpoint.pop("port", None)  # each bridge has a container of its own and listens on BRIDGE_PORT
    ids = [endpoint.id for endpoint in config.endpoints]
    bridges = [
        BridgePlan(endpoint.id, service, endpoint.api_key_env)
        for endpoint, service in zip(config.endpoints, _services(ids), strict=True)
    ]
    keys = [api_key_env, BRIDGE_KEY_ENV, RUN_STORE_ENV]
    keys += sorted({b.key_env for b in bridges if b.key_env is not None} - set(keys))
    return DeployPlan(
        name=name,
        image=image,
        replicas=replicas,
        max_replicas=max(max_replicas, replicas),
        api_key_env=api_key_env,
        bridges=bridges,
        router_config=raw,
        secret_envs=keys,
    )
