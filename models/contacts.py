"""Email addresses as the registry accepts them: the form is checked; deliverability is for the mail server.

A strict RFC/DNS check would refuse addresses that ministries really use (a domain label ending in a
hyphen, say) and block a whole registry import; a refused invitation is recorded and shown instead.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from models.text import line_problem

_LOCAL = re.compile(r"^[^\s@<>(),;:\"\[\]\\]{1,64}$")
_LABEL = re.compile(r"^[^\W_](?:[\w-]*)$", re.UNICODE)
_TOP_LEVEL = re.compile(r"^[^\W\d_]{2,63}$", re.UNICODE)


def check_email(value: str) -> str:
    value = value.strip()
    if line_problem(value) is not None:
        raise PydanticCustomError(
            "email", "not a valid email address (it holds a control or hidden direction character)"
        )
    local, at, domain = value.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or len(value) > 320
        or not _LOCAL.match(local)
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or not _TOP_LEVEL.match(labels[-1])
    ):
        raise PydanticCustomError("email", "not a valid email address (expected name@domain.tld)")
    return f"{local}@{domain.lower()}"


EmailAddress = Annotated[str, AfterValidator(check_email)]
