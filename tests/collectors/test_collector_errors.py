"""One exception family for collectors/ (collectors.errors): every error derives from the root.

Each class keeps the base it had before the root existed, so every existing `except` (a
ValueError, a KafkaError, a RuntimeError) still catches what it caught.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

from kafka.errors import KafkaError

import collectors
from collectors.errors import (
    CollectorError,
    DecodeError,
    ImageError,
    InvalidEvent,
    Reason,
    ResolveError,
)
from collectors.kafka_io import BrokerUnavailable
from collectors.simulator.model import WeightsError
from collectors.simulator.stream import NotDelivered


def exception_classes() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a collectors module, by qualified name."""
    found = {}
    for info in pkgutil.walk_packages(collectors.__path__, "collectors."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == info.name and not name.startswith("_")):  # fmt: skip
                found[f"{info.name}.{name}"] = value
    return found


def test_every_exception_in_collectors_derives_from_the_root() -> None:
    classes = exception_classes()
    assert "collectors.errors.ImageError" in classes and len(classes) >= 8, sorted(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, CollectorError))
    assert outside == []


def test_the_bases_they_had_are_kept() -> None:
    assert issubclass(InvalidEvent, ValueError)
    assert issubclass(BrokerUnavailable, KafkaError) and issubclass(NotDelivered, KafkaError)
    assert issubclass(WeightsError, RuntimeError)
    assert issubclass(ResolveError, ImageError) and issubclass(DecodeError, ImageError)
    # KafkaError's own __str__ prefixes the class name; these two keep their one-line message.
    assert str(BrokerUnavailable("no broker at x:9092")) == "no broker at x:9092"
    assert str(NotDelivered("2 of 5 events were not delivered")).startswith("2 of 5")


def test_image_errors_cross_process_boundaries_intact() -> None:
    error = pickle.loads(pickle.dumps(ResolveError(Reason.IMAGE_TIMEOUT, "late", parkable=True)))
    assert (type(error), error.reason, error.message, error.parkable) == (
        ResolveError, Reason.IMAGE_TIMEOUT, "late", True
    )  # fmt: skip
    decoded = pickle.loads(pickle.dumps(DecodeError(Reason.DICOM_INVALID, "not DICOM")))
    assert isinstance(decoded, CollectorError) and str(decoded) == "dicom_invalid: not DICOM"
