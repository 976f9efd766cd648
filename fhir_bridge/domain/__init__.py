"""Pure domain types: FHIR model access, issues, outcomes and search requests."""
