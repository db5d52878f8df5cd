"""Running under systemd: the notify protocol (readiness, reload, stop, status, watchdog)."""
