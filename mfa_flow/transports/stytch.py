"""Stytch mode: Stytch's B2B API over httpx, as the flow's remote code provider and directory (docs/stytch.md).

``MfaFlow(transport=StytchProvider(project_id, secret))`` — or ``AsyncMfaFlow`` with
:class:`AsyncStytchProvider` — runs in **Stytch mode**: Stytch issues the tokens and generates, delivers and
verifies the codes, while mfa_flow keeps its own rules in front (countries, number types, phone match,
limits, lock, hooks, inactivity) and calls Stytch only once they pass.

Every request carries HTTP Basic auth, the provider's timeouts (connect 3 s, read 10 s by default) and its
retry rule, even on a client the application passed in: a request is sent again only when it surely did not
reach Stytch (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``), at most ``connect_retries`` times after
a jittered pause. Nothing is retried once it may have arrived: a second send would text the member twice and
kill the code being typed.

What a provider method answers:
- a success body (a dict), checked to be JSON and to name the member and organization asked for — otherwise
  :class:`~mfa_flow.errors.UnexpectedResponse`;
- Stytch's error body as the ``MfaError`` its ``error_type`` maps to, Stytch's fields kept (a
  :class:`~mfa_flow.errors.ProviderError` for a type outside mfa_flow's table);
- ``DeliveryRejected`` when Stytch could not be reached, ``DeliveryUnknown`` when the request may have
  reached it without an answer (a timeout, a dropped connection) or, for a send, Stytch answered 5xx.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

from mfa_flow._version import __version__
from mfa_flow.errors import ConfigurationError, NotFoundError, ProviderError, UnexpectedResponse
from mfa_flow.records import Member, Organization
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown, _http
from mfa_flow.transports._http import (
    CONNECT_ERRORS,
    AsyncOwnedClient,
    OwnedClient,
    check_retries,
    check_text,
    check_timeout,
    pauses,
)
from mfa_flow.wire import (
    AUTHENTICATE,
    DELETE_MFA_PHONE_NUMBER,
    GET_MEMBER,
    GET_ORGANIZATION,
    GET_SESSIONS,
    REVOKE_SESSION,
    SEND,
    Endpoint,
    member_from,
    object_at,
    organization_from,
    stytch_error,
    text_at,
)

__all__ = ["AsyncStytchDirectory", "AsyncStytchProvider", "StytchDirectory", "StytchProvider", "base_url_for"]

logger = logging.getLogger("mfa_flow.transports")

LIVE_URL: Final = "https://api.stytch.com/"
TEST_URL: Final = "https://test.stytch.com/"
_HEADERS: Final = {"Content-Type": "application/json", "User-Agent": f"mfa_flow/{__version__}"}


def base_url_for(project_id: str) -> str:
    """The official SDK's rule: a ``project-live-`` project talks to the live API, any other to the test API."""
    return LIVE_URL if project_id.startswith("project-live-") else TEST_URL


