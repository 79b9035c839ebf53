"""Real parts for tests, the demo and the benchmarks: a Mosquitto broker on a free port,
pty-backed serial ports, and an HTTP fake of the booking platform (PROTOCOL.md §5).

Nothing here is needed on a site's Raspberry Pi or on a production hub.
"""
