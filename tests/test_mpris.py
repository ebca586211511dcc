"""MPRIS2: the real daemon on a private `dbus-daemon --session`, driven by real playerctl."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

import pytest

from tests.daemon_proc import Daemon, base_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("dbus-daemon") and shutil.which("playerctl")),
        reason="needs dbus-daemon and playerctl (install.sh --test)",
    ),
]

PLAYER = "infiniloop"


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    """A private session bus; its address, as DBUS_SESSION_BUS_ADDRESS."""
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--print-address", "--nofork"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def daemon(bus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mpris")
    cfg = base_config(root / "out.wav")
    cfg["playback"]["min_play"] = 3600.0  # no automatic switch: changes come from the test
    d = Daemon(root, cfg)
    d.env["DBUS_SESSION_BUS_ADDRESS"] = bus
    try:
        d.start()
        wait_for(lambda: playerctl(d, "status").returncode == 0, "the MPRIS name", d)
        yield d
    finally:
        d.stop()
        d.close()


def playerctl(d: Daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["playerctl", "-p", PLAYER, *args],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=15,
    )


def out(d: Daemon, *args: str) -> str:
    r = playerctl(d, *args)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout.strip()


def trackid(d: Daemon) -> str:
    return out(d, "metadata", "mpris:trackid").strip("'")  # playerctl quotes object paths


def wait_for(pred, what: str, d: Daemon, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{d.log()[-3000:]}")


def dbus_get(d: Daemon, iface: str, prop: str) -> str:
    r = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            f"--dest=org.mpris.MediaPlayer2.{PLAYER}",
            "/org/mpris/MediaPlayer2",
            "org.freedesktop.DBus.Properties.Get",
            f"string:{iface}",
            f"string:{prop}",
        ],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_identity_and_flags(daemon):
    root = "org.mpris.MediaPlayer2"
    assert 'string "infiniloop"' in dbus_get(daemon, root, "Identity")
    assert 'string "infiniloop"' in dbus_get(daemon, root, "DesktopEntry")
    for prop, value in (("CanQuit", "false"), ("CanRaise", "false"), ("HasTrackList", "false")):
        assert f"boolean {value}" in dbus_get(daemon, root, prop), prop
    player = root + ".Player"
    flags = {
        "CanGoNext": "true",
        "CanGoPrevious": "false",
        "CanPlay": "true",
        "CanPause": "true",
        "CanSeek": "false",
        "CanControl": "true",
    }
    for prop, value in flags.items():
        assert f"boolean {value}" in dbus_get(daemon, player, prop), prop
    assert "double 1" in dbus_get(daemon, player, "Rate")


def test_status_and_metadata_match_the_daemon(daemon):
    daemon.ok("play")
    assert wait_for(lambda: out(daemon, "status") == "Playing", "Playing", daemon)
    st = daemon.status()
    loop = st["loop"]
    assert out(daemon, "metadata", "xesam:title") == loop["prompt"]
    assert out(daemon, "metadata", "xesam:artist") == "synth"
    path = trackid(daemon)
    assert path.startswith("/org/mpris/MediaPlayer2/infiniloop/loop/")
    assert all(c.isalnum() or c in "_/" for c in path)
    length = int(out(daemon, "metadata", "mpris:length"))
    assert abs(length - loop["seconds"] * 1e6) < 1e5
    assert int(out(daemon, "metadata", "xesam:audioBPM")) == round(loop["bpm"])
    position = float(out(daemon, "position"))
    assert 0 <= position <= loop["seconds"] + 0.5


def test_play_pause_toggles_the_daemon(daemon):
    daemon.ok("play")
    out(daemon, "play-pause")
    assert daemon.wait_status(lambda s: s["state"] == "paused", 10, "paused")
    assert out(daemon, "status") == "Paused"
    out(daemon, "play-pause")
    assert daemon.wait_status(lambda s: s["state"] == "playing", 10, "playing")
    out(daemon, "stop")
    assert daemon.wait_status(lambda s: s["state"] == "stopped", 10, "stopped")
    assert out(daemon, "status") == "Stopped"
    out(daemon, "play")
    assert daemon.wait_status(lambda s: s["state"] == "playing", 10, "playing")


def test_volume_both_ways(daemon):
    out(daemon, "volume", "0.35")
    assert daemon.wait_status(lambda s: s["volume"] == 35, 10, "volume 35")["volume"] == 35
    daemon.ok("volume", "62")
    assert wait_for(lambda: out(daemon, "volume") == "0.620000", "volume 0.62", daemon)
    out(daemon, "volume", "1.7")  # above 1.0 is capped at 100 %
    assert daemon.wait_status(lambda s: s["volume"] == 100, 10, "volume 100")["volume"] == 100
    daemon.ok("volume", "80")


def test_next_switches_the_loop(daemon):
    daemon.ok("play")
    before = trackid(daemon)
    daemon.wait_status(lambda s: s["queue"] >= 1, 60, "a ready loop")
    out(daemon, "next")
    after = wait_for(
        lambda: (t := trackid(daemon)) != before and t,
        "a new trackid",
        daemon,
    )
    assert after.endswith(daemon.status()["loop"]["id"].replace("-", "_"))
    # playerctl honours CanGoPrevious=false; the method itself is a no-op, not an error.
    assert playerctl(daemon, "previous").returncode != 0
    r = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            f"--dest=org.mpris.MediaPlayer2.{PLAYER}",
            "/org/mpris/MediaPlayer2",
            "org.mpris.MediaPlayer2.Player.Previous",
        ],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert r.returncode == 0, r.stderr
    assert trackid(daemon) == after


def test_properties_changed_reach_followers(daemon):
    """`playerctl --follow` lives on PropertiesChanged; it must see pause, play and volume."""
    daemon.ok("play")
    follow = subprocess.Popen(
        ["playerctl", "-p", PLAYER, "--follow", "status"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    monitor = subprocess.Popen(
        [
            "dbus-monitor",
            "--session",
            "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
        ],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout.readline().strip() == "Playing"  # the current value first
        time.sleep(0.5)  # dbus-monitor's match rule in place
        daemon.ok("pause")
        assert follow.stdout.readline().strip() == "Paused"
        daemon.ok("play")
        assert follow.stdout.readline().strip() == "Playing"
        daemon.ok("volume", "44")
        seen = ""
        deadline = time.monotonic() + 10
        while "double 0.44" not in seen and time.monotonic() < deadline:
            seen += monitor.stdout.readline()
        assert '"PlaybackStatus"' in seen
        assert "double 0.44" in seen
    finally:
        for proc in (follow, monitor):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        daemon.ok("volume", "80")


def test_no_bus_is_one_warning_and_the_daemon_plays(tmp_path):
    d = Daemon(tmp_path)
    d.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-bus-here"
    d.env.pop("DISPLAY", None)
    try:
        d.start()
        assert d.status()["state"] == "playing"
        warnings = [line for line in d.log().splitlines() if "mpris" in line.lower()]
        assert len(warnings) == 1, warnings
        assert "no D-Bus session bus" in warnings[0]
    finally:
        d.stop()
        d.close()


def test_track_ids_are_object_paths():
    from infiniloopd.frontends.mpris import NO_TRACK, metadata, track_id

    assert track_id(None) == NO_TRACK == "/org/mpris/MediaPlayer2/TrackList/NoTrack"
    assert track_id("20261203-040324-2d61bd") == (
        "/org/mpris/MediaPlayer2/infiniloop/loop/20261203_040324_2d61bd"
    )
    assert track_id("é/..") == "/org/mpris/MediaPlayer2/infiniloop/loop/____"
    meta = metadata({"loop": None})
    assert list(meta) == ["mpris:trackid"] and meta["mpris:trackid"].value == NO_TRACK
    meta = metadata(
        {
            "loop": {"id": "a-1", "prompt": "rain", "bpm": 91.6, "seconds": 7.25},
            "generator": {"backend": "musicgpt", "model": "small"},
        }
    )
    assert meta["xesam:title"].value == "rain"
    assert meta["xesam:artist"].value == ["musicgpt (small)"]
    assert (meta["mpris:length"].signature, meta["mpris:length"].value) == ("x", 7250000)
    assert meta["xesam:audioBPM"].value == 92
