# One image for every role of a FusionKit deployment; the command picks the role:
#   docker run fusionkit:0.2.0 serve --config /etc/fusionkit/panel.yaml --bridges /etc/fusionkit/bridges.json ...
#   docker run fusionkit:0.2.0 serve-endpoint --config /etc/fusionkit/panel.yaml --endpoint ID ...
# `fusionkit deploy compose|k8s panel.yaml` writes the rest (docs/operations.md).
#   docker build -t fusionkit:0.2.0 .
FROM python:3.11-slim

# uv as the Makefile pins it (UV_VERSION); the environment it builds is /opt/fusionkit, on PATH.
ARG UV_VERSION=0.13.9
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/fusionkit \
    PATH=/opt/fusionkit/bin:$PATH

WORKDIR /app
# Only what the distribution installs (pyproject.toml's packages) and the lock: tests, bench and docs stay out.
COPY pyproject.toml uv.lock README.md ./
COPY bridge ./bridge
COPY server ./server
COPY fusionkit_cli ./fusionkit_cli
# --locked: exactly the versions (and hashes) of uv.lock, or the build fails; no extras (dev, eval, bench).
# uv is installed beside the environment, not in it, and removed once it has built it.
RUN pip install --quiet --target /tmp/uv "uv==${UV_VERSION}" \
    && /tmp/uv/bin/uv sync --locked --no-dev --no-editable --compile-bytecode \
    && rm -rf /tmp/uv \
    && useradd --system --uid 10001 --no-create-home fusionkit

# Never root; the config comes in read-only at /etc/fusionkit, keys through the environment.
USER 10001
EXPOSE 8080 8000
ENTRYPOINT ["fusionkit"]
CMD ["serve", "--config", "/etc/fusionkit/panel.yaml", "--host", "0.0.0.0", "--port", "8080"]
