"""The route classes: each admits the callers of its route's line in the access table (access.py), and the
pages' routes also read their forms safely.

Every router names one of them as its `route_class`. When a route is built, its class looks up the line
of each of its methods (a route missing from the table is not built) and enforces it on every request,
before the body is read. For a page's form (a route reading `form: Submitted[SomeForm]`), the class also
checks the CSRF token before anything else, and, where the route declares the page its form is on
(`@shows_refused(page)`), answers a refused form with that page again: the message, and what was typed.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request, Response, params
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTask, BackgroundTasks

from services.errors import DomainError, Forbidden, TooManyRequests
from services.web import access, csrf, rate_limits
from services.web.access import ANYONE, LINK_HOLDER, Caller
from services.web.deps import (
    BEARER,
    FormModel,
    SignInRequired,
    authenticate,
    console_principal,
    handed_over,
    sign_in_target,
    web_state,
)
from services.web.errors import describe_validation, domain_error_response

LOGIN_PATH = "/console/login"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUDITORS_CHANGE_NOTHING = "the auditor role can read everything but change nothing"


@dataclass(frozen=True)
class Refused:
    """A form the route did not act on: what was typed, why, and the words for the page."""

    form: FormModel
    error: DomainError | ValidationError
    status_code: int
    message: str
    problems: list[str]

    @classmethod
    def of(cls, form: FormModel, error: DomainError | ValidationError) -> Refused:
        if isinstance(error, ValidationError):
            problems = describe_validation(error, labels=form.labels, messages=form.messages)
            return cls(form, error, 422, "; ".join(problems), problems)
        return cls(form, error, error.status_code, error.detail, error.problems)


RefusedPage = Callable[[Request, AsyncSession, Refused], Awaitable[Response]]
"""Shows a refused form again: `page(request, session, refused)` renders the page the form is on, or
raises `refused.error` for the error page to answer instead."""
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def shows_refused(page: RefusedPage) -> Callable[[Endpoint], Endpoint]:
    """Declares the page a route's form is on, where it is shown again when refused: a bad CSRF token, or a
    DomainError or ValidationError from parsing it or from the use case. Put it under `@router.post`."""

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.refused_page = page  # type: ignore[attr-defined]
        return endpoint

    return declare


def _form_of(endpoint: Callable[..., Any], *, reads_forms: bool) -> tuple[str, Any] | None:
    """The endpoint's form parameter (`form: Submitted[SomeForm]`), as its name and type, if it reads one."""
    found = None
    for name, hint in typing.get_type_hints(endpoint, include_extras=True).items():
        if name == "return" or typing.get_origin(hint) is not typing.Annotated:
            continue
        model, *metadata = typing.get_args(hint)
        if inspect.isclass(model) and issubclass(model, FormModel):
            found = (name, hint)
        elif reads_forms and any(isinstance(item, params.Form) for item in metadata):
            # A field read on its own would escape the CSRF check that reading the form brings.
            raise TypeError(
                f"{endpoint.__qualname__}: read the form as one FormModel (forms.py), not '{name}'"
            )
    return found


def _read_form_first(endpoint: Callable[..., Any], name: str, hint: Any) -> None:
    """Have the endpoint's form read by a guard that runs before its other dependencies: the guard keeps
    the form for the page that may show it again, and refuses it without a valid CSRF token before anything
    else is read or done. The endpoint is handed the form the guard read (the body is read once)."""

    async def check_form(request: Request, form: FormModel) -> FormModel:
        request.state.form = form
        csrf.check(request, form.csrf_token, web_state(request).settings.secret_key)
        return form

    check_form.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            inspect.Parameter("form", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hint),
        ],
        return_annotation=FormModel,
    )
    # FastAPI resolves the dependencies in the order of the parameters: the form's first.
    signature = inspect.signature(endpoint)
    form = signature.parameters[name].replace(
        kind=inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=handed_over(typing.get_args(hint)[0], Depends(check_form)),
    )
    others = [parameter for parameter in signature.parameters.values() if parameter.name != name]
    endpoint.__signature__ = signature.replace(parameters=[form, *others])  # type: ignore[attr-defined]


