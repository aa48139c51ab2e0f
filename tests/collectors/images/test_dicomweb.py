"""DICOMweb through the fenced fetcher (collectors.images.dicomweb), against real servers.

Orthanc (Debian package, with its DICOMweb plugin) is started on free ports, once without and
once with HTTP basic authentication; objects are stored through POST /instances and fetched
back with WADO-RS Retrieve Instance (PS3.18 §10.4.1). Misbehaving PACS stand-ins (silent,
trickling, down, 5xx, oversized, redirecting) bound every failure; the SSRF attempts run
against a TCP listener that counts connections: it must see none.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest
from images_support import bundled, fence, refused
from pacs_servers import (
    Orthanc,
    orthanc,
    recording_listener,
    scripted_server,
    stalling_server,
)
from support import free_port

from collectors.errors import Reason
from collectors.images.dicom_reader import read_dicom_bytes
from collectors.images.dicomweb import (
    DOT_SEGMENT,
    NOT_LISTED,
    REDIRECT,
    USERINFO,
    BaseUrl,
    DicomWebAuth,
    address_allowed,
)
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels

USER = ("radwatch", "s3cret-pacs-password")


def _generated() -> bytes:
    plan = plan_study(5, 0)
    return dicom_bytes(plan, stored_pixels(plan))


# -- DICOMweb that works ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "generated"]
)
def test_wado_rs_gives_the_same_image_as_the_file(pacs: Orthanc, source: str) -> None:
    raw = _generated() if source == "generated" else bundled(source)
    url = pacs.upload(raw)
    fetched = fence(urls=[pacs.dicomweb]).load(url, size=64)
    local = read_dicom_bytes(raw, 64)
    np.testing.assert_array_equal(fetched.pixels, local.pixels)
    assert fetched.tags == local.tags


def test_wado_rs_unknown_instance_is_a_permanent_http_error(pacs: Orthanc) -> None:
    error = refused(fence(urls=[pacs.dicomweb]), pacs.wado_url("1.2.3", "1.2.3.4", "1.2.3.4.5"))
    assert error.reason == Reason.IMAGE_HTTP_ERROR and not error.parkable
    assert "404" in error.message
    assert "1.2.3.4.5" not in error.message  # the URI (identifiers) is never repeated


def test_orthanc_with_basic_auth(tmp_path: Path) -> None:
    with orthanc(tmp_path, user=USER) as server:
        url = server.upload(bundled("CT_small.dcm"))
        anonymous = refused(fence(urls=[server.dicomweb]), url)
        assert anonymous.reason == Reason.IMAGE_HTTP_ERROR and "401" in anonymous.message
        assert anonymous.parkable  # refused credentials delay studies; they do not lose them
        wrong = fence(urls=[server.dicomweb], auth=DicomWebAuth(username=USER[0], password="x"))
        assert "401" in refused(wrong, url).message
        right = fence(urls=[server.dicomweb],
                      auth=DicomWebAuth(username=USER[0], password=USER[1]))  # fmt: skip
        assert right.fetch(url).data[128:132] == b"DICM"


def test_auth_headers_and_secrets_out_of_repr() -> None:
    assert DicomWebAuth(token="tok").header() == "Bearer tok"
    basic = DicomWebAuth(username="u", password="p")
    assert basic.header() == "Basic " + base64.b64encode(b"u:p").decode()
    assert DicomWebAuth().header() is None
    assert "tok" not in repr(DicomWebAuth(token="tok")) and "p'" not in repr(basic)


# -- PACS failures: bounded, retried, parkable ------------------------------------------------


def test_a_pacs_that_never_answers_times_out_within_the_deadline() -> None:
    with stalling_server() as base:
        started = time.monotonic()
        error = refused(fence(urls=[base], timeout_s=0.5), f"{base}/studies/1/series/2/instances/3")
        elapsed = time.monotonic() - started
    assert error.reason == Reason.IMAGE_TIMEOUT and error.parkable
    assert elapsed < 2.0  # the deadline is total: retries do not add to it


def test_a_trickling_pacs_is_cut_at_the_deadline() -> None:
    # Headers then a body one byte every 50 ms: each read succeeds, the fetch must still end.
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\nContent-Length: 100000"
              b"\r\n\r\n" + b"\x00" * 100_000)  # fmt: skip
    with scripted_server(answer, trickle_s=0.05) as base:
        started = time.monotonic()
        error = refused(fence(urls=[base], timeout_s=1.0), f"{base}/instances/1")
        elapsed = time.monotonic() - started
    assert error.reason == Reason.IMAGE_TIMEOUT and error.parkable
    assert 0.9 < elapsed < 2.5


def test_a_pacs_that_is_down_is_retried_then_parkable() -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    error = refused(fence(urls=[base], timeout_s=3.0), f"{base}/instances/1")
    assert error.reason == Reason.IMAGE_HTTP_ERROR and error.parkable
    assert error.message == "cannot connect to the PACS"  # the same words for any closed port


def test_5xx_is_retried_with_backoff_then_parkable() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with scripted_server(answer) as base:
        error = refused(fence(urls=[base], timeout_s=3.0, tries=3), f"{base}/instances/1")
    assert error.reason == Reason.IMAGE_HTTP_ERROR and error.parkable and "503" in error.message


def test_response_size_cap_with_and_without_content_length() -> None:
    declared = b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\nContent-Length: 5000\r\n\r\n"
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"\x00" * 0x800 + b"\r\n0\r\n\r\n")  # fmt: skip
    for answer in (declared + b"\x00" * 5000, chunked):
        with scripted_server(answer) as base:
            error = refused(fence(urls=[base], max_bytes=1000), f"{base}/instances/1")
        assert error.reason == Reason.TOO_LARGE and not error.parkable


# -- SSRF: nothing outside the listed URLs is ever connected to -------------------------------


def test_unlisted_hosts_ports_schemes_and_paths_are_never_connected_to() -> None:
    with recording_listener() as canary, scripted_server(b"HTTP/1.1 200 OK\r\n\r\n") as listed:
        port = canary.port
        fetcher = fence(urls=[f"{listed}/dicom-web"], timeout_s=2)
        listed_port = int(listed.rsplit(":", 1)[1])
        attempts = {
            f"http://127.0.0.1:{port}/dicom-web/x": NOT_LISTED,  # an unlisted port
            f"http://localhost:{port}/dicom-web/x": NOT_LISTED,
            f"http://[::1]:{port}/dicom-web/x": NOT_LISTED,
            f"http://127.1:{port}/dicom-web/x": NOT_LISTED,
            f"https://127.0.0.1:{listed_port}/dicom-web/x": NOT_LISTED,  # another scheme
            f"{listed}/other/x": NOT_LISTED,  # outside the listed path
            f"{listed}/dicom-webx": NOT_LISTED,  # a prefix is a path segment, not a string
            f"{listed}/dicom-web/../admin": DOT_SEGMENT,
            f"{listed}/dicom-web/%2e%2e/admin": DOT_SEGMENT,
            f"http://user:pw@127.0.0.1:{listed_port}/dicom-web/x": USERINFO,
            "http://10.0.0.1/dicom-web/x": NOT_LISTED,  # private
            "http://169.254.169.254/latest/meta-data": NOT_LISTED,  # link-local (metadata)
            f"http://127.0.0.1:{listed_port}:{port}/dicom-web/x": NOT_LISTED,  # malformed
        }
        for uri, message in attempts.items():
            error = refused(fetcher, uri)
            assert (error.reason, error.message) == (Reason.IMAGE_FORBIDDEN, message), uri
            assert str(port) not in error.message
        time.sleep(0.3)  # let the canary's accept loop see any late connection
        assert canary.connections == 0


def test_redirects_are_refused_without_following_or_naming_them() -> None:
    with recording_listener() as canary:
        target = f"http://127.0.0.1:{canary.port}/secret"
        for status in (301, 302, 303, 307, 308):
            answer = (f"HTTP/1.1 {status} Moved\r\nLocation: {target}\r\nContent-Length: 0"
                      "\r\n\r\n").encode()  # fmt: skip
            with scripted_server(answer) as base:
                error = refused(fence(urls=[base]), f"{base}/instances/1")
            assert error.reason == Reason.IMAGE_FORBIDDEN and not error.parkable
            assert error.message == REDIRECT.format(status=status)
            assert "secret" not in error.message and str(canary.port) not in error.message
        time.sleep(0.3)
        assert canary.connections == 0


def test_special_addresses_for_names_and_literals() -> None:
    named = BaseUrl.parse("https://pacs.hospital.example/dicom-web")
    assert address_allowed(named, "10.1.2.3")  # the PACS on the hospital LAN
    assert address_allowed(named, "192.168.7.7")
    for special in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1",
                    "0.0.0.0", "224.0.0.1", "240.0.0.1"):  # fmt: skip
        assert not address_allowed(named, special), special
    assert address_allowed(BaseUrl.parse("http://localhost:8042/dicom-web"), "127.0.0.1")
    literal = BaseUrl.parse("http://127.0.0.1:8042/dicom-web")
    assert address_allowed(literal, "127.0.0.1") and not address_allowed(literal, "10.0.0.1")
