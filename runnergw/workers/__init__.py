"""Several gateway processes on one machine (``server.workers``): a supervisor that holds
the listening socket and the service manager's side, and the workers that serve on it."""
