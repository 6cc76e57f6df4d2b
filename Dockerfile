# The image compose.yaml runs: stagebus and its dependencies, nothing else.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stagebus ./stagebus
RUN pip install --no-cache-dir '.[amqp,s3]' && rm -rf /src  # amqp: RabbitMQ; s3: artifacts in object storage
ENV STAGEBUS_HOME=/var/lib/stagebus
WORKDIR /var/lib/stagebus
CMD ["stagebus", "--help"]
