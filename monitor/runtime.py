"""Where the broker and database are: configured ones, or the embedded ones started on demand.

Glue between settings and the long-running loops: every command that needs Kafka or
PostgreSQL asks `resolve_endpoints`, which starts the embedded services only when no
external ones are configured, creates topics and migrates the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.kafka_io import KafkaOptions, ensure_topics, wait_for_broker
from monitor import db, services
from monitor.config import Settings


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str
    database_url: str
    embedded: bool


def resolve_endpoints(
    settings: Settings, *, prepare: bool = True, start_embedded: bool = True
) -> Endpoints:
    """Configured endpoints, else the embedded services (started if needed).

    With `prepare`, topics are created and the schema migrated (both idempotent).
    """
    bootstrap, url = settings.kafka_bootstrap, settings.database_url
    embedded = bootstrap is None or url is None
    if embedded:
        state = (
            services.services_up(settings.data_dir, broker=bootstrap is None, postgres=url is None)
            if start_embedded
            else services.load_state(settings.data_dir.resolve())
        )
        bootstrap = bootstrap or state.bootstrap
        url = url or state.database_url
    if bootstrap is None or url is None:
        raise services.ServiceError(
            "no broker or database configured and the embedded services are not running "
            "(run `radwatch services up`)"
        )
    endpoints = Endpoints(bootstrap, url, embedded)
    if prepare:
        options = kafka_options(settings, endpoints)
        wait_for_broker(options)
        ensure_topics(
            options,
            [settings.inference_topic, settings.label_topic, settings.deadletter_topic],
            settings.topic_partitions,
        )
        db.with_retry(lambda: db.migrate(url), what="migrating the schema")
    return endpoints


def kafka_options(
    settings: Settings, endpoints: Endpoints, client_id: str = "radwatch"
) -> KafkaOptions:
    return KafkaOptions(
        bootstrap=endpoints.bootstrap,
        group_id=settings.group_id,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        security=settings.kafka_client_options(),
        client_id=client_id,
    )
