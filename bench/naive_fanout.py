"""Baseline (b) of the launch fan-out: the naive design. A bare parent workflow starts one child workflow
per organisation; each child runs one activity that renders that organisation's two invitations with the
product's templates and sends them over a new SMTP connection. No database: only the orchestration shape
differs from ours, and the orchestration is what this baseline is for.

`python -m bench.naive_fanout worker --address A --task-queue Q --smtp-port P` runs its worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from aiosmtplib import SMTP

    from notifications.message import OutgoingEmail, serialize_message
    from notifications.rendering import render_email

MAIL_FROM = "Sekretariati Teknik <sekretariati@migracioni.gov.example>"
ENVELOPE_FROM = "sekretariati@migracioni.gov.example"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


@dataclass(frozen=True)
class NaiveRound:
    organisations: int


@dataclass(frozen=True)
class NaiveOrganisation:
    number: int


class NaiveActivities:
    def __init__(self, smtp_port: int) -> None:
        self.smtp_port = smtp_port

    @activity.defn(name="naive_send_organisation")
    async def send_organisation(self, org: NaiveOrganisation) -> int:
        client = SMTP(hostname="127.0.0.1", port=self.smtp_port, timeout=30)
        await client.connect()
        try:
            for role in ("focal_point", "alternate"):
                rendered = render_email(
                    "invitation",
                    "sq",
                    {
                        "round_title": "Migration strategy",
                        "organisation_name": f"Organizata {org.number}",
                        "contact_name": "Arta Hoxha",
                        "contact_role": role,
                        "deadline_text": "15 dhjetor 2026, 17:00 (Europe/Tirane)",
                        "sections": [
                            {"number": str(n), "heading": f"Seksioni {n} i strategjisë"} for n in range(1, 9)
                        ],
                        "link_url": "https://roundtable.gov.example/t/" + "A" * 43,
                        "sender_name": "Sekretariati Teknik",
                    },
                )
                address = f"{role}.{org.number}@bench.example"
                email = OutgoingEmail.from_rendered(
                    rendered,
                    to_address=address,
                    to_name="Arta Hoxha",
                    message_id=f"<naive.{org.number}.{role}@bench.example>",
                )
                await client.sendmail(
                    ENVELOPE_FROM,
                    [address],
                    serialize_message(email, MAIL_FROM),
                    mail_options=["BODY=8BITMIME"],
                )
        finally:
            await client.quit()
        return 2


@workflow.defn(name="NaiveOrganisationWorkflow")
class NaiveOrganisationWorkflow:
    @workflow.run
    async def run(self, org: NaiveOrganisation) -> int:
        return int(
            await workflow.execute_activity(
                "naive_send_organisation",
                org,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
            )
        )


@workflow.defn(name="NaiveRoundWorkflow")
class NaiveRoundWorkflow:
    @workflow.run
    async def run(self, round_: NaiveRound) -> int:
        parent = workflow.info().workflow_id
        sent = await asyncio.gather(
            *(
                workflow.execute_child_workflow(
                    NaiveOrganisationWorkflow.run, NaiveOrganisation(number), id=f"{parent}-org-{number}"
                )
                for number in range(round_.organisations)
            )
        )
        return sum(sent)


async def start(client: Client, *, organisations: int, task_queue: str, workflow_id: str) -> None:
    await client.start_workflow(
        NaiveRoundWorkflow.run, NaiveRound(organisations), id=workflow_id, task_queue=task_queue
    )


async def run_worker(address: str, task_queue: str, smtp_port: int) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[NaiveRoundWorkflow, NaiveOrganisationWorkflow],
        activities=[NaiveActivities(smtp_port).send_organisation],
    )
    await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(args.address, args.task_queue, args.smtp_port))


if __name__ == "__main__":
    main()
