"""radwatch towards Prometheus: metric names and in-process instruments, the scrape-time
reads of PostgreSQL, and the HTTP server (/metrics, the webhook, /healthz) with its web-config.
"""
