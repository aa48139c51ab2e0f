"""MLLP framing (HL7 v2.5 Appendix C, Minimal Lower Layer Protocol, Release 2): bytes on a TCP
stream ↔ whole HL7 messages.

Between the listener's socket (monitor/ingest/report_listener.py) and the ORU parser
(collectors.reports_in.hl7_oru). A block is <VT> message <FS><CR> (0x0B ... 0x1C 0x0D).
`MllpDecoder` is fed whatever `recv` returned and hands back complete messages; bytes
between blocks and blocks over the size cap are refused with a reason, and the decoder
resynchronises on the next <VT>, so one bad block never wedges a connection. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.reports_in.errors import ReportError, ReportReason

START_BLOCK = b"\x0b"  # <VT>
END_BLOCK = b"\x1c\x0d"  # <FS><CR>
DEFAULT_MAX_FRAME_BYTES = 1_048_576


def frame(message: bytes) -> bytes:
    """One HL7 message as an MLLP block; refuses content that would end the block early."""
    if START_BLOCK in message or b"\x1c" in message:
        raise ReportError(ReportReason.BAD_FRAMING, "message contains an MLLP control byte")
    return START_BLOCK + message + END_BLOCK


@dataclass(frozen=True)
class Frame:
    """A complete block's content, or the refusal of one (too large, junk outside blocks)."""

    content: bytes | None
    error: ReportError | None = None
    size: int = 0  # bytes the block (or the junk) occupied on the wire


class MllpDecoder:
    """Incremental MLLP block reader with a size cap; `feed(chunk)` → finished frames."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._in_block = False
        self._skipping = False  # inside an oversized block: dropping bytes to its end
        self._skipped = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        out: list[Frame] = []
        data = bytes(chunk)
        while data:
            if not self._in_block:
                start = data.find(START_BLOCK)
                junk = data if start < 0 else data[:start]
                # Whitespace between blocks is common (a stray <LF> after <FS><CR>): tolerated.
                if junk.strip(b"\r\n \t"):
                    out.append(Frame(None, ReportError(ReportReason.BAD_FRAMING,
                                                       "bytes outside an MLLP block"),
                                     len(junk)))  # fmt: skip
                if start < 0:
                    return out
                data = data[start + 1 :]
                self._in_block, self._buffer, self._skipping, self._skipped = (
                    True,
                    bytearray(),
                    False,
                    0,
                )
                continue
            end = data.find(b"\x1c")
            body, rest = (data, b"") if end < 0 else (data[:end], data[end:])
            if self._skipping:
                self._skipped += len(body)
            else:
                self._buffer += body
                if len(self._buffer) > self.max_frame_bytes:
                    # Stop buffering at once: the cap bounds memory, not only what is parsed.
                    self._skipping, self._skipped = True, len(self._buffer)
                    self._buffer = bytearray()
            if end < 0:
                return out
            # <FS> ends the block; the <CR> after it is expected but not required (senders
            # that omit it still mean the end; the next byte is then left for the next block).
            data = rest[2:] if rest[1:2] == b"\r" else rest[1:]
            self._in_block = False
            if self._skipping:
                out.append(Frame(None, ReportError(ReportReason.TOO_LARGE,
                                                   f"MLLP block over {self.max_frame_bytes} bytes"),
                                 self._skipped))  # fmt: skip
            else:
                out.append(Frame(bytes(self._buffer), None, len(self._buffer)))
            self._buffer, self._skipping, self._skipped = bytearray(), False, 0
        return out

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished block held in memory (bounded by max_frame_bytes)."""
        return len(self._buffer)
