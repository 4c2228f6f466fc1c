"""`deploy/k8s/` for a DeployPlan: a Deployment and Service per bridge, the router's, a Secret, a ConfigMap, an HPA.

    files = k8s_files(plan)      # {"k8s/secret.yaml": ..., "k8s/bridge-fast.yaml": ..., "k8s/router.yaml": ...}

`kubectl apply -f deploy/k8s/` after filling the Secret's values (the generated ones are empty, and
the router and bridges refuse to start on an empty key). The run store is a PostgreSQL database you
run (a managed one, an operator's): its URL, password included, is the Secret's FUSIONKIT_RUN_STORE.
The router's replicas are scaled on CPU by the HPA, between `replicas` and `max_replicas`.
"""

from __future__ import annotations

import json
from typing import Any

from fusionkit_cli.deploy.plan import BRIDGE_KEY_ENV, BRIDGE_PORT, CONFIG_DIR, ROUTER_PORT, DeployPlan, dump_yaml
from server.store import RUN_STORE_ENV

__all__ = ["CPU_TARGET_PERCENT", "k8s_files"]

CPU_TARGET_PERCENT = 70
SECRET = "fusionkit-keys"
CONFIG_MAP = "fusionkit-config"


def _labels(plan: DeployPlan, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": plan.name, "app.kubernetes.io/component": component}


def _secret_env(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": name}}} for name in names]


def _probe(port: int, period_s: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": port}, "periodSeconds": period_s, "timeoutSeconds": 3}


def _deployment(
    plan: DeployPlan, name: str, component: str, replicas: int, command: list[str], env: list[str], port: int
) -> dict[str, Any]:
    labels = _labels(plan, component)
    container = {
        "name": component,
        "image": plan.image,
        "args": command,
        "ports": [{"containerPort": port, "name": "http"}],
        "env": _secret_env(env),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "readinessProbe": _probe(port, 5),
        "livenessProbe": {**_probe(port, 10), "failureThreshold": 3},
        # The HPA scales on CPU as a share of what is requested.
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": CONFIG_MAP}}],
                    # The router expires its own unfinished runs when it stops; give a run time to end first.
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


def _service(plan: DeployPlan, name: str, component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(plan, component)},
        "spec": {
            "selector": _labels(plan, component),
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def k8s_documents(plan: DeployPlan) -> dict[str, list[dict[str, Any]]]:
    """The manifests, by file name: each file one concern."""
    documents: dict[str, list[dict[str, Any]]] = {
        "secret.yaml": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "labels": _labels(plan, "keys")},
                "type": "Opaque",
                # Empty until you fill them: a router or bridge refuses to start on an empty key.
                "stringData": dict.fromkeys(plan.secret_envs, ""),
            }
        ],
        "configmap.yaml": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CONFIG_MAP, "labels": _labels(plan, "config")},
                "data": {
                    "panel.yaml": plan.panel_yaml(),
                    "bridges.json": json.dumps(plan.bridges_json(), indent=2) + "\n",
                },
            }
        ],
    }
    for bridge in plan.bridges:
        keys = [BRIDGE_KEY_ENV] + ([bridge.key_env] if bridge.key_env else [])
        component = bridge.service
        documents[f"{bridge.service}.yaml"] = [
            _deployment(plan, bridge.service, component, 1, bridge.command(), keys, BRIDGE_PORT),
            _service(plan, bridge.service, component, BRIDGE_PORT),
        ]
    router_keys = [RUN_STORE_ENV, plan.api_key_env, BRIDGE_KEY_ENV]
    router = f"{plan.name}-router"
    documents["router.yaml"] = [
        _deployment(plan, router, "router", plan.replicas, plan.router_command(), router_keys, ROUTER_PORT),
        _service(plan, router, "router", ROUTER_PORT),
    ]
    documents["hpa.yaml"] = [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": router, "labels": _labels(plan, "router")},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": router},
                "minReplicas": plan.replicas,
                "maxReplicas": plan.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
                        },
                    }
                ],
            },
        }
    ]
    return documents


def k8s_files(plan: DeployPlan) -> dict[str, str]:
    """Every manifest file, by path relative to the output directory."""
    header = "# Generated by `fusionkit deploy k8s` from the panel config: edit the config and generate again.\n"
    return {f"k8s/{name}": header + dump_yaml(*documents) for name, documents in k8s_documents(plan).items()}
