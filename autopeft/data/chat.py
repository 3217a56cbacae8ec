"""Conversations, as chat datasets hold them: OpenAI's and TRL's ``messages`` (each turn a
``role`` and its ``content``) and ShareGPT's ``conversations`` (``from`` and ``value``).

A causal-LM study learns a conversation's last assistant turn (the response) from the turns
before it (the prompt). The prompt stays a list of turns through loading and checking; the
encoder renders it with the model's own chat template, as the model will be prompted, or, for a
model without one, as one ``role: content`` line a turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import pandas as pd

from autopeft.data.cells import list_cell
from autopeft.errors import DataError

#: The config field naming a column of conversations: read by ``load``, which makes the prompt
#: and response columns of it, not by a task kind.
MESSAGES_COLUMN_FIELD = "messages_column"
#: The two ways a turn is written: (role key, content key).
TURN_KEYS = (("role", "content"), ("from", "value"))
#: ShareGPT's speakers, as chat templates name them.
ROLE_NAMES = {"human": "user", "gpt": "assistant", "chatgpt": "assistant", "bot": "assistant", "model": "assistant"}
ASSISTANT = "assistant"


def conversation(value: Any) -> list[dict[str, str]] | None:
    """A cell as a conversation: a list of turns (or such a list written as JSON or Python), each
    a mapping with a role and its text, as ``{"role", "content"}`` (ShareGPT's speakers named as
    chat templates name them); None for anything else."""
    turns = list_cell(value)
    if not turns:
        return None
    out = []
    for turn in turns:
        if not isinstance(turn, Mapping):
            return None
        keys = next(((role, content) for role, content in TURN_KEYS if role in turn and content in turn), None)
        if keys is None or not isinstance(turn[keys[0]], str) or not isinstance(turn[keys[1]], str):
            return None
        role = turn[keys[0]].strip().lower()
        out.append({"role": ROLE_NAMES.get(role, role), "content": turn[keys[1]]})
    return out


def holds_conversations(values: Iterable[Any]) -> bool:
    """Whether every cell given (missing ones aside) is a conversation, and there is one."""
    seen = False
    for value in values:
        if value is None or (isinstance(value, float) and value != value):
            continue
        if conversation(value) is None:
            return False
        seen = True
    return seen


def prompt_and_response(cells: Sequence[Any], column: str, split: str,
                        row: int) -> tuple[list[dict[str, str]], str]:
    """(the turns before the reply, the reply) of the conversation a row's ``cells`` hold, one per
    message column, their turns in order; DataError naming the row where a cell is no
    conversation, or the turns do not end with an assistant's reply to earlier turns."""
    parts = [conversation(cell) for cell in cells]
    where = f"data.{MESSAGES_COLUMN_FIELD}: {column!r} in {split} row {row}"
    if any(part is None for part in parts):
        bad = next(cell for cell, part in zip(cells, parts, strict=True) if part is None)
        raise DataError(f"{where} is no conversation; expected a list of turns, each with role and content "
                        f"(or from and value), found {type(bad).__name__}")
    turns = [turn for part in parts for turn in part or []]
    last = turns[-1]
    if last["role"] != ASSISTANT:
        raise DataError(f"{where} ends with a {last['role']!r} turn; expected the assistant's reply last "
                        "(what the model learns to write)")
    if not last["content"].strip():
        raise DataError(f"{where} ends with an empty reply")
    if len(turns) < 2:
        raise DataError(f"{where} holds the assistant's reply alone; expected the turns it answers before it")
    return turns[:-1], last["content"]


def prompts_and_responses(frame: pd.DataFrame, columns: Sequence[str],
                          split: str) -> list[tuple[list[dict[str, str]], str]]:
    """:func:`prompt_and_response` of each row of ``frame``, its cells one per message column in
    ``columns``; a row is named by its index (its row in the file)."""
    label = "+".join(columns)  # as errors name the conversation: 'messages', or 'prompt+completion'
    return [prompt_and_response(cells, label, split, int(row))
            for row, cells in zip(frame.index, frame[list(columns)].itertuples(index=False, name=None), strict=True)]


def check_rendering(prompts: Iterable[Any], tokenizer: Any, most: int = 2000) -> None:
    """DataError where the model's chat template refuses one of the first ``most`` prompts that
    are conversations: before any compute starts, rather than in the encoding of every trial."""
    for value in islice(prompts, most):
        turns = conversation(value)
        if turns is not None:
            render_prompt(turns, tokenizer)


def render_prompt(turns: list[dict[str, str]], tokenizer: Any) -> tuple[str, bool]:
    """The text a model is prompted with for the reply to ``turns``, and whether the tokenizer is
    to add its special tokens to it: the model's chat template with the assistant's turn opened
    (its text holds the template's own tokens), else one ``role: content`` line a turn, then
    ``assistant: ``. DataError where the template refuses the turns (a role it does not know)."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return str(tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)), False
        except Exception as exc:  # jinja2's TemplateError (raise_exception in the template), and the like
            raise DataError(f"data.{MESSAGES_COLUMN_FIELD}: the model's chat template refuses a conversation "
                            f"(roles {', '.join(t['role'] for t in turns)}): {' '.join(str(exc).split())[:200]}") from None
    return "".join(f"{turn['role']}: {turn['content']}\n" for turn in turns) + f"{ASSISTANT}: ", True
