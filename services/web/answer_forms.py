"""The console's forms for answering comments: one answer, one answer to the ticked comments, a saved
answer text. A saved answer picked in a form stands in for what the form leaves empty."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.responses import AnswerTextCreate, AnswerTextRead, BulkResponse, ResponseSet
from services.errors import InvalidInput
from services.web.deps import FormModel, parse_id

ANSWER_LABELS = {
    "response": "Response",
    "justification": "Justification",
    "new_wording": "New wording",
    "comment_ids": "Comments",
    "title": "Title",
    "text": "Answer text",
}


def _refuse_nul(*values: str) -> None:
    if any("\x00" in value for value in values):
        raise InvalidInput("the form holds a NUL character, which no text may contain")


class AnswerForm(FormModel):
    labels = ANSWER_LABELS
    response: str = ""
    justification: str = ""
    new_wording: str = ""
    answer_text_id: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "comment_id": parse_id(path.get("comment_id", "")),
            "response": self.response,
            "justification": self.justification,
            "new_wording": self.new_wording,
        }

    def saved_text_id(self) -> int | None:
        return parse_id(self.answer_text_id) if self.answer_text_id.strip() else None

    def fields(self, saved: AnswerTextRead | None) -> dict[str, Any]:
        _refuse_nul(self.response, self.justification, self.new_wording, self.answer_text_id)
        response, justification = self.response, self.justification
        if saved is not None:
            response = response or str(saved.response)
            justification = justification.strip() or saved.text
        if not response:
            raise InvalidInput("Choose the response: accepted, partly accepted, rejected or noted.")
        return {"response": response, "justification": justification, "new_wording": self.new_wording}

    def answer(self, saved: AnswerTextRead | None) -> ResponseSet:
        return ResponseSet.model_validate(self.fields(saved))


class BulkAnswerForm(AnswerForm):
    comment_ids: list[str] = []

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {**super().typed(path), "comment_ids": self.comment_ids}

    def bulk(self, saved: AnswerTextRead | None) -> BulkResponse:
        ids = [parse_id(value) for value in self.comment_ids]
        if not ids or any(value is None for value in ids):
            raise InvalidInput("Tick the comments this answer is for.")
        return BulkResponse.model_validate({**self.fields(saved), "comment_ids": ids})


class AnswerTextForm(FormModel):
    labels = ANSWER_LABELS
    title: str = ""
    response: str = ""
    text: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"title": self.title, "response": self.response, "text": self.text}

    def answer_text(self) -> AnswerTextCreate:
        _refuse_nul(self.title, self.response, self.text)
        return AnswerTextCreate.model_validate(
            {"title": self.title, "response": self.response, "text": self.text}
        )
