"""Hostile and long drafts uploaded to the real app served over HTTP: a hostile one is refused within a
second, and while any draft is read the web process goes on answering everyone else.

The app runs under uvicorn in the test's event loop, and a second client asks GET /healthz every few
milliseconds on its own connection throughout each upload: parsing on the event loop would hold every one
of those answers until it finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType

import httpx
import pytest

from models.enums import Role
from services.db import Database
from services.drafts import package as package_limits
from services.settings import Settings
from services.web.app import create_app
from tests.harness import ServedApp, create_account, free_port
from tests.services.test_hostile_drafts import (
    MIB,
    Entry,
    document_xml,
    empty_word_parts,
    handmade_zip,
    heading,
    laughs,
    numbered_paragraphs,
    package,
    paragraph,
)
from tests.services.test_hostile_registry import HOSTILE as HOSTILE_REGISTRIES

# Timing bounds: run alone, after the parallel suite (see the Makefile).
pytestmark = pytest.mark.serial

API = "/api/v1"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ANSWERED_WITHIN_SECONDS = 1.0
HEALTH_WITHIN_SECONDS = 0.3
PROBE_EVERY_SECONDS = 0.005


@dataclass
class Served:
    url: str
    coordinator: dict[str, str]


@pytest.fixture
async def served(db: Database, settings: Settings) -> AsyncIterator[Served]:
    # Nobody listens on this port: uploads need no scheduler.
    settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    coordinator = await create_account(db, "coordinator@secretariat.example", Role.coordinator)
    async with ServedApp(create_app(settings, db=db)) as server:
        yield Served(server.url, coordinator)


@dataclass
class HealthProbe:
    """Asks /healthz again and again, on a connection of its own, until stopped; keeps every latency."""

    url: str
    latencies: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = await client.get("/healthz")
                self.latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                await asyncio.sleep(PROBE_EVERY_SECONDS)

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._run())
        while not self.latencies:  # connected and answered once before the upload starts
            await asyncio.sleep(PROBE_EVERY_SECONDS)
        self.latencies.clear()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    @property
    def slowest(self) -> float:
        return max(self.latencies)


async def upload(served: Served, name: str, content: bytes) -> tuple[httpx.Response, float, HealthProbe]:
    """POST the draft while the probe runs: the response, how long it took, and the probe's record."""
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=60) as client,
        HealthProbe(served.url) as probe,
    ):
        started = time.perf_counter()
        response = await client.post(
            f"{API}/documents",
            files={"file": (name, content, DOCX if name.endswith(".docx") else "text/markdown")},
            data={"title": "Strategy"},
            headers=served.coordinator,
        )
        elapsed = time.perf_counter() - started
        await asyncio.sleep(10 * PROBE_EVERY_SECONDS)  # a few answers after it too
    return response, elapsed, probe


def _stuffed() -> bytes:
    """Three parts, each packing as text does and within the size of a part, too large together."""
    part = document_xml(*(paragraph(f"{n} The ministry reports once a year.") for n in range(170_000)))
    return handmade_zip([Entry(f"word/part{n}.xml", part) for n in range(3)])


def _with_prolog(prolog: str, text: str) -> bytes:
    return package(
        empty_word_parts(), word_document=document_xml(heading("1. One"), paragraph(text), prolog=prolog)
    )


