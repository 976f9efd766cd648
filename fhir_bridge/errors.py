"""The one exception hierarchy of fhir-bridge; every error carries OperationOutcome issues.

```
FHIRBridgeError                 carries issues: list[Issue(severity, code, diagnostics, expression)]
├── InvalidRequestError         400  invalid, structure, required, value, not-supported
│   └── PayloadTooLargeError    413  too-costly
├── AuthenticationError         401  login
│   ├── ForbiddenError          403  forbidden
│   └── OAuthError              400/401 at the token endpoint: an OAuth 2.0 error body
├── ResourceNotFoundError       404  not-found
├── MethodNotAllowedError       405  not-supported
├── NotAcceptableError          406  not-supported
├── VersionConflictError        409  conflict
├── ResourceGoneError           410  deleted
├── PreconditionFailedError     412  conflict, multiple-matches
├── UnsupportedMediaTypeError   415  not-supported
├── UnprocessableResourceError  422  invariant, business-rule, code-invalid
├── TooManyRequestsError        429  throttled (carries retry_after seconds)
├── MappingError                422  expression names file, row, column
│   └── MappingSpecError             a bad file in mappings/: startup fails
└── StoreError                  500  exception (driver errors wrapped inside store/)
    └── StatementTimeoutError   503  timeout (a statement ran past the statement timeout)
```

HTTP statuses live in `api/handlers.py`; exit codes in `cli.py`. Neither FastAPI nor SQL here.
"""

from __future__ import annotations

from fhir_bridge.domain.issues import Issue


class FHIRBridgeError(Exception):
    """Base of all fhir-bridge errors; `issues` become the OperationOutcome."""

    default_code = "exception"

    def __init__(
        self,
        diagnostics: str = "",
        *,
        expression: str | None = None,
        code: str | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        if issues is None:
            issues = [Issue("error", code or self.default_code, diagnostics, expression)]
        self.issues = issues
        super().__init__(diagnostics or "; ".join(i.diagnostics for i in issues))


class InvalidRequestError(FHIRBridgeError):
    default_code = "invalid"


class PayloadTooLargeError(InvalidRequestError):
    default_code = "too-costly"


class AuthenticationError(FHIRBridgeError):
    default_code = "login"


class ForbiddenError(AuthenticationError):
    default_code = "forbidden"


class OAuthError(AuthenticationError):
    """A refused token request; the token endpoint answers the OAuth 2.0 error body
    (RFC 6749 section 5.2): `error` is its code, invalid_client is a 401, the others 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400


class ResourceNotFoundError(FHIRBridgeError):
    default_code = "not-found"


class MethodNotAllowedError(FHIRBridgeError):
    default_code = "not-supported"


class NotAcceptableError(FHIRBridgeError):
    default_code = "not-supported"


class VersionConflictError(FHIRBridgeError):
    default_code = "conflict"


class ResourceGoneError(FHIRBridgeError):
    default_code = "deleted"


class PreconditionFailedError(FHIRBridgeError):
    default_code = "conflict"


class UnsupportedMediaTypeError(FHIRBridgeError):
    default_code = "not-supported"


class UnprocessableResourceError(FHIRBridgeError):
    default_code = "processing"


class TooManyRequestsError(FHIRBridgeError):
    """A bounded resource (e.g. concurrent export jobs) is used up; try after `retry_after` s."""

    default_code = "throttled"

    def __init__(self, diagnostics: str, *, retry_after: int) -> None:
        super().__init__(diagnostics)
        self.retry_after = retry_after


class MappingError(FHIRBridgeError):
    default_code = "invalid"


class MappingSpecError(MappingError):
    """A file in mappings/ is malformed; raised at startup."""


class StoreError(FHIRBridgeError):
    default_code = "exception"


class StatementTimeoutError(StoreError):
    """The database cancelled a statement that ran past the statement timeout."""

    default_code = "timeout"
