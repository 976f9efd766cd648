"""The HTTP edge: FastAPI app, routing, content negotiation, OperationOutcome errors."""
