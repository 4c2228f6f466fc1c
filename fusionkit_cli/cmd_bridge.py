"""`fusionkit serve-endpoint`: one provider model as an OpenAI Chat Completions server."""

from __future__ import annotations

import click
from pydantic import ValidationError

from bridge.endpoint import PROVIDERS, EndpointConfig
from bridge.errors import describe_validation_error
from fusionkit_cli.common import (
    BadInput,
    bearer_key_or_exit,
    load_config_or_exit,
    log_format_option,
    refuse_open_bind,
    run_server,
)
from fusionkit_cli.logs import setup_logging

__all__ = ["serve_endpoint"]


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
    log_format: str,
) -> None:
    """Front one provider model as an OpenAI Chat Completions server (the bridge)."""
    auth_key = bearer_key_or_exit(auth_key_env, "--auth-key-env")
    refuse_open_bind(host, auth_key, insecure_no_auth, "pass --auth-key-env NAME (a variable holding the token)")
    endpoint = _endpoint_from_flags(
        config_path, endpoint_id, endpoint_id_flag, provider, model, base_url, api_key_env, timeout_s
    )
    setup_logging(log_format)
    from bridge.app import create_app

    run_server(create_app(endpoint, auth_key=auth_key), host, port or endpoint.port or 9100)


def _endpoint_from_flags(
    config_path: str | None,
    endpoint_id: str | None,
    endpoint_id_flag: str | None,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    timeout_s: float | None,
) -> EndpointConfig:
    if config_path:
        if not endpoint_id:
            raise BadInput("--config needs --endpoint ID (which endpoint of the config to serve)")
        config = load_config_or_exit(config_path)
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
