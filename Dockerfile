FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY connectors connectors
COPY pipeline pipeline
RUN pip install --no-cache-dir .
ENTRYPOINT ["erasure"]
