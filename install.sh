#!/usr/bin/env bash
# Set up infiniloop on Debian 12 / Ubuntu: system packages, a virtualenv in ./.venv with
# the package installed (editable), and `infiniloopd` / `infiniloopctl` on PATH.
#
#   ./install.sh           what the daemon needs
#   ./install.sh --test    plus what the test suite needs (PipeWire, dbus, systemd tools)
#
# Safe to run again: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

with_test=0
for arg in "$@"; do
    case "$arg" in
        --test) with_test=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# Runtime: Python with venv and headers (pyalsaaudio compiles), ALSA and its PulseAudio
# plugin, the PulseAudio client tools, libsndfile, FluidSynth and two GM SoundFonts,
# Rubber Band's command-line tool (tempo matching at transitions, through pyrubberband).
packages=(python3 python3-venv python3-dev gcc libasound2-dev libasound2-plugins alsa-utils
          libpulse0 pulseaudio-utils libsndfile1 libfluidsynth3 fluid-soundfont-gm
          timgm6mb-soundfont rubberband-cli)
if [ "$with_test" = 1 ]; then
    # Real sound servers for the tests, systemd-analyze for the unit, load for benchmarks.
    packages+=(pulseaudio pipewire pipewire-pulse wireplumber dbus dbus-daemon systemd
               sox stress-ng procps)
    # Real clients for the network outputs: ffmpeg/ffprobe decode the HTTP stream,
    # snapserver + snapclient carry the Snapcast output.
    packages+=(ffmpeg snapserver snapclient)
    # Real clients for the frontends: playerctl (MPRIS over D-Bus) and mpc (MPD).
    packages+=(playerctl mpc)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "install.sh: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "install.sh: creating the virtualenv .venv"
    python3 -m venv .venv
fi
extra=""
[ "$with_test" = 1 ] && extra="[test]"
echo "install.sh: installing infiniloop${extra} into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}"

# Put the two commands on PATH.
if [ "$(id -u)" = 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; fi
mkdir -p "$bindir"
for cmd in infiniloopd infiniloopctl; do
    ln -sf "$PWD/.venv/bin/$cmd" "$bindir/$cmd"
done
# The .desktop file media widgets look up for the MPRIS name and icon.
if [ "$(id -u)" = 0 ]; then appdir=/usr/local/share/applications
else appdir="${XDG_DATA_HOME:-$HOME/.local/share}/applications"; fi
mkdir -p "$appdir"
install -m 644 packaging/infiniloop.desktop "$appdir/infiniloop.desktop"
echo "install.sh: done; $bindir/infiniloopd and $bindir/infiniloopctl are ready"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "install.sh: note: add $bindir to your PATH";; esac
