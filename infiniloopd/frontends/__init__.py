"""Frontends: ways into the core Session (control socket, MPRIS, MPD).

A frontend is a class taking `(session, config_section)` with `async start()` and
`async close()`; it translates between its protocol and the Session's methods and
events, and holds no logic of its own. Import-light: the client imports
`frontends.zmq.commands`.
"""
