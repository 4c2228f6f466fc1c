# One image for every role of a FusionKit deployment; the command picks the role:
#   docker run fusionkit:0.2.0 serve --config /etc/fusionkit/panel.yaml --bridges /etc/fusionkit/bridges.json ...
#   docker run fusionkit:0.2.0 serve-endpoint --config /etc/fusionkit/panel.yaml --endpoint ID ...
# `fusionkit deploy compose|k8s panel.yaml` writes the rest (docs/operations.md).
#   docker build -t fusionkit:0.2.0 .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the distribution installs (pyproject.toml's packages): tests, bench and docs stay out.
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY server ./server
COPY fusionkit_cli ./fusionkit_cli
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home fusionkit

# Never root; the config comes in read-only at /etc/fusionkit, keys through the environment.
USER 10001
EXPOSE 8080 8000
ENTRYPOINT ["fusionkit"]
CMD ["serve", "--config", "/etc/fusionkit/panel.yaml", "--host", "0.0.0.0", "--port", "8080"]
