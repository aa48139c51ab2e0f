"""DICOMweb image URIs → the instance's bytes, from the listed servers only (WADO-RS, PS3.18).

One source of collectors.images.resolver's `ImageFetcher`: an http(s) URI is fetched only when
it lies under a listed base URL (scheme, host, port and path prefix), from an address checked
before connecting (no loopback, link-local or reserved address unless listed as such), without
following redirects, within one total deadline and a size cap. A PACS's own failure (a timeout,
a 5xx, a refused connection or credentials) is retried within the deadline and then raised as
a parkable `ResolveError`; a refusal names the rule, never the URI, nor which ports are open.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import random
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from collectors.errors import Reason, ResolveError
from collectors.images.byte_budget import Lease, read_capped

DICOM_MEDIA = "application/dicom"
# WADO-RS "Retrieve Instance" (PS3.18 §10.4.1): the instance as a multipart/related payload;
# transfer-syntax=* lets the PACS send it as stored, with no transcoding on its side.
_WADO_ACCEPT = f'multipart/related; type="{DICOM_MEDIA}"; transfer-syntax=*'
_DEFAULT_PORTS = {"http": 80, "https": 443}
# HTTP statuses that say the PACS (not the study) has a problem: retried, then parked.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Refused credentials are the deployment's problem: not retried, but parked (not lost).
_PARK_STATUSES = _RETRY_STATUSES | {401, 403}

# The refusal messages: one per rule, the same whether or not the port is open.
NOT_LISTED = "URL not under RADWATCH_DICOMWEB_URLS"
USERINFO = "URL carries credentials (set them in the DICOMweb auth settings instead)"
DOT_SEGMENT = "URL path has '.' or '..' segments"
SPECIAL_ADDRESS = "address is loopback, link-local or reserved and not listed as such"
REDIRECT = "PACS answered a redirect (HTTP {status}); redirects are not followed"


@dataclass(frozen=True)
class DicomWebAuth:
    """How to authenticate to the listed DICOMweb servers (secrets kept out of repr)."""

    token: str | None = field(default=None, repr=False)  # bearer token
    username: str | None = None  # basic auth (RFC 7617)
    password: str | None = field(default=None, repr=False)
    client_cert: str | None = None  # PEM file: mutual TLS
    client_key: str | None = None
    ca_bundle: str | None = None  # PEM file of the CAs to trust instead of the system's
    tls_verify: bool = True

    def header(self) -> str | None:
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None


@dataclass(frozen=True)
class BaseUrl:
    """One listed DICOMweb base: scheme, host and port must be equal, the path a prefix."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing '/'

    @classmethod
    def parse(cls, url: str) -> BaseUrl:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("RADWATCH_DICOMWEB_URLS entries must be http(s)://host[:port]/path")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("RADWATCH_DICOMWEB_URLS entries carry no credentials, query or #")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise ValueError("RADWATCH_DICOMWEB_URLS: a port is not a number") from exc
        return cls(scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))

    def literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


