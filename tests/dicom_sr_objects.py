"""Synthetic CT images and highdicom-built TID 1500 SRs for the DICOM result tests.

No patient data: every identifier is generated or a planted marker (PHI_MARKERS) that the
tests then look for in logs, files and the database.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_NAME = "ZZMARKERNAME^PLANTED"
PATIENT_ID = "ZZMARKERPID77"
ACCESSION = "ZZMARKERACC55"
PHI_MARKERS = ("ZZMARKERNAME", "ZZMARKERPID77", "ZZMARKERACC55")
NODULE = Code("27925004", "SCT", "Nodule")
UNITLESS = Code("1", "UCUM", "no units")
PROBABILITY = Code("363698007", "SCT", "Probability")  # any NUM concept: the unit decides
PRESENCE = Code("705057003", "SCT", "Presence")  # a qualitative evaluation's concept name


def ct_image(study_uid: str, series_uid: str, number: int = 1) -> Dataset:
    """A small CT slice (8×8, zeros) with planted PHI markers in its patient/study module."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientName, ds.PatientID, ds.AccessionNumber = PATIENT_NAME, PATIENT_ID, ACCESSION
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "", "F", "063Y"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.ReferringPhysicianName = (
        "20261128",
        "101500",
        "1",
        "",
    )
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ScanCo", "Helix 64"
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, number, 1
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, number], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
    return ds


def ct_series(n: int = 2) -> list[Dataset]:
    study, series = generate_uid(), generate_uid()
    return [ct_image(study, series, i + 1) for i in range(n)]


def measurement_sr(
    images: Sequence[Dataset],
    *,
    algorithm: tuple[str, str] | None = ("NoduleNet", "2.1.0"),
    observer_name: str | None = "nodule-device",
    value: float | None = 0.83,
    unit: Code = UNITLESS,
    finding: Code = NODULE,
    group_sources: bool = True,
    manufacturer: str = "AIVendor",
    model_name: str = "NN-CT",
    presence: Code | None = None,
) -> Dataset:
    """A Comprehensive 3D SR holding one TID 1501 group over `images` (TID 1500); `presence`
    adds a qualitative evaluation "Presence" with that value (Present or Absent)."""
    measurements = (
        [] if value is None else [hd.sr.Measurement(name=PROBABILITY, value=value, unit=unit)]
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="finding 1"),
        algorithm_id=hd.sr.AlgorithmIdentification(name=algorithm[0], version=algorithm[1])
        if algorithm else None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(im) for im in images]
        if group_sources else None,
        finding_type=finding,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=PRESENCE, value=presence)]
        if presence is not None else None,
    )  # fmt: skip
    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=observer_name
        ),
    ) if observer_name else None  # fmt: skip
    person = hd.sr.ObserverContext(
        observer_type=codes.cid270.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^A"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=None if device else person, observer_device_context=device
        ),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(images), content=report, series_number=99, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name=model_name,
    )  # fmt: skip
    return sr
