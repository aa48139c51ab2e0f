"""AI results as DICOM SR (IHE AI Results, TID 1500) → contract-v1 inference events.

Between `radwatch dicom-listen` (monitor/ingest/dicom_listener.py) and the Kafka inference
topic: `map_sr` reads the report, `inference_event` writes the event an inference service
would have published. Pure; no network, no files.
"""

from collectors.dicom_results.event import inference_event
from collectors.dicom_results.mapping import (
    ImageRef,
    ModelOverrides,
    SrMappingError,
    SrResult,
    map_sr,
)

__all__ = ["ImageRef", "ModelOverrides", "SrMappingError", "SrResult", "inference_event", "map_sr"]
