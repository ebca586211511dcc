#!/usr/bin/env python3
"""A stand-in for MusicGPT's UI-mode server: the same WebSocket protocol and file route.

    fake_musicgpt_server.py --root DIR [--port 0] [--gen-seconds 0.5] [--steps 4] [MODE...]

It behaves as the real server does (gabotechs/MusicGPT, src/backend): on connect it
greets with ``{"Info": {"model", "device"}}`` and ``{"Chats": []}``; it runs
GenerateAudio requests one at a time from a FIFO queue and broadcasts
``{"Generation": {"Start" | "Progress" | "Result" | "Error": ...}}`` to every connected
client; the clip (32 kHz mono float WAV, extensible format, real musical content) is
then at ``GET /files/audios/<id>.wav``; a message it cannot parse (``"secs": 8.0``) is
answered ``{"Error": "..."}`` to its sender only; AbortGeneration ends the running job
with Error "Aborted", and, like the real queue, then also drops the job queued behind
it, and removes a queued job without any answer. With --old-protocol it speaks the
release before chats: an ``Init`` greeting and unwrapped Progress/Result/Error.

Modes (failures a real server shows):
  --error MSG          every job fails with this error after its first progress step
  --hang               a job starts, reports one step, then nothing ever again
  --disconnect-after N drops every client connection (no close frame) at step N
  --refuse             answers the WebSocket upgrade with HTTP 503
  --missing-file       the result names a file that is not there (HTTP 404)
  --silent             the clip is all zeros

It prints ``LISTENING <port>`` once it accepts connections, binds 127.0.0.1 only, and
serves every text message it received as JSON at ``GET /_stand-in/received``.
`start()` runs it as a subprocess with sys.executable, for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

RATE = 32000
DEFAULT_MODEL = "MusicGen Small"


@dataclass
class Job:
    id: str
    chat_id: str
    prompt: str
    secs: int
    aborted: bool = False


class StandIn:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.root)
        self.clients: set = set()
        self.queue: list[Job] = []
        self.wake = asyncio.Event()
        self.received: list[str] = []

    # --- the HTTP side ----------------------------------------------------------------

    def process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = request.path.split("?", 1)[0]
        if path == "/_stand-in/received":
            body = json.dumps(self.received).encode()
            headers = Headers({"Content-Type": "application/json"})
            headers["Content-Length"] = str(len(body))
            return Response(200, "OK", headers, body)
        if path.startswith("/files/"):
            target = (self.root / path[len("/files/") :]).resolve()
            if self.root.resolve() not in target.parents or not target.is_file():
                return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
            body = target.read_bytes()
            headers = Headers({"Content-Type": "audio/x-wav"})
            headers["Content-Length"] = str(len(body))
            return Response(200, "OK", headers, body)
        if path == "/ws" and self.args.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")
        if path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    # --- the WebSocket side -----------------------------------------------------------

    async def handler(self, ws) -> None:
        old = self.args.old_protocol
        greeting = {"model": self.args.model, "device": self.args.device}
        await ws.send(json.dumps({"Init" if old else "Info": greeting}))
        if not old:
            await ws.send(json.dumps({"Chats": []}))
        self.clients.add(ws)
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", "replace")
                self.received.append(raw)
                error = self.inbound(raw)
                if error is not None:
                    if old:
                        return  # the old handler ended the connection on a bad message
                    await ws.send(json.dumps({"Error": error}))
        except Exception:  # a dropped client; the real server just ends its handler
            pass
        finally:
            self.clients.discard(ws)

    def inbound(self, raw: str) -> str | None:
        """Handle one client message; a serde-like error text when it cannot be parsed."""
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            return f"expected value at line 1 column {exc.colno}"
        variants = ("GenerateAudioNewChat", "GenerateAudio", "AbortGeneration")
        if not isinstance(msg, dict) or len(msg) != 1:
            return "invalid type: expected enum InboundMsg"
        ((kind, body),) = msg.items()
        if kind not in (*variants, "GetChat", "SetChatMetadata", "DelChat"):
            return f"unknown variant `{kind}`, expected one of `{'`, `'.join(variants)}`"
        if not isinstance(body, dict):
            return f"invalid type: expected struct for {kind}"
        for key in ("id", "chat_id"):
            if kind in variants:
                try:
                    uuid.UUID(str(body.get(key)))
                except ValueError:
                    return f"{key}: UUID parsing failed"
        if kind in ("GenerateAudio", "GenerateAudioNewChat"):
            secs = body.get("secs")
            if isinstance(secs, float):
                return f"invalid type: floating point `{secs}`, expected usize"
            if not isinstance(secs, int) or isinstance(secs, bool) or secs < 0:
                return f"invalid value: `{secs}`, expected usize"
            if not isinstance(body.get("prompt"), str):
                return "missing field `prompt`"
            self.queue.append(Job(body["id"], body["chat_id"], body["prompt"], secs))
            self.wake.set()
        elif kind == "AbortGeneration":
            for i, job in enumerate(self.queue):
                if job.id == body["id"] and job.chat_id == body["chat_id"]:
                    job.aborted = True
                    del self.queue[i]
                    break
        return None

    async def broadcast(self, event: str, **data) -> None:
        msg = {event: data} if self.args.old_protocol else {"Generation": {event: data}}
        text = json.dumps(msg)
        for ws in list(self.clients):
            try:
                await ws.send(text)
            except Exception:  # a client gone in between
                self.clients.discard(ws)

    # --- the job queue ----------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            job = self.queue[0]
            ids = {"id": job.id, "chat_id": job.chat_id}
            if not self.args.old_protocol:
                await self.broadcast("Start", **ids, prompt=job.prompt, secs=job.secs)
            await self.run(job, ids)
            # As the real backend does: pop the front, even when the running job was
            # aborted (and so already removed), which drops the one queued behind it.
            if self.queue:
                self.queue.pop(0)

    async def run(self, job: Job, ids: dict) -> None:
        args = self.args
        steps = max(1, args.steps)
        for step in range(1, steps + 1):
            await asyncio.sleep(args.gen_seconds / steps)
            if job.aborted:
                await self.broadcast("Error", **ids, error="Aborted")
                return
            await self.broadcast("Progress", **ids, progress=step / steps)
            if args.hang:
                await asyncio.Event().wait()  # a stuck GPU: forever, answering nothing
            if args.error is not None:
                await self.broadcast("Error", **ids, error=args.error)
                return
            if args.disconnect_after and step >= args.disconnect_after:
                for ws in list(self.clients):
                    ws.transport.abort()
                self.clients.clear()
                return
        relpath = f"audios/{job.id}.wav"
        if not args.missing_file:
            await asyncio.to_thread(self.write_clip, job, self.root / relpath)
        await self.broadcast("Result", **ids, relpath=relpath)

    def write_clip(self, job: Job, path: Path) -> None:
        import numpy as np
        import soundfile as sf

        from tests.fake_musicgpt import music

        audio = music(job.prompt, max(1, job.secs), np.random.default_rng())
        if self.args.silent:
            audio[:] = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        sf.write(str(tmp), audio, RATE, subtype="FLOAT", format="WAVEX")
        tmp.replace(path)

    async def main(self) -> None:
        from websockets.asyncio.server import serve

        self.root.mkdir(parents=True, exist_ok=True)
        async with serve(
            self.handler,
            "127.0.0.1",
            self.args.port,
            process_request=self.process_request,
            max_size=2**20,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            print(f"LISTENING {port}", flush=True)
            await self.worker()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="its storage: audios/ is written here")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--gen-seconds", type=float, default=0.4, help="wall time per clip")
    p.add_argument("--steps", type=int, default=4, help="progress messages per clip")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="Cpu")
    p.add_argument("--old-protocol", action="store_true")
    p.add_argument("--error")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--disconnect-after", type=int, default=0)
    p.add_argument("--refuse", action="store_true")
    p.add_argument("--missing-file", action="store_true")
    p.add_argument("--silent", action="store_true")
    return p.parse_args(argv)


class Proc:
    """A running stand-in: its port, its /ws URL, what it received; stop() ends it."""

    def __init__(self, proc: subprocess.Popen, port: int, root: Path) -> None:
        self.proc = proc
        self.port = port
        self.root = root
        self.url = f"ws://127.0.0.1:{port}/ws"

    def received(self) -> list[str]:
        import urllib.request

        url = f"http://127.0.0.1:{self.port}/_stand-in/received"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start(root: Path, *flags: str, timeout: float = 20.0) -> Proc:
    """Run the stand-in with `flags` in a subprocess; returns once it listens."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--root", str(root), *flags],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the MusicGPT stand-in did not start within {timeout:g} s")
        line = proc.stdout.readline()
    finally:
        sel.close()
    if not line.startswith("LISTENING "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the MusicGPT stand-in did not start: {line!r}")
    return Proc(proc, int(line.split()[1]), root)


def free_port() -> int:
    """A port nothing listens on (for 'a server that is not there')."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    # Run as a script: make `tests.fake_musicgpt` (the stand-in's music) importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(StandIn(parse_args(sys.argv[1:])).main())
