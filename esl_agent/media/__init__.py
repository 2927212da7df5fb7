"""Media: the mod_audio_fork WebSocket endpoint, L16 audio helpers and playout accounting."""
