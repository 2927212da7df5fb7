"""Simulators: FreeSWITCH (event socket + audio fork) and loopback provider servers."""
