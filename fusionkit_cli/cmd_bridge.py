"""`fusionkit serve-endpoint`: one provider model as an OpenAI Chat Completions server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from bridge.endpoint import PROVIDERS, EndpointConfig
from bridge.errors import describe_validation_error
from bridge.logs import setup_logging
from fusionkit_cli.common import (
    BadInput,
    bearer_key_or_exit,
    load_config_or_exit,
    log_format_option,
    refuse_open_bind,
    run_server,
)

if TYPE_CHECKING:
    from server.config import PanelConfig

__all__ = ["METRICS_MODES", "serve_endpoint"]

METRICS_MODES = ("auth", "open", "off")


@click.command("serve-endpoint")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Take the endpoint from this panel config."
)
@click.option("--endpoint", "endpoint_id", help="With --config: the id of the endpoint to serve.")
@click.option("--id", "endpoint_id_flag", help="Endpoint id (the model name clients ask for).")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Provider of the model.")
@click.option("--model", help="The provider's model name.")
@click.option("--base-url", help="Provider base URL (required for openai-compatible).")
@click.option("--api-key-env", help="NAME of the environment variable holding the API key.")
@click.option("--timeout-s", type=float, help="Per-call timeout in seconds.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Port (default: the endpoint's port, else 9100).")
@click.option(
    "--auth-key-env",
    metavar="NAME",
    help="NAME of the environment variable holding the bearer token clients must send (auth is off without it).",
)
@click.option("--insecure-no-auth", is_flag=True, help="Allow a non-loopback bind without --auth-key-env.")
@click.option(
    "--metrics",
    "metrics_mode",
    type=click.Choice(METRICS_MODES),
    default="auth",
    show_default=True,
    help="GET /metrics: behind the same key as the API (auth), open to any scraper (open), or not served (off).",
)
@click.option(
    "--metrics-key-env",
    metavar="NAME",
    help="With --metrics auth: the variable holding the key /metrics needs instead (`up` passes server.api_key_env).",
)
@log_format_option
def serve_endpoint(
    config_path: str | None,
    endpoint_id: str | None,
    endpoint_id_flag: str | None,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    timeout_s: float | None,
    host: str,
    port: int | None,
    auth_key_env: str | None,
    insecure_no_auth: bool,
    metrics_mode: str,
    metrics_key_env: str | None,
    log_format: str,
) -> None:
    """Front one provider model as an OpenAI Chat Completions server (the bridge)."""
    auth_key = bearer_key_or_exit(auth_key_env, "--auth-key-env")
    refuse_open_bind(host, auth_key, insecure_no_auth, "pass --auth-key-env NAME (a variable holding the token)")
    metrics_key = bearer_key_or_exit(metrics_key_env, "--metrics-key-env")
    config = load_config_or_exit(config_path) if config_path else None
    endpoint = _endpoint_from_flags(
        config, config_path, endpoint_id, endpoint_id_flag, provider, model, base_url, api_key_env, timeout_s
    )
    setup_logging(log_format)
    from bridge.app import create_app
    from bridge.auth import BearerAuth
    from bridge.otel import OtelSettings, Tracing

    # Under a panel config, the bridge traces where the config's router does (server.otel).
    otel = config.server.otel if config is not None else None
    settings = OtelSettings.resolve(
        service_name="fusionkit-bridge",
        endpoint=otel.endpoint if otel else None,
        capture_content=otel.capture_content if otel else None,
    )
    scrape_auth = BearerAuth(None) if metrics_mode == "open" else (BearerAuth(metrics_key) if metrics_key else None)
    app = create_app(
        endpoint,
        auth_key=auth_key,
        metrics=metrics_mode != "off",
        metrics_auth=scrape_auth,
        tracing=Tracing(settings) if settings is not None else None,
    )
    run_server(app, host, port or endpoint.port or 9100)


def _endpoint_from_flags(
    config: PanelConfig | None,
    config_path: str | None,
    endpoint_id: str | None,
    endpoint_id_flag: str | None,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    timeout_s: float | None,
) -> EndpointConfig:
    if config is not None:
        if not endpoint_id:
            raise BadInput("--config needs --endpoint ID (which endpoint of the config to serve)")
        try:
            return config.endpoint(endpoint_id)
        except KeyError:
            ids = ", ".join(e.id for e in config.endpoints)
            raise BadInput(f"{config_path}: --endpoint {endpoint_id!r} is not declared; allowed: {ids}") from None
    missing = [
        flag for flag, value in (("--id", endpoint_id_flag), ("--provider", provider), ("--model", model)) if not value
    ]
    if missing:
        raise BadInput(f"give {', '.join(missing)} (or --config FILE --endpoint ID)")
    fields = {
        "id": endpoint_id_flag,
        "provider": provider,
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
    }
    if timeout_s is not None:
        fields["timeout_s"] = timeout_s  # type: ignore[assignment]
    try:
        return EndpointConfig.model_validate(fields)
    except ValidationError as exc:
        first = describe_validation_error(exc.errors(), fields).first
        where = "--" + str(first.loc[0]).replace("_", "-") if first.loc else "flags"
        raise BadInput(f"{where}: {first.message}") from None
