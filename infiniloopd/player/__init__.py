"""The player: a pure numpy mixer (`mixer`) and the audio thread that drives an output."""

from infiniloopd.player.engine import Player, PlayerStatus
from infiniloopd.player.mixer import Mixer

__all__ = ["Mixer", "Player", "PlayerStatus"]
