"""Sending formatted events: syslog (RFC 5424 over TCP with octet counting, RFC 6587; TLS, RFC 5425), webhooks
(signed NDJSON batches) and files (NDJSON lines, rotated by size). Each raises ``DeliveryFailed`` when the
receiver did not take the batch."""

from __future__ import annotations

import fcntl
import os
import socket
import ssl
import sys
import termios
from pathlib import Path
from urllib.parse import urlsplit

from ..delivery import webhook
from ..delivery.webhook import DeliveryFailed
from ..record.enums import Status

APP_NAME = "audit_portal"
#: Our structured-data id (32473 is the enterprise number RFC 5612 reserves for documentation and examples).
SD_ID = "audit_portal@32473"
TRUNCATED = "…[truncated: the event had {size} bytes, more than STREAM_SYSLOG_MAX_BYTES]"
#: RFC 5424 severity per status and error severity: 2 critical, 3 error, 4 warning, 5 notice, 6 informational.
_SYSLOG_SEVERITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4}
FACILITY_LOG_AUDIT = 13
_HOSTNAME = (socket.gethostname() or "-").encode("ascii", "replace").decode()[:255].replace(" ", "-")


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(log, body: str, max_bytes: int) -> bytes:
    """One RFC 5424 message for ``log`` carrying ``body``, framed by octet counting (``LEN SP MSG``). A message
    over ``max_bytes`` has its body cut, with a marker that says so."""
    if log.status == Status.ERROR.value:
        severity = _SYSLOG_SEVERITY.get(log.severity or "ERROR", 3)
    else:
        severity = 5 if log.status == Status.FAILURE.value else 6
    timestamp = log.timestamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (f"<{FACILITY_LOG_AUDIT * 8 + severity}>1 {timestamp} {_HOSTNAME} {APP_NAME} - {log.action_type[:32]} "
              f'[{SD_ID} event_id="{_sd_value(log.event_id)}" category="{_sd_value(log.category)}"] ').encode()
    payload = body.encode()
    if len(header) + len(payload) > max_bytes:
        marker = TRUNCATED.format(size=len(header) + len(payload)).encode()
        room = max(0, max_bytes - len(header) - len(marker))
        payload = payload[:room].decode("utf-8", "ignore").encode() + marker
    message = header + payload
    return str(len(message)).encode() + b" " + message


class SyslogSender:
    """One TCP (or TLS) connection to a syslog receiver, opened on first use and after an error.

    Bytes handed to the kernel may still be unacknowledged by the receiver's host: ``unacknowledged()`` tells
    (Linux's SIOCOUTQ), and the dispatcher keeps its resend point until it is 0. A receiver whose host stops
    answering fails the connection after ``timeout`` seconds of unacknowledged data (TCP_USER_TIMEOUT), instead
    of the kernel retransmitting for many minutes while sends still succeed."""

    def __init__(self, url: str, ca_file: str | None = None, timeout: float = 10):
        parts = urlsplit(url)
        self.url, self.host, self.port, self.tls = url, parts.hostname, parts.port, parts.scheme == "tls"
        self.ca_file, self.timeout = ca_file, timeout
        self._socket: socket.socket | None = None

    def unacknowledged(self) -> int:
        """Bytes sent on the connection that the receiver's host has not acknowledged (0 without a connection;
        -1 where the platform cannot tell, which the dispatcher treats as "maybe")."""
        if self._socket is None:
            return 0
        try:
            buffer = fcntl.ioctl(self._socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return -1
        return int.from_bytes(buffer, sys.byteorder, signed=True)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.timeout * 1000))
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_file or None)
            sock = context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def send(self, messages: list[bytes]) -> None:
        try:
            if self._socket is None:
                self._socket = self._connect()
            self._socket.sendall(b"".join(messages))
        except OSError as exc:
            self.close()
            raise DeliveryFailed(f"{self.url}: {exc}") from None

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


def send_webhook(url: str, lines: list[str], *, secret: str, delivery_id: str, headers: dict,
                 ca_file: str | None = None) -> None:
    body = ("\n".join(lines) + "\n").encode()
    webhook.post(url, body, secret=secret, delivery_id=delivery_id, headers=headers, ca_file=ca_file)


def append_lines(path: Path, lines: list[str], rotate_bytes: int, keep: int = 5) -> None:
    """Append ``lines`` to ``path`` (one NDJSON line each) durably; when the file passes ``rotate_bytes`` it
    becomes ``path.1`` (older ones move up to ``path.<keep>``, the oldest is dropped) and a new file starts."""
    data = "".join(line + "\n" for line in lines).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size + len(data) > rotate_bytes and path.stat().st_size:
            for i in range(keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{i + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise DeliveryFailed(f"{path}: {exc}") from None
