"""Chat data (autopeft/data/chat.py): conversations as OpenAI/TRL and ShareGPT write them, made
prompt/response pairs by ``load`` and rendered by the model's chat template when encoded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autopeft.config import DataConfig
from autopeft.data import IGNORE, conversation, encode_prompt_response, load, render_prompt
from autopeft.data.chat import prompt_and_response
from autopeft.errors import DataError
from autopeft.tasks import get_task
from tests.tiny_tasks import CHAT_TEMPLATE, chat_frame, write_jsonl

LM = get_task("causal_lm")
OPENAI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
          {"role": "assistant", "content": "Hello."}]


@pytest.fixture
def tokenizer(task_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(task_models["causal_lm"])


@pytest.mark.parametrize("cell", [
    OPENAI,
    [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}],
    json.dumps(OPENAI),  # a csv or a string column: JSON
    str(OPENAI),  # pandas' to_csv of a column of lists: Python's repr
    tuple(OPENAI),
])
def test_a_conversation_in_any_of_the_ways_it_is_written(cell):
    assert conversation(cell) == OPENAI


@pytest.mark.parametrize("cell", ["Hi?", ["Hi?", "Hello."], [{"role": "user"}], [{"role": "user", "content": 3}], [],
                                  None, "[not json"])
def test_what_is_no_conversation(cell):
    assert conversation(cell) is None


@pytest.mark.parametrize("turns, said", [
    (OPENAI[:2], "ends with a 'user' turn; expected the assistant's reply last (what the model learns to write)"),
    ([*OPENAI[:2], {"role": "assistant", "content": " "}], "ends with an empty reply"),
    (OPENAI[2:], "holds the assistant's reply alone; expected the turns it answers before it"),
    ("Hi?", "is no conversation; expected a list of turns, each with role and content (or from and value), found str"),
])
def test_a_conversation_that_is_no_example_is_one_line(turns, said):
    with pytest.raises(DataError) as excinfo:
        prompt_and_response((turns,), "messages", "train", 7)
    assert str(excinfo.value) == f"data.messages_column: 'messages' in train row 7 {said}"


def test_the_prompt_is_rendered_by_the_models_chat_template(tokenizer):
    assert render_prompt(OPENAI[:2], tokenizer) == ("system: Be brief.\nuser: Hi?\nassistant: ", True)
    tokenizer.chat_template = CHAT_TEMPLATE
    assert render_prompt(OPENAI[:2], tokenizer) == ("system Be brief. user Hi? say ", False)
    tokenizer.chat_template = "{{ raise_exception('no system turn') }}"
    with pytest.raises(DataError, match=r"^data\.messages_column: the model's chat template refuses a conversation "
                                        r"\(roles system, user\): no system turn$"):
        render_prompt(OPENAI[:2], tokenizer)


def test_load_makes_a_prompt_and_response_of_each_conversation(tmp_path: Path, tokenizer):
    train = write_jsonl(chat_frame(20), tmp_path / "train.jsonl")
    raw = load(DataConfig(train=str(train), messages_column="messages"), LM, seed=0)
    assert raw.text_columns == ["prompt"] and raw.label_column == "response"
    first = raw.frames["train"].iloc[0]
    assert first["prompt"][0] == {"role": "system", "content": "play"} and first["prompt"][1]["role"] == "user"
    assert first["response"].startswith("the ")
    # encoded as the model is prompted: the template's text, the reply (and EOS) the only labels
    tokenizer.chat_template = CHAT_TEMPLATE
    split = encode_prompt_response(raw.frames["train"].head(1), ["prompt"], "response", [], tokenizer, 64)
    prompt_ids = tokenizer(render_prompt(first["prompt"], tokenizer)[0], add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(first["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert split.input_ids[0] == prompt_ids + reply_ids
    assert split.labels[0] == [IGNORE] * len(prompt_ids) + reply_ids


def test_chat_data_that_cannot_be_read_so_is_one_line(tmp_path: Path):
    train = write_jsonl(chat_frame(20), tmp_path / "train.jsonl")
    with pytest.raises(DataError, match=r"^data\.messages_column: column 'mesages' is not in the train data "
                                        r"\(columns: messages\); did you mean 'messages'\?$"):
        load(DataConfig(train=str(train), messages_column="mesages"), LM, seed=0)
    with pytest.raises(DataError, match=r"^data\.messages_column: sequence_classification reads no conversations "
                                        r"\(causal_lm does\)$"):
        load(DataConfig(train=str(train), messages_column="messages"), get_task("sequence_classification"), seed=0)
    taken = write_jsonl(chat_frame(20).assign(response="kept"), tmp_path / "taken.jsonl")
    with pytest.raises(DataError, match=r"^data\.response_column: the train data has a column 'response' already; "
                                        r"name the column made of the conversations' replies otherwise$"):
        load(DataConfig(train=str(taken), messages_column="messages"), LM, seed=0)
    # named otherwise, both are kept apart
    raw = load(DataConfig(train=str(taken), messages_column="messages", response_column="reply"), LM, seed=0)
    assert raw.label_column == "reply" and raw.frames["train"]["reply"].str.startswith("the ").all()
    unfinished = pd.DataFrame({"messages": [OPENAI] * 10 + [OPENAI[:2]]})
    with pytest.raises(DataError, match=r"'messages' in train row 10 ends with a 'user' turn"):
        load(DataConfig(train=str(write_jsonl(unfinished, tmp_path / "cut.jsonl")), messages_column="messages",
                        validation_fraction=0.5), LM, seed=0)


def test_trls_conversational_prompt_and_completion_make_one_conversation(tmp_path: Path):
    """TRL's conversational prompt-completion data: the prompt's turns in one column, the reply's
    in another. Named together, their turns make one conversation a row."""
    frame = pd.DataFrame({"prompt": [OPENAI[:2]] * 10, "completion": [OPENAI[2:]] * 10})
    train = write_jsonl(frame, tmp_path / "train.jsonl")
    raw = load(DataConfig(train=str(train), messages_column=["prompt", "completion"]), LM, seed=0)
    first = raw.frames["train"].iloc[0]
    assert first["prompt"] == OPENAI[:2] and first["response"] == "Hello."
    cut = write_jsonl(frame.assign(completion=["Hello."] * 10), tmp_path / "cut.jsonl")
    with pytest.raises(DataError, match=r"^data\.messages_column: 'prompt\+completion' in train row 0 is no "
                                        r"conversation; .* found str$"):
        load(DataConfig(train=str(cut), messages_column=["prompt", "completion"]), LM, seed=0)