class AccessRoute(APIRoute):
    """A route that admits the callers of its line in the access table and nobody else."""

    reads_forms = True
    """Whether the route's forms come from pages (cookies, so CSRF tokens); the API's do not."""

    callers: dict[str, frozenset[Caller]]
    """Per method, who may call the route: its lines in the access table, as enforced."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = access.methods_of(method.upper() for method in kwargs.get("methods") or ["GET"])
        self.callers = {method: access.callers_of(method, path) for method in methods}
        for method, callers in self.callers.items():
            self.check_line(method, path, callers)
        self.refused_page: RefusedPage | None = getattr(endpoint, "refused_page", None)
        form = _form_of(endpoint, reads_forms=self.reads_forms)
        if form is not None and self.reads_forms:
            _read_form_first(endpoint, *form)
        dependencies = list(kwargs.pop("dependencies", None) or [])
        if any(callers != ANYONE for callers in self.callers.values()):
            dependencies += self.credential_dependencies()
        super().__init__(path, endpoint, dependencies=dependencies, **kwargs)

    def check_line(self, method: str, path: str, callers: frozenset[Caller]) -> None:
        """Refuse to build a route whose line its class cannot enforce."""
        if callers != ANYONE:
            raise TypeError(f"{method} {path}: {type(self).__name__} admits anyone, but its line does not")

    def credential_dependencies(self) -> list[params.Depends]:
        """What the route shows in the OpenAPI spec about the credential it reads."""
        return []

    async def admit(self, request: Request, callers: frozenset[Caller]) -> Response | None:
        """Let the request through (None), answer it here (a redirect), or raise the refusal."""
        return None

    async def refused(self, request: Request, error: DomainError | ValidationError) -> Response:
        """The route's page again after a refused form (a throttled one says when to come back, in
        Retry-After); anything else, and the errors that the page raises again, go to the app's error
        handlers."""
        form: FormModel | None = getattr(request.state, "form", None)
        if form is None or self.refused_page is None:
            raise error
        async with web_state(request).db.session() as session:
            response = await self.refused_page(request, session, Refused.of(form, error))
        if isinstance(error, TooManyRequests) and error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        callers = self.callers

        async def admitted(request: Request) -> Response:
            answer = await self.admit(request, callers["GET" if request.method == "HEAD" else request.method])
            if answer is not None:
                return answer
            if self.refused_page is None or request.method in READ_METHODS:
                return await handler(request)
            try:
                return await handler(request)
            except (DomainError, ValidationError) as exc:
                return await self.refused(request, exc)

        return admitted


class PublicRoute(AccessRoute):
    """Health, the front page, the dev mailbox: routes that admit anyone."""


class ApiRoute(AccessRoute):
    """An API operation that checks the bearer token before anything else, the body included: a request
    without a valid token gets 401 and a role the operation's line does not name gets 403, whatever the
    request carries."""

    reads_forms = False

    def check_line(self, method: str, path: str, callers: frozenset[Caller]) -> None:
        if Caller.link_holder in callers and callers != ANYONE:
            raise TypeError(f"{method} {path}: the API reads bearer tokens, not review links")

    def credential_dependencies(self) -> list[params.Depends]:
        return [Depends(BEARER)]

    async def admit(self, request: Request, callers: frozenset[Caller]) -> Response | None:
        if callers == ANYONE:
            return None
        principal = await authenticate(request)
        if principal.role not in callers:
            if principal.role == Caller.auditor and Caller.coordinator in callers:
                raise Forbidden(AUDITORS_CHANGE_NOTHING)
            needed = ", ".join(sorted(callers))
            raise Forbidden(f"the {principal.role} role may not do this; it needs: {needed}")
        return None


def sign_in_redirect(next_path: str | None) -> RedirectResponse:
    return RedirectResponse(
        LOGIN_PATH + (f"?next={quote(next_path, safe='/')}" if next_path else ""), status_code=303
    )


class ConsoleRoute(AccessRoute):
    """A console page or form, for the signed-in: signed out, a redirect to sign in (and back to the page
    asked for); signed in with a role the route's line does not name, 403."""

    def check_line(self, method: str, path: str, callers: frozenset[Caller]) -> None:
        if Caller.link_holder in callers and callers != ANYONE:
            raise TypeError(f"{method} {path}: the console reads its session, not review links")

    async def admit(self, request: Request, callers: frozenset[Caller]) -> Response | None:
        if request.method == "POST" and self.path == LOGIN_PATH:
            await rate_limits.admit_sign_in(request)
        if callers == ANYONE:
            return None
        principal = await console_principal(request)
        if principal is None:
            return sign_in_redirect(sign_in_target(request))
        if principal.role not in callers:
            raise Forbidden(
                f"You are signed in as {principal.role}: you can read everything in the console but change "
                "nothing. Coordinators and admins make changes.",
            )
        return None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def signed_in(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:  # a page of an open route that needs somebody signed in after all
                return sign_in_redirect(exc.next_path)

        return signed_in


INVALID_LINK = "invalid_link"


def _refuses_the_link(error: DomainError | ValidationError) -> bool:
    if not isinstance(error, DomainError) or isinstance(error, csrf.CsrfFailed):
        return False
    return error.status_code in (401, 403, 410) or (error.status_code == 404 and error.error == INVALID_LINK)


class ReviewRoute(AccessRoute):
    """A focal point's page or form under /t/{token}. The token is the credential, and every use case
    behind these routes starts by resolving it: a form's in the transaction that records it, so that a
    link withdrawn meanwhile cannot slip through, which a check here, beforehand, could not promise. A
    token that opens no link, or a link past its life, gets the error page, never the form again.

    A client over its link limits is refused first (rate_limits); a token that opened nothing is counted
    against the client's limit of those once its answer has gone."""

    async def admit(self, request: Request, callers: frozenset[Caller]) -> Response | None:
        await rate_limits.admit_link_request(request)
        return None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted(request: Request) -> Response:
            try:
                return await handler(request)
            except TooManyRequests:
                raise  # refused before anything was done: not counted again
            except DomainError as exc:
                response = await domain_error_response(request, exc)
                if exc.error != INVALID_LINK:
                    return response
            count = BackgroundTask(rate_limits.count_unknown_token, request)
            if response.background is None:
                response.background = count
            else:
                tasks = BackgroundTasks()
                tasks.add_task(response.background)
                tasks.add_task(count)
                response.background = tasks
            return response

        return counted

    def check_line(self, method: str, path: str, callers: frozenset[Caller]) -> None:
        if callers == LINK_HOLDER and "{token}" not in path:
            raise TypeError(f"{method} {path}: a route for link holders needs the {{token}} in its path")
        if callers not in (LINK_HOLDER, ANYONE):
            raise TypeError(f"{method} {path}: review routes admit link holders (or anyone)")

    async def refused(self, request: Request, error: DomainError | ValidationError) -> Response:
        if _refuses_the_link(error):
            raise error  # the link itself is refused: there is no page to show again
        return await super().refused(request, error)
