"""The simulator's DX objects as PS3.10 files in Explicit VR Little Endian, written directly.

Last step of a synthetic study (collectors.simulator.study.dicom_bytes): a flat mapping of
keywords to plain values (str, int, float, lists of them, bytes) becomes a Part 10 file. It
writes exactly the bytes `pydicom.dcmwrite(..., enforce_file_format=True)` writes for the same
Dataset (tests/collectors/simulator/test_render_identity.py compares them for studies of
every scenario), in a tenth of the time: building a Dataset and letting pydicom validate and
encode ~60 plain elements cost about 2 ms a study, a tenth of taking one through the
collector's path, and the statistical tests render tens of thousands. Only what the simulator
writes is supported (no sequences, no character sets beyond ASCII); anything else raises.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence

from pydicom import __version_info__ as pydicom_version
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

# PS3.5 §7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                       "UT", "UV"})  # fmt: skip
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})  # fmt: skip
# pydicom's own meta-information values, so the files stay those it would write.
IMPLEMENTATION_VERSION_NAME = f"PYDICOM {'.'.join(pydicom_version)}"


@functools.lru_cache(maxsize=256)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    vr = dictionary_VR(tag)
    if keyword == "PixelData":
        vr = "OW"  # "OB or OW": OW for BitsAllocated > 8 (PS3.5 §8.2), as pydicom resolves it
    return tag, vr


def _text(vr: str, value: object) -> str:
    if vr == "DS" and isinstance(value, float):
        text = repr(value)  # pydicom's DSfloat prints a float as its repr
        if len(text) > 16:  # PS3.5 Table 6.2-1: pydicom would reject it too
            raise ValueError(f"DS value {text} is longer than 16 characters")
        return text
    if vr == "IS" and isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"no {vr} encoding for {value!r}")


def _value(vr: str, value: object) -> bytes:
    if vr in ("OB", "OW"):
        if not isinstance(value, bytes):
            raise TypeError(f"{vr} needs bytes, got {type(value).__name__}")
        return value
    values: Sequence[object] = value if isinstance(value, list | tuple) else [value]
    if vr == "US":
        return struct.pack(f"<{len(values)}H", *values)
    if vr == "UL":
        return struct.pack(f"<{len(values)}I", *values)
    if vr in _TEXT_VRS:
        return "\\".join(_text(vr, v) for v in values).encode("ascii")
    raise TypeError(f"VR {vr} is not supported here")


def element(tag: int, vr: str, value: object) -> bytes:
    """One data element (PS3.5 §7.1.2), its value padded to even length (PS3.5 §6.2)."""
    data = _value(vr, value)
    if len(data) % 2:
        data += b"\0" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + struct.pack("<HI", 0, len(data)) + data
    return head + struct.pack("<H", len(data)) + data


def part10(attributes: Mapping[str, object], sop_class: str, sop_instance: str) -> bytes:
    """A PS3.10 file: preamble, "DICM", the meta group (PS3.10 §7.1), then `attributes`
    (keyword → value) in ascending tag order."""
    meta = b"".join([
        element(0x00020001, "OB", b"\x00\x01"),
        element(0x00020002, "UI", sop_class),
        element(0x00020003, "UI", sop_instance),
        element(0x00020010, "UI", str(ExplicitVRLittleEndian)),
        element(0x00020012, "UI", str(PYDICOM_IMPLEMENTATION_UID)),
        element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME),
    ])  # fmt: skip
    body = sorted((*_tag_and_vr(keyword), value) for keyword, value in attributes.items())
    return b"".join([
        b"\0" * 128, b"DICM", element(0x00020000, "UL", len(meta)), meta,
        *(element(tag, vr, value) for tag, vr, value in body),
    ])  # fmt: skip
