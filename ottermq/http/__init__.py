"""The management HTTP API (RabbitMQ's `/api/...`), Prometheus `/metrics` and a small web page."""
