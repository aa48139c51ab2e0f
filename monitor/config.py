"""Typed settings for every radwatch command (DESIGN.md §9).

Sits at the top of the data flow: the CLI builds one `Settings` from RADWATCH_* variables
and an optional TOML file, and hands the pieces each layer needs down to it.

`Settings` is a pydantic-settings model: every field is typed and validated, and the
sections (`images`, `audit`, `embedders`) replace the untyped bag of extra keys. Built in
code (`Settings(device="cpu")`) it holds exactly its arguments; only `load_settings` reads
the environment and the TOML file, so a test never picks up the RADWATCH_* of its shell.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as typed_dataclass
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from detectors.false_alarm_budget import FalseAlarmBudget
from monitor.errors import ConfigError
from monitor.safeguards import (
    check_kafka_security,
    check_kafka_transport,
    check_postgres_transport,
    check_private_file,
    check_pseudonym_key,
)

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
# Sections refuse keys they do not know: a typo in the TOML file is an error, not a default.
_SECTION = ConfigDict(extra="forbid")


@typed_dataclass(frozen=True, config=_SECTION)
class ImageSettings:
    """The image stage's limits (monitor.ingest.image_stage): TOML `image_size = 224` (today's flat
    keys) or a `[radwatch.images]` table, or RADWATCH_IMAGE_SIZE. None: the decoder's default
    (collectors.images.dicom_reader / image_resolver), kept there so this module stays light."""

    size: Positive | None = None
    max_pixels: Positive | None = None
    timeout_s: PositiveFloat | None = None  # total per fetch, retries included
    max_bytes: Positive | None = None  # per image
    inflight_bytes: Positive | None = None  # all of a batch's fetches together
    max_total_pixels: Positive | None = None
    max_inflated_bytes: Positive | None = None
    decode_timeout_s: PositiveFloat | None = None
    workers: Positive | None = None


@typed_dataclass(frozen=True, config=_SECTION)
class AuditSettings:
    """Where the audit signing key and the signed checkpoints live (monitor.audit.checkpoint):
    TOML `audit_key_file = ...` or RADWATCH_AUDIT_KEY_FILE; None: in the data dir."""

    key_file: Path | None = None
    public_key_file: Path | None = None  # None: the key file with a .pub suffix
    checkpoint_file: Path | None = None


@typed_dataclass(frozen=True, config=_SECTION)
class EmbedderSettings:
    """One checkpoint embedder (monitor.ingest.embedding_stage.build_embedder):

    [radwatch.embedders.site-resnet]
    path = "/models/resnet50.pt"   # a local file only; TorchScript when arch is absent
    output_dim = 2048
    """

    path: Path
    output_dim: Positive
    arch: str | None = None  # default-cnn, resnet18, resnet34, resnet50
    input_size: tuple[Positive, Positive] = (224, 224)
    intensity: Literal["unit", "standard", "imagenet"] = "imagenet"
    channels: Positive = 3
    modality: str = "any"


# The sources `load_settings` adds for one call (the environment, the file); empty when code
# builds Settings(...) itself. A context variable, so concurrent loads do not mix.
_LOAD_SOURCES: contextvars.ContextVar[tuple[PydanticBaseSettingsSource, ...]] = (
    contextvars.ContextVar("radwatch_settings_sources", default=())
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RADWATCH_", frozen=True, extra="forbid", env_ignore_empty=True
    )
    # Filled in below the class: `dataclasses.replace(settings, ...)` and
    # `dataclasses.fields(Settings)` keep working for the callers that use them.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    kafka_bootstrap: str | None = None  # None: the embedded broker
    database_url: str | None = None  # None: the embedded PostgreSQL
    data_dir: Path = Path(".radwatch")
    inference_topic: str = "radwatch.inferences"
    label_topic: str = "radwatch.labels"
    deadletter_topic: str = "radwatch.deadletter"
    interaction_topic: str = "radwatch.interactions"  # radwatch.interaction.v1 (optional)
    group_id: str = "radwatch-collectors"
    pseudonym_key: str | None = None  # None: generated once into the data dir
    metrics_addr: str = "127.0.0.1:9108"
    device: str | None = None  # None: cuda if available
    max_event_bytes: Positive = 1_048_576
    batch_size: Positive = 500
    poll_timeout_ms: int = 500
    # Worker processes `radwatch collect` runs in the group (monitor/ingest/processes.py):
    # one is GIL-bound near a core, so a box with spare cores runs one per core.
    collect_processes: Annotated[int, Field(ge=1, le=64)] = 1
    topic_partitions: int = 4
    # Short group timeouts: a join takes seconds, not tens of seconds (DESIGN.md §7).
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # Client certificate for mutual TLS (SSL / SASL_SSL); PostgreSQL TLS is set in the URL
    # itself (`?sslmode=verify-full&sslrootcert=...`), see deploy/README.md.
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    actor: str = "radwatch"
    # --- the fenced image fetcher (DESIGN.md §5a) -----------------------------------------
    # Directories file:// image URIs may read, separated by commas; None: DATA_DIR/images.
    image_roots: str | None = None
    # DICOMweb base URLs http(s):// image URIs may call, separated by commas; None: none.
    dicomweb_urls: str | None = None
    # DICOMweb authentication: a bearer token (best from RADWATCH_DICOMWEB_TOKEN_FILE), or
    # basic auth, or a client certificate; TLS is verified unless dicomweb_tls_verify=false.
    dicomweb_token: str | None = None
    dicomweb_username: str | None = None
    dicomweb_password: str | None = None
    dicomweb_client_cert: str | None = None
    dicomweb_client_key: str | None = None
    dicomweb_ca_bundle: str | None = None
    dicomweb_tls_verify: bool = True
    # --- the HTTP edge --------------------------------------------------------------------
    webhook_token: str | None = None  # the Alertmanager webhook's bearer token; None: off
    metrics_web_config: str | None = None  # exporter-toolkit web-config YAML (auth, TLS)
    # --- what is kept of an event -----------------------------------------------------------
    # Top-level extra fields kept on stored events, comma-separated; None: none kept.
    extra_fields_allow: str | None = None
    # occurred_at outside [now - max_past_days, now + max_future_hours] is bad_timestamp.
    event_max_past_days: int = 3650
    event_max_future_hours: int = 24
    # --- the false-alarm budget (monitor/alerts/budget.py) ------------------------------------
    # At most `budget_incidents` false incidents per model every `budget_days` days at the
    # observed volume; α, persistence and the CUSUM's ARL0 are derived from it.
    budget_incidents: PositiveFloat = 1.0
    budget_days: PositiveFloat = 90.0
    # --- transport safety -------------------------------------------------------------------
    # Plaintext Kafka (PLAINTEXT/SASL_PLAINTEXT) or PostgreSQL sslmode=disable towards a
    # non-loopback host are refused unless allowed here (and then logged as a warning).
    allow_plaintext_kafka: bool = False
    allow_insecure_postgres: bool = False
    # --- radwatch dicom-listen (monitor/ingest/dicom_listener.py) ------------------------------
    # Calling AE titles accepted, comma-separated; None: any while bound to loopback, else none.
    dicom_calling_aets: str | None = None
    dicom_ae_title: str = "RADWATCH"
    # How long an arriving SR waits for source images not yet received before dead-lettering.
    dicom_source_wait_s: PositiveFloat = 30.0
    # Per-model overrides of the SR mapping: a TOML file of [models."NAME"] tables
    # (collectors.dicom_results.ModelOverrides); None: the TID 1500 defaults only.
    dicom_models_file: Path | None = None
    # The `site` of the inference events the listener publishes; None: none.
    dicom_site: str | None = None
    # --- sections -----------------------------------------------------------------------------
    images: ImageSettings = ImageSettings()
    audit: AuditSettings = AuditSettings()
    # Checkpoint embedders by name ([radwatch.embedders.NAME]); `default` is built in.
    embedders: Mapping[str, EmbedderSettings] = Field(default_factory=dict)
    # --- radiology reports in (hl7-listen, labels import --fhir) ------------------------------
    # The accession's place in ORU^R01: OBR-3 (filler order number), or e.g. OBR-2, OBR-18.2.
    hl7_accession_field: Annotated[str, Field(pattern=r"^OBR-[1-9]\d?(\.[1-9]\d?)?$")] = "OBR-3"
    hl7_max_message_bytes: Positive = 1_048_576  # one MLLP block / HL7 message
    # Models report labels are for: "model=finding,finding; model2"; None: --model required.
    report_models: str | None = None
    # The share of report-derived labels queued for a radiologist's review (`radwatch labels
    # review`, monitor/labelwatch/review.py), chosen by a keyed hash of each label's event id.
    label_review_share: Annotated[float, Field(gt=0, le=1)] = 0.05
    fhir_token: str | None = None  # bearer token of hl7-listen --fhir-port; None: no endpoint
    hl7_tls_cert_file: Path | None = None  # with the key: hl7-listen's ports speak TLS only
    hl7_tls_key_file: Path | None = None
    hl7_tls_client_ca_file: Path | None = None  # given: client certificates are required

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments first, then whatever load_settings put in place for this call.
        return (init_settings, *_LOAD_SOURCES.get())

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied and validated (what dataclasses.replace does too)."""
        return type(self)(**{**{name: getattr(self, name) for name in FIELDS}, **changes})

    def key_bytes(self) -> bytes:
        """The HMAC key for pseudonyms: configured, or generated once and kept in the data dir."""
        if self.pseudonym_key:
            return self.pseudonym_key.encode()
        path = self.data_dir / "pseudonym.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 so the demo key is not world-readable.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it between our check and open: use theirs
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
        # A key someone loosened (or copied in with a umask of 022) is refused, not used.
        check_private_file(path, "the generated pseudonym key")
        key = path.read_text().strip()
        check_pseudonym_key(key, str(path))
        return key.encode()

    def false_alarm_budget(self) -> FalseAlarmBudget:
        return FalseAlarmBudget(self.budget_incidents, self.budget_days)

    def image_root_paths(self) -> tuple[Path, ...]:
        """Directories file:// image URIs may read (resolved; the data dir's images/ by default)."""
        if self.image_roots is None:
            return ((self.data_dir / "images").resolve(),)
        return tuple(Path(p).resolve() for p in _split(self.image_roots))

    def dicomweb_base_urls(self) -> tuple[str, ...]:
        """DICOMweb base URLs http(s):// image URIs may call (none by default)."""
        return tuple(u.rstrip("/") for u in _split(self.dicomweb_urls or ""))

    def extra_fields_allowed(self) -> frozenset[str]:
        """Top-level extra event fields kept in storage (none by default)."""
        return frozenset(_split(self.extra_fields_allow or ""))

    def kafka_client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for security (SASL/TLS), shared by every client."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        if self.kafka_ssl_certfile:
            options["ssl_certfile"] = self.kafka_ssl_certfile
        if self.kafka_ssl_keyfile:
            options["ssl_keyfile"] = self.kafka_ssl_keyfile
        return options


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


