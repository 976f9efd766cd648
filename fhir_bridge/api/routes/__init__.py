"""Route modules; each handler reads its parameters and calls one service."""