class DicomWebClient:
    """GETs instances from the listed DICOMweb servers; thread-safe (one SSL context, locked)."""

    def __init__(self, base_urls: tuple[BaseUrl, ...], auth: DicomWebAuth, *, timeout_s: float,
                 max_bytes: int, tries: int) -> None:  # fmt: skip
        self.base_urls, self.auth = base_urls, auth
        self.timeout_s, self.max_bytes, self.tries = timeout_s, max_bytes, tries
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()

    def fetch(self, uri: str, lease: Lease, *, accept: str = _WADO_ACCEPT) -> bytes:
        """The first part of the WADO-RS answer for `uri`; raises ResolveError. Another
        `accept` (a QIDO-RS search's `application/dicom+json`) returns the whole body."""
        parts = urllib.parse.urlsplit(uri)
        base = self._listed_base(parts)
        addresses = self._addresses(base)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        deadline = lease.deadline
        last: ResolveError | None = None
        for attempt in range(max(1, self.tries)):
            if attempt:
                # Full jitter on an exponential base (0.25 s, 0.5 s, …), inside the deadline.
                pause = random.uniform(0, 0.25 * 2**attempt)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            try:
                return self._get(base, addresses, target, deadline, lease, accept)
            except _Retry as exc:
                last = exc.error
            if time.monotonic() >= deadline:
                break
        assert last is not None
        raise last

    def _listed_base(self, parts: urllib.parse.SplitResult) -> BaseUrl:
        if parts.username is not None or parts.password is not None:
            raise ResolveError(Reason.IMAGE_FORBIDDEN, USERINFO)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise ResolveError(Reason.IMAGE_FORBIDDEN, NOT_LISTED) from exc
        # The server would normalise '..' away: /dicom-web/../admin is not under /dicom-web.
        segments = urllib.parse.unquote(parts.path).split("/")
        if any(s in (".", "..") for s in segments):
            raise ResolveError(Reason.IMAGE_FORBIDDEN, DOT_SEGMENT)
        for base in self.base_urls:
            if (base.scheme, base.host, base.port) != (scheme, host, port):
                continue
            if parts.path == base.path or parts.path.startswith(base.path + "/"):
                return base
        raise ResolveError(Reason.IMAGE_FORBIDDEN, NOT_LISTED)

    def _addresses(self, base: BaseUrl) -> list[tuple[Any, ...]]:
        """Addresses to connect to, each checked; the connection goes to these, not a name.

        A base listed by IP literal is that address whatever its class (the operator named
        it). A base listed by name may resolve to private addresses (a hospital PACS sits on
        the LAN) but not to loopback, link-local (cloud metadata), multicast, reserved or
        unspecified ones, unless the name is `localhost`; connecting to the checked address
        keeps a second DNS answer (rebinding) from redirecting the connection.
        """
        literal = base.literal()
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, (str(literal), base.port))]
        try:
            infos = socket.getaddrinfo(base.host, base.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ResolveError(
                Reason.IMAGE_HTTP_ERROR, "the PACS host name does not resolve", parkable=True
            ) from exc
        out = []
        for family, _, _, _, sockaddr in infos:
            if not address_allowed(base, str(sockaddr[0])):
                raise ResolveError(Reason.IMAGE_FORBIDDEN, SPECIAL_ADDRESS)
            out.append((family, sockaddr[:2]))
        if not out:
            raise ResolveError(Reason.IMAGE_HTTP_ERROR, "the PACS host name does not resolve")
        return out

    def _context(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl is None:
                auth = self.auth
                ctx = ssl.create_default_context(cafile=auth.ca_bundle)
                if not auth.tls_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                if auth.client_cert:
                    ctx.load_cert_chain(auth.client_cert, auth.client_key)
                self._ssl = ctx
            return self._ssl

    def _get(self, base: BaseUrl, addresses: list[tuple[Any, ...]], target: str,
             deadline: float, lease: Lease, accept: str = _WADO_ACCEPT) -> bytes:  # fmt: skip
        sock = self._connect(addresses, deadline)
        # The deadline is total, not per read: a watchdog shuts the socket down when it
        # passes, which ends any blocking read (a server trickling its headers or body one
        # byte at a time never trips a per-read timeout).
        held = [sock]  # the TLS wrapper replaces the socket object: the watchdog follows it
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (held,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if base.scheme == "https":
                sock = held[0] = self._context().wrap_socket(sock, server_hostname=base.host)
            conn = http.client.HTTPConnection(base.host, base.port)
            conn.sock = sock  # connected to the checked address: http.client never resolves
            conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            default = _DEFAULT_PORTS[base.scheme] == base.port
            conn.putheader("Host", base.host if default else f"{base.host}:{base.port}")
            conn.putheader("Accept", accept)
            header = self.auth.header()
            if header:
                conn.putheader("Authorization", header)
            conn.endheaders()
            response = conn.getresponse()
            body = self._body(response, sock, deadline, lease)
            if accept != _WADO_ACCEPT:
                return body
            return _first_part(body, response.getheader("Content-Type", ""))
        except ResolveError:
            raise
        except TimeoutError as exc:
            raise _timeout(self.timeout_s) from exc
        except ssl.SSLCertVerificationError as exc:
            raise ResolveError(
                Reason.IMAGE_HTTP_ERROR, "the PACS TLS certificate does not verify"
            ) from exc
        except (http.client.HTTPException, OSError) as exc:
            if time.monotonic() >= deadline:
                raise _timeout(self.timeout_s) from exc
            raise _Retry(ResolveError(Reason.IMAGE_HTTP_ERROR,
                                      f"PACS connection failed: {type(exc).__name__}",
                                      parkable=True)) from exc  # fmt: skip
        finally:
            watchdog.cancel()
            sock.close()

    def _connect(self, addresses: list[tuple[Any, ...]], deadline: float) -> socket.socket:
        failure: OSError | None = None
        for family, sockaddr in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(remaining)
            try:
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
        if failure is None or isinstance(failure, TimeoutError):
            raise _Retry(_timeout(self.timeout_s))
        # Refused, reset or unreachable: the same words for every case, so a dead letter
        # says nothing about which ports are open.
        raise _Retry(
            ResolveError(Reason.IMAGE_HTTP_ERROR, "cannot connect to the PACS", parkable=True)
        )

    def _body(self, response: http.client.HTTPResponse, sock: socket.socket, deadline: float,
              lease: Lease) -> bytes:  # fmt: skip
        status = response.status
        if 300 <= status < 400:
            # Never followed, and the Location is never repeated (it may be anywhere).
            raise ResolveError(Reason.IMAGE_FORBIDDEN, REDIRECT.format(status=status))
        if status != 200:
            error = ResolveError(Reason.IMAGE_HTTP_ERROR, f"PACS answered HTTP {status}",
                                 parkable=status in _PARK_STATUSES)  # fmt: skip
            raise _Retry(error) if status in _RETRY_STATUSES else error
        cap = self.max_bytes
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ResolveError(Reason.TOO_LARGE, f"response is over the {cap}-byte limit")
        lease.reserve(int(declared) if declared is not None and declared.isdigit() else cap)

        def read(n: int) -> bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(self.timeout_s)
            sock.settimeout(remaining)
            return response.read1(n)  # at most one recv: returns as bytes arrive

        body = read_capped(read, cap, "response")
        if time.monotonic() >= deadline:
            raise _timeout(self.timeout_s)  # the watchdog cut it: not a complete body
        return body


def address_allowed(base: BaseUrl, resolved: str) -> bool:
    """May a connection for `base` (listed by name) go to `resolved`? See `_addresses`."""
    address = ipaddress.ip_address(resolved.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    literal = base.literal()
    if literal is not None:
        return address == literal
    special = (address.is_loopback or address.is_link_local or address.is_multicast
               or address.is_reserved or address.is_unspecified)  # fmt: skip
    return not special or (base.host == "localhost" and address.is_loopback)


class _Retry(Exception):
    """A failure worth another try within the deadline (carries the error to raise after)."""

    def __init__(self, error: ResolveError) -> None:
        super().__init__(error.message)
        self.error = error


def _timeout(timeout_s: float) -> ResolveError:
    return ResolveError(
        Reason.IMAGE_TIMEOUT, f"PACS fetch not complete within {timeout_s:g} s", parkable=True
    )


def _shutdown(held: list[socket.socket]) -> None:
    # OSError: already closed, the fetch finished as the deadline passed.
    with contextlib.suppress(OSError):
        held[0].shutdown(socket.SHUT_RDWR)


def _first_part(body: bytes, content_type: str) -> bytes:
    """The first part of a multipart/related body (PS3.18 §8.6.1.2, RFC 2046 §5.1.1).

    Parsed by hand: the email package copies a large body several times over.
    """
    media = content_type.split(";")[0].strip().lower()
    if not media.startswith("multipart/"):
        if media in (DICOM_MEDIA, "application/octet-stream"):
            return body
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, f"PACS answered {media[:60]!r}, not DICOM")
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "multipart response has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    header_end = body.find(b"\r\n\r\n", start) if start >= 0 else -1
    if header_end < 0:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "multipart response holds no part")
    headers = body[start + len(delimiter) : header_end].decode("latin-1").lower()
    if "content-type:" in headers and DICOM_MEDIA not in headers:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "first multipart part is not application/dicom")
    end = body.find(b"\r\n" + delimiter, header_end + 4)
    if end < 0:
        raise ResolveError(
            Reason.IMAGE_HTTP_ERROR, "multipart response ends before its closing boundary"
        )
    return body[header_end + 4 : end]