FIELDS = tuple(Settings.model_fields)
# A stdlib dataclass with the same field names lends Settings its field table, so the
# `dataclasses` functions (replace, fields, asdict, is_dataclass) treat it as one: callers
# and tests written against the former dataclass keep working unchanged.
_MIRROR: Any = dataclasses.make_dataclass(
    "Settings", [(name, Any, dataclasses.field(default=None)) for name in FIELDS]
)
Settings.__dataclass_fields__ = _MIRROR.__dataclass_fields__

# Sections whose keys also have a flat spelling, `<prefix><key>`: the TOML keys and the
# RADWATCH_* variables they had before the sections existed (image_size, audit_key_file).
_FLAT_SECTIONS = {"images": "image_", "audit": "audit_"}
_SECTION_TYPES: dict[str, Any] = {"images": ImageSettings, "audit": AuditSettings}
_FLAT = {
    prefix + f.name: (section, f.name)
    for section, prefix in _FLAT_SECTIONS.items()
    for f in dataclasses.fields(_SECTION_TYPES[section])
}
# Scalar settings that RADWATCH_X_FILE may carry (a secret mounted as a file).
_FILE_FIELDS = tuple(name for name in FIELDS if name not in ("images", "audit", "embedders"))
# Those whose file must be private (0600 or tighter).
_KEY_FILE_FIELDS = frozenset({"pseudonym_key"})
# Settings whose value never appears in an error message.
_SECRET_FIELDS = frozenset({"pseudonym_key", "kafka_sasl_password", "dicomweb_token",
                            "dicomweb_password", "webhook_token", "fhir_token"})  # fmt: skip