XXE = '<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
HOSTILE: dict[str, tuple[str, Callable[[], bytes], int, str]] = {
    # id: file name, how to build it, the status and words of the answer
    "paragraphs": (
        "strategy.docx",
        lambda: package(empty_word_parts(), word_document=document_xml(*numbered_paragraphs(15_000))),
        422,
        "more than 5,000 paragraphs",
    ),
    "zip-bomb": (
        "strategy.docx",
        lambda: handmade_zip([Entry("word/document.xml", b" " * (15 * MIB))]),
        422,
        "zip bomb",
    ),
    "unpacked": ("strategy.docx", _stuffed, 413, "larger than 30 MB unpacked"),
    "entries": (
        "strategy.docx",
        lambda: handmade_zip(Entry(f"{n}", b"", deflate=False) for n in range(100_000)),
        422,
        "more than 1,000 files",
    ),
    "xxe": ("strategy.docx", lambda: _with_prolog(XXE, "1.1 &xxe;"), 422, "declares a DTD"),
    "laughs": ("strategy.docx", lambda: _with_prolog(laughs(), "1.1 &lol9;"), 422, "declares a DTD"),
    "not-a-zip": ("strategy.docx", lambda: b"%PDF-1.7 " + bytes(range(256)) * 100, 422, "is a PDF file"),
    "pdf-named-pdf": ("letter.pdf", lambda: b"%PDF-1.7\n" + bytes(range(256)) * 100, 422, "is a PDF file"),
    "pdf-named-md": ("strategy.md", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 422, "is a PDF file"),
    "markdown": (
        "strategy.md",
        lambda: "".join(f"## {n}. Section\n\n{n}.1 Text.\n\n" for n in range(2_000)).encode(),
        422,
        "more than 1,000 sections",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
async def test_a_hostile_upload_is_refused_within_a_second_and_the_app_keeps_answering(
    served: Served, case: str
) -> None:
    name, build, status, words = HOSTILE[case]
    content = build()
    assert len(content) <= 10 * MIB  # what the upload accepts: the draft's own limits refuse it

    response, elapsed, probe = await upload(served, name, content)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == ("too_large" if status == 413 else "invalid_input")
    assert words in body["detail"]
    assert elapsed < ANSWERED_WITHIN_SECONDS, f"answered after {elapsed:.2f} s"
    assert probe.latencies
    assert probe.slowest < HEALTH_WITHIN_SECONDS, f"/healthz took {probe.slowest * 1000:.0f} ms"


async def test_the_longest_draft_accepted_is_parsed_while_the_app_keeps_answering(served: Served) -> None:
    content = package(
        empty_word_parts(), word_document=document_xml(*numbered_paragraphs(package_limits.MAX_PARAGRAPHS))
    )

    response, elapsed, probe = await upload(served, "strategy.docx", content)

    assert response.status_code == 201, response.text
    assert len(response.json()["versions"][0]["sections"]) == 99
    # The parse takes a good part of a second, and /healthz is answered throughout, many times over. Not
    # always within HEALTH_WITHIN_SECONDS: the parse makes so many objects that the interpreter's garbage
    # collector runs meanwhile, and a collection pauses every thread, the event loop's too. Parsing on the
    # loop would hold every answer for the whole upload.
    # On a loaded machine (the suite runs in two processes on two cores) a collection can take more than
    # half of the upload; what parsing on the loop would do is hold one answer for all of it.
    assert len(probe.latencies) >= 10, (elapsed, probe.latencies)
    assert probe.slowest < elapsed * 0.85, (elapsed, probe.slowest)


@pytest.mark.parametrize("case", HOSTILE_REGISTRIES)
async def test_a_hostile_registry_file_is_refused_within_a_second_and_the_app_keeps_answering(
    served: Served, case: str
) -> None:
    name, build, error, words = HOSTILE_REGISTRIES[case]
    content = build()
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=60) as client,
        HealthProbe(served.url) as probe,
    ):
        started = time.perf_counter()
        response = await client.post(
            f"{API}/organisations/import",
            files={"file": (name, content, "application/octet-stream")},
            headers=served.coordinator,
        )
        elapsed = time.perf_counter() - started
        await asyncio.sleep(10 * PROBE_EVERY_SECONDS)

    assert response.status_code == error.status_code, response.text
    assert words in response.json()["detail"]
    assert elapsed < ANSWERED_WITHIN_SECONDS, f"answered after {elapsed:.2f} s"
    assert probe.slowest < HEALTH_WITHIN_SECONDS, f"/healthz took {probe.slowest * 1000:.0f} ms"
