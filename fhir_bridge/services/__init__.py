"""Use cases: one module per thing a client asks of the service."""