class _EnvSource(EnvSettingsSource):
    """RADWATCH_* variables from the mapping load_settings was given, not only os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # What pydantic-settings does with os.environ: names folded to lower case (it matches
        # case-insensitively), empty values dropped (env_ignore_empty: unset, as before).
        return {name.lower(): value for name, value in self._environ.items() if value != ""}


def _nest(flat: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Flat section keys (image_size) into their section ({"images": {"size": ...}})."""
    values: dict[str, Any] = {}
    for key, value in flat.items():
        if key in _FLAT:
            section, name = _FLAT[key]
            values.setdefault(section, {})[name] = value
        elif key not in _FLAT_SECTIONS:
            values[key] = value
    for section, prefix in _FLAT_SECTIONS.items():
        if section not in flat:
            continue
        table, keys = flat[section], values.get(section, {})
        if not isinstance(table, Mapping) or not keys:
            values[section] = table  # not a table: pydantic names the setting and the type
            continue
        both = sorted(set(table) & set(keys))
        if both:
            raise ConfigError(f"{where}: {prefix}{both[0]} is set twice "
                              f"(as a key and in [radwatch.{section}])")  # fmt: skip
        values[section] = {**table, **keys}
    return values


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    section = doc.get("radwatch", doc)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [radwatch] must be a table")
    known = set(FIELDS) | set(_FLAT)
    unknown = sorted(key for key in section if key not in known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
    return _nest(section, f"config file {path}")


def _from_environment(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RADWATCH_X_FILE secrets, flat section variables such as RADWATCH_IMAGE_SIZE)."""
    secrets_read: dict[str, Any] = {}
    for name in _FILE_FIELDS:
        var = "RADWATCH_" + name.upper() + "_FILE"
        if var not in env:
            continue
        if name in _KEY_FILE_FIELDS:
            check_private_file(Path(env[var]), var)
        try:
            secrets_read[name] = Path(env[var]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {var}: {exc.strerror}") from exc
    flat = {key: env[var] for key in _FLAT if env.get(var := "RADWATCH_" + key.upper())}
    return secrets_read, _nest(flat, "the environment")


def _display_name(loc: tuple[int | str, ...]) -> str:
    """The name a user wrote: image_size for images.size, the dotted path otherwise."""
    parts = [str(p) for p in loc]
    if len(parts) == 2 and parts[0] in _FLAT_SECTIONS:
        return _FLAT_SECTIONS[parts[0]] + parts[1]
    return ".".join(parts)


_EXPECTED = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "a string", "greater_than": "positive", "path_type": "a path",
    "dict_type": "a table", "mapping_type": "a table", "dataclass_type": "a table",
    "tuple_type": "a list", "literal_error": "one of the listed values",
}  # fmt: skip


def _one_line(exc: ValidationError) -> ConfigError:
    """pydantic's multi-line report as one line naming the (first) setting at fault."""
    errors = exc.errors()
    first = errors[0]
    name = _display_name(first["loc"])
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        # Only a table can hold an unknown key (flat ones are refused by _read_toml).
        text = f"unknown setting {'.'.join(map(str, first['loc']))!r}"
    elif first["type"] == "missing":
        text = f"{name} is required"
    else:
        what = _EXPECTED.get(first["type"])
        text = f"{name} must be {what}" if what else f"{name}: {first['msg']}"
        if not (set(map(str, first["loc"])) & _SECRET_FIELDS):
            text += f", got {first['input']!r}"
    more = len(errors) - 1
    return ConfigError(text + (f" (and {more} more)" if more else ""))


def load_settings(
    config_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file, then RADWATCH_* variables (and RADWATCH_X_FILE secrets)."""
    env = os.environ if environ is None else environ
    path = config_file or env.get("RADWATCH_CONFIG")
    from_file = _read_toml(path) if path else {}
    from_secret_files, from_flat_env = _from_environment(env)
    # Highest priority first: the pydantic-settings order.
    sources = (InitSettingsSource(Settings, from_secret_files), _EnvSource(Settings, env),
               InitSettingsSource(Settings, from_flat_env), InitSettingsSource(Settings, from_file))  # fmt: skip
    token = _LOAD_SOURCES.set(sources)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise _one_line(exc) from None
    except SettingsError as exc:  # e.g. RADWATCH_EMBEDDERS that is not JSON
        raise ConfigError(str(exc).splitlines()[0]) from None
    finally:
        _LOAD_SOURCES.reset(token)
    check_kafka_security(settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
                         settings.kafka_sasl_username, settings.kafka_sasl_password)  # fmt: skip
    if settings.pseudonym_key is not None:
        check_pseudonym_key(settings.pseudonym_key, "pseudonym_key")
    # Plaintext to a non-loopback host is refused unless allowed (then warned about once).
    check_kafka_transport(settings.kafka_bootstrap, settings.kafka_security_protocol,
                          allowed=settings.allow_plaintext_kafka)  # fmt: skip
    check_postgres_transport(settings.database_url, env, allowed=settings.allow_insecure_postgres)
    _check_audit_key_file(settings)
    return settings


def _check_audit_key_file(settings: Settings) -> None:
    """The audit signing key, when it already exists: private, like every key file."""
    path = settings.audit.key_file or settings.data_dir / "audit-signing.key"
    if path.exists():
        check_private_file(path, "the audit signing key")
