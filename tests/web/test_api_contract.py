"""The API is what its document says: schemathesis generates requests from /openapi.json, as every kind
of caller, against the app served over HTTP, and checks each answer: no 5xx, every status documented,
every body and header as the document describes them. A request the schema admits may still be refused
for what it means (a deadline in the past, an unknown organisation key), with a documented 422: the
check that calls every such refusal a failure (`positive_data_acceptance`) is left out.

The app is served by uvicorn in the test's event loop while schemathesis (synchronous, over `requests`)
runs in a thread. The database holds a launched round, so that some generated ids find something.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.core.failures import FailureGroup

from models.enums import Role
from models.users import UserCreate
from services import users
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import TEST_ACTOR, ServedApp
from tests.web.test_review_page import RecordingScheduler, build_round

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

EXAMPLES = {"coordinator": 6, "admin": 2, "auditor": 2, "anonymous": 1, "revoked": 1}
"""Requests generated per operation for each caller: the coordinator's reach every use case."""


async def bearer_tokens(db: Database) -> dict[str, dict[str, str]]:
    """The headers of each kind of caller: a token per role, none, and a token that was revoked."""
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in (Role.coordinator, Role.auditor, Role.admin):
        async with db.write_session() as session:
            _user, token = await users.create_user(
                session, data=UserCreate(email=f"{role}@contract.example", role=role), actor=TEST_ACTOR
            )
        headers[str(role)] = {"Authorization": f"Bearer {token}"}
    headers["revoked"] = {"Authorization": "Bearer rt_" + "x" * 43}
    return headers


def exercise(url: str, headers: dict[str, dict[str, str]]) -> tuple[int, list[str]]:
    """Every operation of the document, as every caller; returns the calls made and what failed."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    calls = 0

    def checks(operation: Any, caller: str, examples: int, excluded: list[Any]) -> Any:
        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            try:
                case.call_and_validate(
                    base_url=url, headers=headers[caller], timeout=30, excluded_checks=excluded
                )
            except FailureGroup as group:
                failures.append(f"{operation.label} as {caller}: " + "; ".join(map(str, group.exceptions)))
            except AssertionError as failed:
                failures.append(f"{operation.label} as {caller}: {failed}")

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        excluded: list[Any] = [positive_data_acceptance]
        if operation.path == "/readyz":
            excluded.append(not_a_server_error)  # not ready is a 503 by design: no Temporal here
        for caller, examples in EXAMPLES.items():
            checks(operation, caller, examples, excluded)()
    return calls, failures


async def test_every_answer_is_what_the_document_says(db: Database, settings: Settings) -> None:
    await build_round(db, settings, keys=None)
    headers = await bearer_tokens(db)
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    async with ServedApp(app) as served:
        calls, failures = await asyncio.to_thread(exercise, served.url, headers)
    assert calls > 100
    assert failures == [], "\n".join(failures[:40])


async def test_the_document_describes_the_error_bodies_the_api_sends(
    db: Database, settings: Settings
) -> None:
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        document = (await http.get("/openapi.json")).json()
        unknown = await http.get("/api/v1/rounds/999999")
        invalid = await http.get("/api/v1/rounds/not-a-number")

    error_body = document["components"]["schemas"]["ErrorBody"]
    assert error_body["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in document["components"]["schemas"]
    round_read = document["paths"]["/api/v1/rounds/{round_id}"]["get"]["responses"]
    assert {"401", "403", "404", "422", "503"} <= set(round_read)
    launch = document["paths"]["/api/v1/rounds/{round_id}/launch"]["post"]["responses"]
    assert {"401", "403", "404", "409", "413", "422"} <= set(launch)
    assert document["paths"]["/api/v1/rounds"]["get"]["security"] == [{"bearer": []}]

    # Without a token, the body the document promises for 401.
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = unknown.json()
    assert set(body) <= {"error", "detail", "problems"}
    assert isinstance(body["detail"], str)
    assert invalid.status_code == 401  # the token is checked before the path is read
