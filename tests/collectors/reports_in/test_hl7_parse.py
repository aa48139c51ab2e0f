"""HL7 v2 ORU^R01 → ReportMessage (collectors.reports_in.hl7_oru) and the ACKs built for it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_messages import BIRTH_DATE, MARKERS, MRN, TEXT_MARKER, oru

from collectors.reports_in import (
    AckCode,
    Hl7Limits,
    ReportError,
    ReportMessage,
    ReportReason,
    ResultStatus,
    ack_code_for,
    build_ack,
    error_code_for,
    parse_oru,
    read_header,
)


def test_final_report_gives_accession_status_text_times_and_control_id() -> None:
    (report,) = parse_oru(oru(["FINDINGS: Small nodule.", "IMPRESSION: No effusion."]))
    assert report.accession == "ACC-1001"
    assert report.status is ResultStatus.FINAL
    assert report.text == "FINDINGS: Small nodule.\nIMPRESSION: No effusion."
    assert report.control_id == "MSG0001"
    # OBR-22 with its offset, read as UTC; OBR-7 without one, read as UTC.
    assert report.reported_at == datetime(2026, 11, 1, 9, 15, tzinfo=UTC)
    assert report.observed_at == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def test_nothing_identifying_but_the_accession_is_kept_and_repr_shows_neither() -> None:
    (report,) = parse_oru(oru())
    kept = " ".join(str(v) for v in vars(report).values())
    assert MRN not in kept and BIRTH_DATE not in kept and "Zyxwvut" not in kept
    shown = repr(report)
    assert all(marker not in shown for marker in MARKERS) and "ACC-1001" not in shown


@pytest.mark.parametrize(("code", "status"), [("F", ResultStatus.FINAL),
                         ("C", ResultStatus.CORRECTED), ("P", ResultStatus.PRELIMINARY),
                         ("A", ResultStatus.PRELIMINARY), ("R", ResultStatus.PRELIMINARY)])  # fmt: skip
def test_result_status_from_obr_25(code: str, status: ResultStatus) -> None:
    assert parse_oru(oru(status=code))[0].status is status


@pytest.mark.parametrize("code", ["X", "I", "O", "Q", ""])
def test_unusable_status_is_refused(code: str) -> None:
    with pytest.raises(ReportError) as info:
        parse_oru(oru(status=code))
    assert info.value.reason is ReportReason.UNUSABLE_STATUS


@pytest.mark.parametrize("field", [2, 18])
def test_accession_location_is_configurable(field: int) -> None:
    message = oru(accession="SITE-ACC-7", accession_field=field)
    assert parse_oru(message, accession_field=f"OBR-{field}")[0].accession == "SITE-ACC-7"
    assert parse_oru(message)[0].accession != "SITE-ACC-7"  # OBR-3 holds something else


def test_accession_component_and_escapes() -> None:
    message = oru(accession="RIS\\T\\7^ISSUER")
    assert parse_oru(message)[0].accession == "RIS&7"
    assert parse_oru(message, accession_field="OBR-3.2")[0].accession == "ISSUER"
    with pytest.raises(ValueError):
        parse_oru(message, accession_field="PID-3")


def test_ft_escapes_and_line_breaks_st_values_and_non_text_obx_ignored() -> None:
    ft = parse_oru(
        oru("Line one\\.br\\Heart \\T\\ lungs: \\H\\clear\\N\\ \\F\\ ok", value_type="FT")
    )
    assert ft[0].text == "Line one\nHeart & lungs: clear | ok"
    assert parse_oru(oru("Short value", value_type="ST"))[0].text == "Short value"
    with pytest.raises(ReportError) as info:
        parse_oru(oru("12.5", value_type="NM"))
    assert info.value.reason is ReportReason.NO_REPORT_TEXT


def test_lf_segment_separators_are_accepted() -> None:
    assert parse_oru(oru().replace(b"\r", b"\r\n"))[0].accession == "ACC-1001"
    assert parse_oru(oru().replace(b"\r", b"\n"))[0].accession == "ACC-1001"


def test_two_orders_share_one_dictation() -> None:
    second = "OBR|2||ACC-1002|74177^CT ABD^CPT" + "|" * 21 + "F"
    reports = parse_oru(oru(extra_obr=second))
    assert [r.accession for r in reports] == ["ACC-1001", "ACC-1002"]
    assert reports[0].text == reports[1].text and TEXT_MARKER in reports[1].text


@pytest.mark.parametrize(("message", "reason"), [
    (b"", ReportReason.NOT_HL7),
    (b"PID|1||x", ReportReason.NOT_HL7),
    (b"MSHabcdefgh", ReportReason.NOT_HL7),
    (oru(message_type="ADT^A01"), ReportReason.UNSUPPORTED_MESSAGE),
    (oru(accession=""), ReportReason.NO_ACCESSION),
    (oru().split(b"OBR|")[0], ReportReason.NO_ORDER),
    (oru("\\.br\\"), ReportReason.NO_REPORT_TEXT),
    (oru("caf\xe9".encode("latin-1").decode("latin-1")).replace("é".encode(), b"\xe9"),
     ReportReason.BAD_ENCODING),
    (oru("a\x00b"), ReportReason.BAD_ENCODING),
])  # fmt: skip
def test_refusals_have_their_reason(message: bytes, reason: ReportReason) -> None:
    with pytest.raises(ReportError) as info:
        parse_oru(message)
    assert info.value.reason is reason
    # Fixed text: no report text, accession or PID value in the message.
    assert all(m not in str(info.value) for m in MARKERS) and "ACC-1001" not in str(info.value)


def test_latin1_declared_in_msh_18_is_read() -> None:
    message = oru("Caf\xe9 nodule").replace("é".encode(), b"\xe9")
    message = message.replace(b"|P|2.5", b"|P|2.5||||||8859/1", 1)
    assert parse_oru(message)[0].text == "Caf\xe9 nodule"


def test_limits_bound_size_segments_and_text() -> None:
    with pytest.raises(ReportError) as info:
        parse_oru(oru("x" * 5000), limits=Hl7Limits(max_bytes=4000))
    assert info.value.reason is ReportReason.TOO_LARGE
    with pytest.raises(ReportError) as info:
        parse_oru(oru(["line"] * 50), limits=Hl7Limits(max_segments=20))
    assert info.value.reason is ReportReason.TOO_MANY_SEGMENTS
    with pytest.raises(ReportError) as info:
        parse_oru(oru(["y" * 60] * 10), limits=Hl7Limits(max_text_chars=300))
    assert info.value.reason is ReportReason.TOO_LARGE


def test_ack_accept_echoes_control_id_and_swaps_sender_and_receiver() -> None:
    ack = build_ack(read_header(oru()), AckCode.ACCEPT).decode()
    msh, msa = ack.rstrip("\r").split("\r")
    fields = msh.split("|")
    assert fields[2:6] == ["RADWATCH", "NORTH", "RIS", "NORTH"]
    assert fields[8] == "ACK^R01^ACK" and fields[10:12] == ["P", "2.5"]
    assert msa == "MSA|AA|MSG0001"


def test_ack_error_has_an_err_segment_with_code_location_and_reason() -> None:
    error = ReportError(ReportReason.NO_ACCESSION, "OBR-3.1 (the accession) is empty")
    code = ack_code_for(error.reason)
    ack = build_ack(read_header(oru(accession="")), code, error_code=error_code_for(error.reason),
                    user_message=f"{error.reason}: {error.message}",
                    error_location=("OBR", "1", "3")).decode()  # fmt: skip
    segments = ack.rstrip("\r").split("\r")
    assert segments[1] == "MSA|AE|MSG0001"
    err = segments[2].split("|")
    assert (
        err[0] == "ERR" and err[2] == "OBR^1^3" and err[3] == "101^Required field missing^HL70357"
    )
    assert err[4] == "E" and err[8].startswith("no_accession: OBR-3.1")
    assert ack_code_for(ReportReason.UNSUPPORTED_MESSAGE) is AckCode.REJECT
    assert ack_code_for(ReportReason.NO_REPORT_TEXT) is AckCode.ERROR


def test_ack_without_any_header_still_parses() -> None:
    ack = build_ack(read_header(b"garbage"), AckCode.REJECT, user_message="not_hl7: x|y^z")
    assert ack.startswith(b"MSH|^~\\&|") and b"\rMSA|AR|\r" in ack
    assert b"not_hl7: x y z" in ack


_HL7ISH = st.lists(st.sampled_from([
    b"MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5", b"OBR|1||ACC|", b"OBR|1||ACC" + b"|" * 22 + b"F",
    b"OBX|1|TX|||text||||||F", b"OBX|1|FT|||\\.br\\\\X41\\\\Zx\\|", b"PID|1||M", b"\r", b"\n",
    b"|", b"^", b"~", b"\\", b"&", b"\x00", b"\xff", b"OBX|1|TX|||a~b^c&d", b"\x0b", b"\x1c",
]), max_size=30).map(b"".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), _HL7ISH,
                 st.binary(max_size=200).map(lambda b: b"MSH|^~\\&|" + b)))  # fmt: skip
def test_any_bytes_give_a_report_or_a_typed_error(data: bytes) -> None:
    try:
        reports = parse_oru(data)
    except ReportError as exc:
        assert isinstance(exc.reason, ReportReason) and "\n" not in exc.message
    else:
        assert reports and all(isinstance(r, ReportMessage) and r.accession for r in reports)
    header = read_header(data)
    ack = build_ack(header, AckCode.ERROR, user_message="x")
    assert ack.count(b"\r") == 3 and b"\x1c" not in ack and b"\x0b" not in ack


def test_huge_and_deep_inputs_are_bounded() -> None:
    # Just under the size cap, all separators: refused before the library splits it.
    wide = b"MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5\rOBR|1||" + b"^&~" * 340_000
    started = time.perf_counter()
    with pytest.raises(ReportError) as info:
        parse_oru(wide)
    assert info.value.reason is ReportReason.TOO_LARGE and time.perf_counter() - started < 1.0
    # The most structure the limits let through costs the parser well under a second.
    dense = oru(["a^b&c~d"] * 1000)
    started = time.perf_counter()
    parse_oru(dense)
    assert time.perf_counter() - started < 2.0
    many = oru().rstrip(b"\r") + b"\rNTE|1" * 5000
    with pytest.raises(ReportError) as info:
        parse_oru(many)
    assert info.value.reason is ReportReason.TOO_MANY_SEGMENTS
