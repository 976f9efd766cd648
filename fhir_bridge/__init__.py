"""fhir-bridge: a FHIR R4 research interoperability service for psychiatric clinical trials."""

__version__ = "0.1.0"
