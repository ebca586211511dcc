"""Several outputs at once: the `outputs:` config, and the fan-out under stalls and failures.

The local output (a real-time WAV file, or a real PulseAudio stream) must get every
sample whatever the others do: a network output that fails, a snapserver that does
not read, a sound server that is frozen (SIGSTOP) in the middle of a write. And when
the local one freezes, the others keep getting audio in real time.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest
import soundfile

from infiniloopd.config import ConfigError, parse_config
from infiniloopd.outputs import build_output, output_states
from infiniloopd.outputs.fanout import FanoutOutput
from infiniloopd.outputs.file import FileOutput
from infiniloopd.outputs.http import HttpOutput
from infiniloopd.outputs.pulse import PulseOutput
from infiniloopd.outputs.snapcast import SnapcastOutput
from infiniloopd.player import Player
from tests.audio_checks import assert_tiles, first_sound, noise_loop
from tests.audio_servers import RATE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- configuration ---------------------------------------------------------------------


def test_outputs_list_builds_a_fanout_and_one_entry_the_direct_path(tmp_path):
    port = free_port()
    cfg = parse_config(
        {
            "output": {"block_ms": 10, "rate": 48000},
            "outputs": [
                {"backend": "file", "path": str(tmp_path / "a.wav")},
                {"backend": "http", "listen": f"127.0.0.1:{port}", "formats": ["mp3"]},
                {"backend": "snapcast", "path": "tcp://127.0.0.1:4953"},
            ],
        }
    )
    assert [o.backend for o in cfg.outputs] == ["file", "http", "snapcast"]
    assert cfg.outputs[1].formats == ["mp3"] and cfg.outputs[2].block_ms == 10
    out = build_output(cfg)
    assert isinstance(out, FanoutOutput)
    http, snap = out.outputs[1], out.outputs[2]
    assert isinstance(http, HttpOutput) and (http.port, http.formats) == (port, ("mp3",))
    assert isinstance(snap, SnapcastOutput) and snap.target == "tcp://127.0.0.1:4953"
    assert not http.pace and not snap.pace  # the fan-out delivers in real time

    one = parse_config({"outputs": [{"backend": "file", "path": str(tmp_path / "b.wav")}]})
    assert isinstance(build_output(one), FileOutput)  # no extra thread, no extra latency
    single = parse_config({"output": {"backend": "file", "path": str(tmp_path / "c.wav")}})
    assert single.outputs is None and isinstance(build_output(single), FileOutput)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([], "outputs: expected a list of outputs"),
        ("pulse", "outputs: expected a list of outputs"),
        ([{"sink": "x"}], "outputs[0].backend: expected one of"),
        ([{"backend": "pulse"}, {"backend": "http", "rate": 44100}], "outputs[1].rate: set it"),
        ([{"backend": "snapcast"}], "outputs[0].path: expected a snapserver pipe path"),
        ([{"backend": "http", "formats": ["ogg"]}], "outputs[0].formats: expected a list of"),
        ([{"backend": "http", "formats": []}], "outputs[0].formats: expected a list of"),
        ([{"backend": "pulse", "speed": 2}], "outputs[0].speed: unknown key"),
    ],
)
def test_outputs_errors_name_the_entry_and_key(outputs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"outputs": outputs}, "x.yaml")


# --- the fan-out ---------------------------------------------------------------------


def play(outputs, loop: np.ndarray) -> tuple[Player, FanoutOutput]:
    fan = FanoutOutput(outputs)
    player = Player(fan, rate=RATE, channels=2, volume=1.0)
    player.start()
    player.play_loop("noise", loop, 0.0)
    return player, fan


def test_local_file_gets_every_sample_while_network_outputs_fail_or_are_not_read(tmp_path):
    local = tmp_path / "local.wav"
    fifo = tmp_path / "snapfifo"
    os.mkfifo(fifo)  # a snapserver pipe that nobody reads
    loop = noise_loop(0.5, seed=3)
    outputs = [
        FileOutput(local, realtime=True),
        SnapcastOutput(str(fifo), pace=False),
        SnapcastOutput(f"tcp://127.0.0.1:{free_port()}", pace=False),  # no snapserver there
        HttpOutput(f"127.0.0.1:{free_port()}", formats=("mp3",), pace=False),
    ]
    player, fan = play(outputs, loop)
    started = time.monotonic()
    try:
        # A listener that never reads, on the HTTP output.
        stalled = socket.create_connection((outputs[3].host, outputs[3].port))
        stalled.sendall(b"GET /stream.mp3 HTTP/1.0\r\n\r\n")
        time.sleep(4.0)
        states = {s.description.split(":")[0] + str(i): s for i, s in enumerate(fan.states())}
        elapsed = time.monotonic() - started
    finally:
        player.close()
        stalled.close()
    data, _ = soundfile.read(local, dtype="float32", always_2d=True)
    # Every sample, in order, and paced by the clock: neither rushed nor held up.
    assert_tiles(data, loop, first_sound(data), 5)
    assert 0.8 * elapsed * RATE < data.shape[0] < 1.2 * elapsed * RATE
    file_state, pipe_state, tcp_state, http_state = states.values()
    assert (file_state.state, file_state.underruns) == ("ok", 0)
    assert pipe_state.state == "ok" and pipe_state.underruns > 0  # not read: dropped
    assert tcp_state.state == "failed" and "cannot connect" in tcp_state.error
    assert http_state.state == "ok"


@pytest.mark.pulse
def test_a_frozen_secondary_sound_server_never_holds_up_the_local_output(pulse_server, tmp_path):
    local = tmp_path / "local.wav"
    loop = noise_loop(0.5, seed=4)
    frozen = PulseOutput(server=pulse_server.server, latency_ms=100)
    player, fan = play([FileOutput(local, realtime=True), frozen], loop)
    try:
        time.sleep(2.5)  # let the pulse stream play steadily first
        pulse_server.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3.0)
            during = fan.states()[1]
        finally:
            pulse_server.proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        after = fan.states()[1]
    finally:
        player.close()
    data, _ = soundfile.read(local, dtype="float32", always_2d=True)
    assert_tiles(data, loop, first_sound(data), 11)  # 6.5 s of audio, no gap, no repeat
    assert during.state == "stalled"
    assert after.underruns > 0  # its own stall was counted, on its own


@pytest.mark.pulse
def test_a_frozen_local_server_lets_the_others_go_on_in_real_time(pulse_server, tmp_path):
    other = tmp_path / "other.wav"
    loop = noise_loop(0.5, seed=5)
    local = PulseOutput(server=pulse_server.server, latency_ms=200)
    sink = FileOutput(other, realtime=False)  # takes whatever the fan-out hands it
    player, fan = play([local, sink], loop)
    try:
        time.sleep(3.0)
        before = soundfile.info(other).frames
        pulse_server.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3.0)
            during = soundfile.info(other).frames - before
            local_state = fan.states()[0].state
        finally:
            pulse_server.proc.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        states = output_states(fan, player.status())
    finally:
        player.close()
    # Three seconds of a frozen local server: the other output still got (nearly) three
    # seconds of audio, not the few hundred ms the local buffer would have allowed.
    assert during > 2.0 * RATE, f"only {during / RATE:.2f} s reached the other output"
    assert local_state == "stalled"
    assert [s["state"] for s in states] == ["ok", "ok"]  # the local one came back
    data, _ = soundfile.read(other, dtype="float32", always_2d=True)
    assert_tiles(data, loop, first_sound(data), 10)  # the stream itself has no gap
