"""The registry of SMART Backend Services clients and the assertion ids they have used, in SQL.

A client is registered with its role, site and public keys (an inline JWKS or a JWKS URL);
revoking keeps the row, so the audit trail still names it. `auth_jti` holds each accepted
assertion's `jti` until the assertion expires: a second use is a replay.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_bridge.store.base import StoreSession

_COLUMNS = "id, name, role, site, jwks, jwks_url, created, revoked"


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: str
    name: str
    role: str
    site: str | None
    jwks: str | None  # the JWKS as JSON text
    jwks_url: str | None
    created: float
    revoked: float | None


def insert_client(session: StoreSession, client: ClientRow) -> None:
    session.execute(
        f"INSERT INTO auth_clients ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            client.id,
            client.name,
            client.role,
            client.site,
            client.jwks,
            client.jwks_url,
            client.created,
            client.revoked,
        ),
    )


def read_client(session: StoreSession, client_id: str) -> ClientRow | None:
    rows = session.execute(f"SELECT {_COLUMNS} FROM auth_clients WHERE id = ?", (client_id,))
    return _client(rows[0]) if rows else None


def list_clients(session: StoreSession) -> list[ClientRow]:
    rows = session.execute(f"SELECT {_COLUMNS} FROM auth_clients ORDER BY created, id")
    return [_client(row) for row in rows]


def revoke_client(session: StoreSession, client_id: str, now: float) -> bool:
    """Revoke a client; False when there is no such client or it was revoked already."""
    client = read_client(session, client_id)
    if client is None or client.revoked is not None:
        return False
    session.execute("UPDATE auth_clients SET revoked = ? WHERE id = ?", (now, client_id))
    return True


def use_jti(session: StoreSession, client_id: str, jti: str, expires: float, now: float) -> bool:
    """Record an assertion id; False when the client used it before (a replay). Ids of
    assertions that expired are forgotten: an expired assertion is refused anyway."""
    session.execute("DELETE FROM auth_jti WHERE expires < ?", (now,))
    seen = session.execute(
        "SELECT 1 FROM auth_jti WHERE client_id = ? AND jti = ?", (client_id, jti)
    )
    if seen:
        return False
    session.execute(
        "INSERT INTO auth_jti (client_id, jti, expires) VALUES (?, ?, ?)", (client_id, jti, expires)
    )
    return True


def _client(row: tuple[object, ...]) -> ClientRow:
    return ClientRow(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        None if row[3] is None else str(row[3]),
        None if row[4] is None else str(row[4]),
        None if row[5] is None else str(row[5]),
        float(row[6]),  # type: ignore[arg-type]
        None if row[7] is None else float(row[7]),  # type: ignore[arg-type]
    )
