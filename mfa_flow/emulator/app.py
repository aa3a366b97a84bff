"""The emulator as an ASGI application (Starlette): routing, HTTP Basic auth, JSON in and out.

Every answer, success or error, carries ``status_code`` and a fresh ``request_id``; error bodies carry all
five fields of Stytch's error body, so the official SDK parses each one as it parses Stytch's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfa_flow.clock import Clock
from mfa_flow.emulator.service import CLOCK_ADVANCE, PRIMARY_AUTH, Emulator
from mfa_flow.errors import MfaError, error_body
from mfa_flow.files import Fixtures, load_fixtures, load_policy_file
from mfa_flow.policy import Policy
from mfa_flow.stores import AsyncStore, Store
from mfa_flow.wire import (
    AUTHENTICATE,
    DELETE_MFA_PHONE_NUMBER,
    GET_MEMBER,
    GET_ORGANIZATION,
    GET_SESSIONS,
    REVOKE_SESSION,
    SEND,
    parse_body,
)
from mfa_flow.wire import new_request_id as _request_id

__all__ = ["create_app"]

logger = logging.getLogger("mfa_flow.emulator")

Handler = Callable[[Request], Awaitable[dict[str, Any] | list[Any]]]


def create_app(*, project_id: str, secret: str, fixtures: str | Path | Mapping[str, Any] | Fixtures,
               policy: Policy | str | Path | None = None, clock: Clock | None = None, test_endpoints: bool = False,
               store: Store | AsyncStore | None = None, secret_key: bytes | None = None) -> Starlette:
    """The emulator as an ASGI app, for ``mfa-flow serve`` or to embed in a test process.

    ``fixtures``: a JSON or TOML file, or the already parsed mapping ``{"organizations": [...], "members":
    [...]}``. ``policy``: a ``Policy`` or a policy file (its ``[[organizations]]`` and ``[[members]]`` join the
    fixtures). ``store`` defaults to memory; a durable one needs ``secret_key``. ``app.state.emulator`` is
    the :class:`Emulator` (its flow, clock and message log).
    """
    records = fixtures if isinstance(fixtures, Fixtures) else load_fixtures(fixtures)
    if isinstance(policy, str | Path):
        policy_file = load_policy_file(policy, fixtures=records)
        records, policy = policy_file.fixtures, policy_file.policy
    emulator = Emulator(project_id=project_id, secret=secret, fixtures=records, policy=policy, clock=clock,
                        test_endpoints=test_endpoints, store=store, secret_key=secret_key)
    app = Starlette(routes=_routes(emulator), lifespan=_lifespan(emulator),
                    exception_handlers={HTTPException: _http_error})
    app.state.emulator = emulator
    return app


def _routes(emulator: Emulator) -> list[Route]:
    def stytch(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not emulator.authorized(request.headers.get("authorization")):
                return _error(401, "unauthorized_credentials", "the project_id and secret (HTTP Basic) do not "
                                                               "match this project", _request_id())
            return await _answer(handler, request)

        return endpoint

    def test_only(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await _answer(handler, request)

        return endpoint

    async def send(request: Request) -> dict[str, Any]:
        return await emulator.send(parse_body(await request.body()))

    async def authenticate(request: Request) -> dict[str, Any]:
        return await emulator.authenticate(parse_body(await request.body()))

    async def get_organization(request: Request) -> dict[str, Any]:
        return await emulator.get_organization(request.path_params["organization_id"], request.query_params)

    async def get_member(request: Request) -> dict[str, Any]:
        return await emulator.get_member(request.path_params["organization_id"], request.query_params)

    async def delete_phone(request: Request) -> dict[str, Any]:
        params = request.path_params
        return await emulator.delete_mfa_phone_number(params["organization_id"], params["member_id"])

    async def revoke_session(request: Request) -> dict[str, Any]:
        return await emulator.revoke_session(parse_body(await request.body()))

    async def list_sessions(request: Request) -> dict[str, Any]:
        return await emulator.list_sessions(request.query_params)

    routes = [
        Route(SEND.route, stytch(send), methods=[SEND.method]),
        Route(REVOKE_SESSION.route, stytch(revoke_session), methods=[REVOKE_SESSION.method]),
        Route(GET_SESSIONS.route, stytch(list_sessions), methods=[GET_SESSIONS.method]),
        Route(AUTHENTICATE.route, stytch(authenticate), methods=[AUTHENTICATE.method]),
        Route(GET_ORGANIZATION.route, stytch(get_organization), methods=[GET_ORGANIZATION.method]),
        Route(GET_MEMBER.route, stytch(get_member), methods=[GET_MEMBER.method]),
        Route(DELETE_MFA_PHONE_NUMBER.route, stytch(delete_phone), methods=[DELETE_MFA_PHONE_NUMBER.method]),
    ]
    if emulator.test_endpoints:
        async def messages(_: Request) -> list[Any]:
            return emulator.messages.to_json()

        async def primary_auth(request: Request) -> dict[str, Any]:
            return await emulator.primary_auth(parse_body(await request.body()))

        async def advance(request: Request) -> dict[str, Any]:
            return emulator.advance_clock(parse_body(await request.body()))

        routes += [
            Route("/_emulator/messages", test_only(messages), methods=["GET"]),
            Route(PRIMARY_AUTH.route, test_only(primary_auth), methods=[PRIMARY_AUTH.method]),
            Route(CLOCK_ADVANCE.route, test_only(advance), methods=[CLOCK_ADVANCE.method]),
        ]
    return routes


async def _answer(handler: Handler, request: Request) -> Response:
    request_id = _request_id()
    try:
        payload = await handler(request)
    except MfaError as refusal:
        refusal.request_id = request_id
        return JSONResponse(refusal.to_dict(), status_code=refusal.status_code)
    except Exception:
        logger.exception("mfa-flow serve: %s %s failed", request.method, request.url.path)
        return _error(500, "internal_server_error", "the emulator failed on this request", request_id)
    if isinstance(payload, dict):
        payload.update(status_code=200, request_id=request_id)
    return JSONResponse(payload)


def _error(status_code: int, error_type: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse(error_body(status_code, error_type, message, request_id), status_code=status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors, in Stytch's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}",
                      _request_id())
    return _error(404, "route_not_found", f"no route {request.method} {request.url.path}", _request_id())


def _lifespan(emulator: Emulator) -> Callable[[Starlette], Any]:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        store: Any = emulator.flow.store
        check = getattr(store, "check", None)
        if check is not None and getattr(store, "asynchronous", False):
            await check()  # a Redis eviction policy that could reset locks is reported at start-up
        try:
            yield
        finally:
            if callable(getattr(store, "aclose", None)):
                await store.aclose()
            elif callable(getattr(store, "close", None)):
                store.close()

    return lifespan
