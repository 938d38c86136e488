"""Real receivers on loopback for the stream tests: an rsyslog instance of the test's own (Debian's package) and
an HTTP server that records webhook deliveries; either over TLS with a test CA's certificate."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

RSYSLOGD = "/usr/sbin/rsyslogd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerCertificate:
    """PEM files of a test CA and of a certificate it issued for 127.0.0.1 and localhost (by trustme)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def issue(cls, directory: Path, ca: trustme.CA | None = None) -> ServerCertificate:
        directory.mkdir(parents=True, exist_ok=True)
        ca = ca or trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        paths = cls(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
        ca.cert_pem.write_to_path(str(paths.ca))
        issued.cert_chain_pems[0].write_to_path(str(paths.cert))
        issued.private_key_pem.write_to_path(str(paths.key))
        return paths

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class Rsyslog:
    """``rsyslogd -n -f CONF -i PIDFILE`` with its own work directory, listening on a loopback TCP port (octet
    counting accepted) and writing each message it receives, as received, to one line of ``received``."""

    def __init__(self, directory: Path, tls: ServerCertificate | None = None):
        self.directory, self.port, self.tls = directory, free_port(), tls
        self.received = directory / "received.log"
        self.conf, self.pidfile, work = directory / "rsyslog.conf", directory / "rsyslogd.pid", directory / "work"
        work.mkdir(parents=True, exist_ok=True)
        if tls is None:
            driver, tcp = "", 'module(load="imtcp")'
        else:  # RFC 5425: TLS by rsyslog-gnutls, server authentication only (clients need no certificate)
            driver = (f' defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{tls.ca}"'
                      f' defaultNetstreamDriverCertFile="{tls.cert}" defaultNetstreamDriverKeyFile="{tls.key}"')
            tcp = 'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")'
        self.conf.write_text(f'''
global(workDirectory="{work}" maxMessageSize="256k"{driver})
{tcp}
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="audit") {{
  action(type="omfile" file="{self.received}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{self.port}" ruleset="audit")
''')
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        self.process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {self.process.stderr.read().decode()[:2000]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not start listening")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye (what a crash does)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def messages(self) -> list[str]:
        return self.received.read_text(encoding="utf-8").splitlines() if self.received.exists() else []


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers and body) and answers with ``status()``."""

    def __init__(self, tls: ServerCertificate | None = None, port: int = 0):
        self.requests: list[dict] = []
        self.tls = tls
        self.answer = 200
        self.max_lines: int | None = None  #: answer 413 to a batch of more lines than this
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answer
                if receiver.max_lines is not None and body.count(b"\n") > receiver.max_lines:
                    status = 413  # Payload Too Large, as nginx's client_max_body_size answers
                receiver.requests.append({"headers": dict(self.headers), "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:
            self.server.socket = tls.server_context().wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[dict]:
        return [r for r in self.requests if 200 <= r["status"] < 300]

    def events(self) -> list[dict]:
        return [json.loads(line) for r in self.accepted() for line in r["body"].decode().splitlines()]
