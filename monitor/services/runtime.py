"""Where the broker and database are: configured ones, or the embedded ones started on demand.

Glue between settings and the long-running loops: every command that needs Kafka or
PostgreSQL asks `resolve_endpoints`, which starts the embedded services only when no
external ones are configured, creates topics and migrates the schema.

Two kinds of callers: services (collect, run, metrics, the detect loop) wait for a server
that is down, logging what they wait for; one-shot commands (`retry=False`) try once and
fail with one line. Read-only commands (`read_only=True`) use only what is already there:
they never start an embedded service and never migrate (DESIGN.md §5a).
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.kafka_io import KafkaOptions, ensure_topics, wait_for_broker
from monitor.audit import trail
from monitor.config import Settings
from monitor.services import embedded
from monitor.store import db

# A one-shot command's Kafka clients wait this long for their first broker (DESIGN.md §5a).
ONE_SHOT_BOOTSTRAP_MS = 5_000


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str
    database_url: str
    embedded: bool


def resolve_endpoints(
    settings: Settings,
    *,
    prepare: bool = True,
    start_embedded: bool = True,
    read_only: bool = False,
    retry: bool = True,
    broker: bool = True,
) -> Endpoints:
    """Configured endpoints, else the embedded services (started if needed).

    With `prepare`, topics are created and the schema migrated (both idempotent). Without
    `retry` (one-shot commands) a server that does not answer is an error at once, not a
    wait. `broker=False`: PostgreSQL only (`bootstrap` is then "" unless configured).
    `read_only`: see `existing_endpoints`.
    """
    if read_only:
        return existing_endpoints(settings, broker=broker)
    bootstrap, url = settings.kafka_bootstrap, settings.database_url
    # `broker=False`: the command needs PostgreSQL only; no embedded broker is started.
    use_embedded = (broker and bootstrap is None) or url is None
    if use_embedded:
        state = (
            embedded.services_up(
                settings.data_dir, broker=broker and bootstrap is None, postgres=url is None
            )
            if start_embedded
            else embedded.load_state(settings.data_dir.resolve())
        )
        bootstrap = bootstrap or state.bootstrap
        url = url or state.database_url
    if (broker and bootstrap is None) or url is None:
        raise embedded.ServiceError(
            "no broker or database configured and the embedded services are not running "
            "(run `radwatch services up`)"
        )
    endpoints = Endpoints(bootstrap or "", url, use_embedded)
    if prepare and broker:
        options = kafka_options(settings, endpoints, one_shot=not retry)
        wait_for_broker(options, timeout=None if retry else 0)
        ensure_topics(
            options,
            [
                settings.inference_topic,
                settings.label_topic,
                settings.deadletter_topic,
                settings.interaction_topic,
            ],  # fmt: skip
            settings.topic_partitions,
        )
    if prepare:
        migrate(settings, endpoints, retry=retry)
    return endpoints


def migrate(settings: Settings, endpoints: Endpoints, *, retry: bool) -> list[db.Migration]:
    """Apply pending migrations (`radwatch db migrate`, and `prepare` above).

    Embedded PostgreSQL: migrations run as the database owner; everything else gets the
    least-privileged app login in `endpoints.database_url` (monitor/services/embedded.py).
    """
    migrate_url = endpoints.database_url
    if settings.database_url is None:
        owner = embedded.load_state(settings.data_dir.resolve()).owner_database_url
        migrate_url = owner or migrate_url
    if retry:
        return db.with_retry(lambda: migrate_schema(migrate_url), what="migrating the schema")
    return migrate_schema(migrate_url)


def migrate_schema(url: str) -> list[db.Migration]:
    """Apply pending migrations on `url`, each recorded in the audit trail (issue 8) in the
    same transaction, once the audit table exists. Every migrating caller goes through here."""
    return db.migrate(url, on_applied=trail.record_migrations)


def existing_endpoints(settings: Settings, *, broker: bool = False) -> Endpoints:
    """The read-only path: the servers as they are, checked within seconds.

    Starts nothing and migrates nothing: an embedded service that is stopped, or a schema
    with pending migrations, is an error naming the command to run (services.ServiceError,
    db.SchemaError). `broker`: the command also reads Kafka (consumer lag).
    """
    bootstrap, url = settings.kafka_bootstrap, settings.database_url
    use_embedded = (broker and bootstrap is None) or url is None
    running = _running_embedded(settings) if use_embedded else {}
    url = url or running.get("postgres")
    if url is None:
        raise embedded.ServiceError(
            "the embedded PostgreSQL is not running (run `radwatch services up`, "
            "or set RADWATCH_DATABASE_URL)"
        )
    if broker:
        bootstrap = bootstrap or running.get("broker")
        if bootstrap is None:
            raise embedded.ServiceError(
                "the embedded broker is not running (run `radwatch services up`, "
                "or set RADWATCH_KAFKA_BOOTSTRAP)"
            )
    db.check_schema(url)
    endpoints = Endpoints(bootstrap or "", url, use_embedded)
    if broker:
        wait_for_broker(kafka_options(settings, endpoints, one_shot=True), timeout=0)
    return endpoints


def _running_embedded(settings: Settings) -> dict[str, str]:
    """Addresses of the embedded services that are running now ("postgres", "broker").

    The addresses are those `resolve_endpoints` would use; the status only says which
    services are up, so nothing is started to find out.
    """
    status = embedded.services_status(settings.data_dir)
    state = embedded.load_state(settings.data_dir.resolve())
    found: dict[str, str] = {}
    for name, address in (("postgres", state.database_url), ("broker", state.bootstrap)):
        entry = status.get(name)
        if isinstance(entry, dict) and entry.get("running") and address:
            found[name] = address
    return found


def kafka_options(
    settings: Settings, endpoints: Endpoints, client_id: str = "radwatch", *, one_shot: bool = False
) -> KafkaOptions:
    """Kafka client options; `one_shot` clients give up on an absent broker within seconds."""
    return KafkaOptions(
        bootstrap=endpoints.bootstrap,
        group_id=settings.group_id,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        security=settings.kafka_client_options(),
        client_id=client_id,
        bootstrap_timeout_ms=ONE_SHOT_BOOTSTRAP_MS if one_shot else 30_000,
    )
