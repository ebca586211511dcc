"""The core: playing state, settings and their persistence, behind typed methods.

Frontends (the ZeroMQ control socket, MPRIS, MPD, the schedule) translate between
their protocol and `Session`; they hold no logic of their own.
"""