class _Api:
    """What both providers share: the settings, the requests, and how an answer is read."""

    def __init__(self, project_id: object, secret: object, base_url: object, timeout: object,
                 connect_retries: object) -> None:
        self.project_id = check_text("project_id", project_id)
        self.auth = httpx.BasicAuth(self.project_id, check_text("secret", secret))
        url = base_url_for(self.project_id) if base_url is None else check_text("base_url", base_url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("base_url: must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:  # it would show in repr and logs
            raise ConfigurationError("base_url: must not carry credentials (the provider sends its own)")
        if parts.scheme == "http" and not _http.is_loopback(parts.hostname):
            logger.warning("mfa_flow: the Stytch provider talks plain HTTP to %s: the secret crosses the network "
                           "unencrypted (use https:// outside a test network)", parts.hostname)
        self.base_url = url if url.endswith("/") else url + "/"
        self.timeout = check_timeout(timeout)
        self.retries = check_retries(connect_retries)

    def describe(self, cls: type) -> str:
        return f"{cls.__name__}(project_id={self.project_id!r}, base_url={self.base_url!r})"  # never the secret

    def request(self, client: httpx.Client | httpx.AsyncClient, endpoint: Endpoint, path: Mapping[str, str],
                body: Mapping[str, Any] | None = None, query: Mapping[str, str] | None = None) -> httpx.Request:
        route = endpoint.route.format(**{k: quote(v, safe="") for k, v in path.items()})
        return client.build_request(endpoint.method, urljoin(self.base_url, route), json=body, params=query,
                                    headers=_HEADERS, timeout=self.timeout)

    @staticmethod
    def read(endpoint: Endpoint, response: httpx.Response, *, sends: bool) -> dict[str, Any]:
        """A success body, or the error the answer means (see the module's docstring)."""
        status = response.status_code
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested past what the parser follows
            body = None
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise UnexpectedResponse(f"Stytch answered {endpoint.route} with HTTP {status} and a body that is "
                                         "not a JSON object")
            text_at(body, "request_id")
            return body
        if sends and (status >= 500 or 300 <= status < 400):  # a redirect is never followed: it may have gone
            raise DeliveryUnknown(f"Stytch answered the send with HTTP {status}: the SMS may have gone; not retried")
        raise stytch_error(status, body)

    @staticmethod
    def same_subject(body: Mapping[str, Any], organization_id: str, member_id: str) -> dict[str, Any]:
        """A success that names another member or organization than the one asked for fails closed."""
        member, org = object_at(body, "member"), object_at(body, "organization")
        named = (text_at(body, "member_id"), text_at(member, "member_id", "member."),
                 text_at(member, "organization_id", "member."), text_at(org, "organization_id", "organization."))
        if named != (member_id, member_id, organization_id, organization_id):
            raise UnexpectedResponse("Stytch's answer names another member or organization than the one asked "
                                     "for", request_id=body.get("request_id"))
        return dict(body)

    @classmethod
    def same_member(cls, body: Mapping[str, Any], organization_id: str, member_ref: str) -> dict[str, Any]:
        """A member asked for by id or external id: the answer must be that member."""
        member = object_at(body, "member")
        if member_ref not in (text_at(member, "member_id", "member."), member.get("external_id")):
            raise UnexpectedResponse("Stytch's answer names another member or organization than the one asked "
                                     "for", request_id=body.get("request_id"))
        return cls.same_subject(body, organization_id, text_at(member, "member_id", "member."))

    @staticmethod
    def same_organization(body: Mapping[str, Any], ref: str) -> dict[str, Any]:
        org = object_at(body, "organization")
        if ref not in (org.get("organization_id"), org.get("organization_slug"), org.get("organization_external_id")):
            raise UnexpectedResponse("Stytch's answer names another organization than the one asked for",
                                     request_id=body.get("request_id"))
        return dict(body)

    @staticmethod
    def authenticated(body: dict[str, Any]) -> dict[str, Any]:
        text_at(body, "session_token")
        object_at(body, "member_session")
        return body

    def failed_to_connect(self, failure: str) -> DeliveryRejected:
        attempts = self.retries + 1
        return DeliveryRejected(f"could not connect to Stytch ({failure}) in {attempts} attempt{'s' * (attempts > 1)}")

    @staticmethod
    def maybe_arrived(exc: httpx.HTTPError) -> DeliveryUnknown:
        return DeliveryUnknown(f"Stytch may have received the request ({type(exc).__name__}); not retried")

    def note_retry(self, failure: str, attempt: int, pause: float) -> None:
        logger.info("mfa_flow: could not connect to Stytch (%s); retry %d of %d in %.2f s", failure, attempt,
                    self.retries, pause)


def _none_if_not_found(error: Exception, error_type: str) -> dict[str, Any] | None:
    """Stytch's "no such record" is the directory's None; any other refusal stands."""
    if not (isinstance(error, NotFoundError) and error.error_type == error_type):
        raise error
    return None


class StytchProvider(OwnedClient):
    """Stytch's B2B SMS OTP API over an ``httpx.Client``: the caller's (never closed here) or its own.

    ``base_url=None`` chooses as the official SDK does (``project-live-`` → live API, else test API); pass
    ``mfa-flow serve``'s URL to talk to the local emulator.
    """

    def __init__(self, project_id: str, secret: str, *, base_url: str | None = None,
                 client: httpx.Client | None = None, timeout: float | httpx.Timeout | None = None,
                 connect_retries: int = 2) -> None:
        self._api = _Api(project_id, secret, base_url, timeout, connect_retries)
        self._take_client(client, self._api.timeout, "AsyncStytchProvider")

    def __repr__(self) -> str:
        return self._api.describe(type(self))

    def _call(self, endpoint: Endpoint, path: Mapping[str, str], *, body: Mapping[str, Any] | None = None,
              query: Mapping[str, str] | None = None, sends: bool = False) -> dict[str, Any]:
        api = self._api
        request = api.request(self._client, endpoint, path, body, query)
        failure = ""
        for attempt, pause in enumerate(pauses(api.retries)):
            if pause:
                api.note_retry(failure, attempt, pause)
                _http.sleep(pause)
            try:
                response = self._client.send(request, auth=api.auth, follow_redirects=False)
            except CONNECT_ERRORS as exc:
                failure = type(exc).__name__
                continue
            except httpx.HTTPError as exc:
                raised = api.maybe_arrived(exc)
            else:
                return api.read(endpoint, response, sends=sends)
            raise raised  # outside the except: no chained httpx exception, whose request holds the secret
        raise api.failed_to_connect(failure)

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/b2b/otps/sms/send`` with ``body`` (canonical ids, only the keys not None)."""
        return self._api.same_subject(self._call(SEND, {}, body=body, sends=True), body["organization_id"],
                                      body["member_id"])

    def authenticate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/b2b/otps/sms/authenticate``; a success carries a session."""
        answer = self._api.same_subject(self._call(AUTHENTICATE, {}, body=body), body["organization_id"],
                                        body["member_id"])
        return self._api.authenticated(answer)

    def get_organization(self, organization_ref: str) -> dict[str, Any] | None:
        """The organization (by id, slug or external id); None when Stytch has none."""
        try:
            answer = self._call(GET_ORGANIZATION, {"organization_id": organization_ref},
                                query={"organization_id": organization_ref})
        except NotFoundError as error:
            return _none_if_not_found(error, "organization_not_found")
        return self._api.same_organization(answer, organization_ref)

    def get_member(self, organization_id: str, member_ref: str) -> dict[str, Any] | None:
        """The member (by id or external id) of an organization given by id; None when Stytch has none."""
        try:
            answer = self._call(GET_MEMBER, {"organization_id": organization_id},
                                query={"organization_id": organization_id, "member_id": member_ref})
        except NotFoundError as error:
            return _none_if_not_found(error, "member_not_found")
        return self._api.same_member(answer, organization_id, member_ref)

    def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> dict[str, Any]:
        answer = self._call(DELETE_MFA_PHONE_NUMBER, {"organization_id": organization_id, "member_id": member_id})
        return self._api.same_subject(answer, organization_id, member_id)

    def revoke_session(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/b2b/sessions/revoke`` with one selector."""
        return self._call(REVOKE_SESSION, {}, body=body)

    def list_sessions(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v1/b2b/sessions``: the member's live sessions, as Stytch lists them."""
        return self._call(GET_SESSIONS, {}, query=query)

    def directory(self, *, cache_seconds: float = 60) -> StytchDirectory:
        """Organizations and members read from Stytch: the default directory in Stytch mode."""
        return StytchDirectory(self, cache_seconds=cache_seconds)


class AsyncStytchProvider(AsyncOwnedClient):
    """:class:`StytchProvider` over an ``httpx.AsyncClient``, for ``AsyncMfaFlow``."""

    def __init__(self, project_id: str, secret: str, *, base_url: str | None = None,
                 client: httpx.AsyncClient | None = None, timeout: float | httpx.Timeout | None = None,
                 connect_retries: int = 2) -> None:
        self._api = _Api(project_id, secret, base_url, timeout, connect_retries)
        self._take_client(client, self._api.timeout, "StytchProvider")

    def __repr__(self) -> str:
        return self._api.describe(type(self))

    async def _call(self, endpoint: Endpoint, path: Mapping[str, str], *, body: Mapping[str, Any] | None = None,
                    query: Mapping[str, str] | None = None, sends: bool = False) -> dict[str, Any]:
        api = self._api
        request = api.request(self._client, endpoint, path, body, query)
        failure = ""
        for attempt, pause in enumerate(pauses(api.retries)):
            if pause:
                api.note_retry(failure, attempt, pause)
                await _http.async_sleep(pause)
            try:
                response = await self._client.send(request, auth=api.auth, follow_redirects=False)
            except CONNECT_ERRORS as exc:
                failure = type(exc).__name__
                continue
            except httpx.HTTPError as exc:
                raised = api.maybe_arrived(exc)
            else:
                return api.read(endpoint, response, sends=sends)
            raise raised  # outside the except: no chained httpx exception, whose request holds the secret
        raise api.failed_to_connect(failure)

    async def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._api.same_subject(await self._call(SEND, {}, body=body, sends=True), body["organization_id"],
                                      body["member_id"])

    async def authenticate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._api.same_subject(await self._call(AUTHENTICATE, {}, body=body), body["organization_id"],
                                        body["member_id"])
        return self._api.authenticated(answer)

    async def get_organization(self, organization_ref: str) -> dict[str, Any] | None:
        try:
            answer = await self._call(GET_ORGANIZATION, {"organization_id": organization_ref},
                                      query={"organization_id": organization_ref})
        except NotFoundError as error:
            return _none_if_not_found(error, "organization_not_found")
        return self._api.same_organization(answer, organization_ref)

    async def get_member(self, organization_id: str, member_ref: str) -> dict[str, Any] | None:
        try:
            answer = await self._call(GET_MEMBER, {"organization_id": organization_id},
                                      query={"organization_id": organization_id, "member_id": member_ref})
        except NotFoundError as error:
            return _none_if_not_found(error, "member_not_found")
        return self._api.same_member(answer, organization_id, member_ref)

    async def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> dict[str, Any]:
        answer = await self._call(DELETE_MFA_PHONE_NUMBER,
                                  {"organization_id": organization_id, "member_id": member_id})
        return self._api.same_subject(answer, organization_id, member_id)

    async def revoke_session(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(REVOKE_SESSION, {}, body=body)

    async def list_sessions(self, query: Mapping[str, str]) -> dict[str, Any]:
        return await self._call(GET_SESSIONS, {}, query=query)

    def directory(self, *, cache_seconds: float = 60) -> AsyncStytchDirectory:
        return AsyncStytchDirectory(self, cache_seconds=cache_seconds)


# --- the directory in Stytch mode -------------------------------------------------------------------------

@contextlib.contextmanager
def _reading_stytch() -> Iterator[None]:
    """A directory lookup that could not reach Stytch fails closed, said as such (not as a store failure)."""
    try:
        yield
    except (DeliveryRejected, DeliveryUnknown) as exc:
        message = f"Stytch could not be read: {exc}"
    else:
        return
    raise ProviderError("internal_server_error", message)


class _Cache:
    """Records by every reference Stytch resolves, each for ``seconds`` (monotonic time)."""

    def __init__(self, seconds: object) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ConfigurationError("cache_seconds: must be a number of at least 0")
        self.seconds = float(seconds)
        self._orgs: dict[str, tuple[float, Organization]] = {}
        self._members: dict[tuple[str, str], tuple[float, Member]] = {}

    def organization(self, ref: str) -> Organization | None:
        hit = self._orgs.get(ref)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def member(self, organization_id: str, ref: str) -> Member | None:
        hit = self._members.get((organization_id, ref))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put_organization(self, org: Organization) -> Organization:
        until = time.monotonic() + self.seconds
        for ref in (org.organization_id, org.organization_slug, org.organization_external_id):
            if ref:
                self._orgs[ref] = (until, org)
        return org

    def put_member(self, member: Member) -> Member:
        until = time.monotonic() + self.seconds
        for ref in (member.member_id, member.external_id):
            if ref:
                self._members[(member.organization_id, ref)] = (until, member)
        return member

    def take(self, answer: Mapping[str, Any]) -> Member:
        """Cache an answer's organization and member; the member."""
        self.put_organization(organization_from(answer))
        return self.put_member(member_from(answer))


_P = TypeVar("_P", "StytchProvider", "AsyncStytchProvider")


class _CachedDirectory(Generic[_P]):
    """What both directories over Stytch share: the provider, the cache, and all that touches only the cache."""

    def __init__(self, provider: _P, cache_seconds: float) -> None:
        self._provider: _P = provider
        self._cache = _Cache(cache_seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._provider!r}, cache_seconds={self._cache.seconds:g})"

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None:  # noqa: ARG002 - Stytch's
        return None

    def refresh(self, answer: Mapping[str, Any]) -> Member:
        """Cache the organization and member of a Stytch answer; the member."""
        return self._cache.take(answer)

    def put_organization(self, org: Organization) -> None:
        self._cache.put_organization(org)

    def put_member(self, member: Member) -> None:
        self._cache.put_member(member)


class StytchDirectory(_CachedDirectory[StytchProvider]):
    """Organizations and members read from Stytch's get endpoints and cached for ``cache_seconds``.

    The flow refreshes it from every send and authenticate answer (``refresh``); ``put_*`` only seed the
    cache — nothing is ever written to Stytch. ``find_member_by_phone`` answers None: in Stytch mode, Stytch
    itself refuses a number linked to another member (``duplicate_member_phone_number``).
    """

    def __init__(self, provider: StytchProvider, *, cache_seconds: float = 60) -> None:
        super().__init__(provider, cache_seconds)

    def get_organization(self, ref: str) -> Organization | None:
        hit = self._cache.organization(ref)
        if hit is not None:
            return hit
        with _reading_stytch():
            answer = self._provider.get_organization(ref)
        return None if answer is None else self._cache.put_organization(organization_from(answer))

    def get_member(self, org_ref: str, member_ref: str) -> Member | None:
        org = self.get_organization(org_ref)
        if org is None:
            return None
        hit = self._cache.member(org.organization_id, member_ref)
        if hit is not None:
            return hit
        with _reading_stytch():
            answer = self._provider.get_member(org.organization_id, member_ref)
        return None if answer is None else self._cache.take(answer)


class AsyncStytchDirectory(_CachedDirectory[AsyncStytchProvider]):
    """:class:`StytchDirectory` over :class:`AsyncStytchProvider`, for ``AsyncMfaFlow``."""

    def __init__(self, provider: AsyncStytchProvider, *, cache_seconds: float = 60) -> None:
        super().__init__(provider, cache_seconds)

    async def get_organization(self, ref: str) -> Organization | None:
        hit = self._cache.organization(ref)
        if hit is not None:
            return hit
        with _reading_stytch():
            answer = await self._provider.get_organization(ref)
        return None if answer is None else self._cache.put_organization(organization_from(answer))

    async def get_member(self, org_ref: str, member_ref: str) -> Member | None:
        org = await self.get_organization(org_ref)
        if org is None:
            return None
        hit = self._cache.member(org.organization_id, member_ref)
        if hit is not None:
            return hit
        with _reading_stytch():
            answer = await self._provider.get_member(org.organization_id, member_ref)
        return None if answer is None else self._cache.take(answer)
