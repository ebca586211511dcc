"""A private snapserver for tests and benchmarks: one source, 127.0.0.1 ports, JSON-RPC."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from tests.audio_servers import _stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SnapServer:
    """A private snapserver: one source, its ports on 127.0.0.1, its JSON-RPC."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = root
        self.stream_port, self.rpc_port, self.http_port = free_port(), free_port(), free_port()
        self.log_path = root / "snapserver.log"
        conf = root / "snapserver.conf"
        conf.write_text(
            f"[server]\ndatadir = {root}\n"
            f"[http]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {self.http_port}\n"
            f"[tcp]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {self.rpc_port}\n"
            f"[stream]\nbind_to_address = 127.0.0.1\nport = {self.stream_port}\n"
            f"source = {source}\n"
            "[logging]\nsink = stderr\n"
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["snapserver", "-c", str(conf)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.rpc("Server.GetRPCVersion")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"snapserver did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def rpc(self, method: str, params: dict | None = None) -> dict:
        """Send one request and return its reply.

        The server also pushes notifications (a stream's status, a client joining)
        on the same connection, before or after the reply, sometimes in the same
        read: every line is parsed on its own and the one with our id is the reply.
        """
        with socket.create_connection(("127.0.0.1", self.rpc_port), timeout=3) as sock:
            request = {"id": 1, "jsonrpc": "2.0", "method": method}
            if params is not None:
                request["params"] = params
            sock.sendall(json.dumps(request).encode() + b"\r\n")
            pending = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(
                        f"snapserver closed the connection before answering {method}"
                    )
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if message.get("id") == 1:
                        return message

    def stream_status(self, name: str = "infiniloop") -> str | None:
        streams = self.rpc("Server.GetStatus")["result"]["server"]["streams"]
        return next((s["status"] for s in streams if s["id"] == name), None)

    def wait_status(self, wanted: str, timeout: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout
        status = self.stream_status()
        while status != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.stream_status()
        return status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop_process(self.proc)
