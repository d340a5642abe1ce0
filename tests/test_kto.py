"""trainer=kto: unpaired data detected and converted (plain Python), the balance warning, a real KTO run."""

from __future__ import annotations

import json

import pytest

from aitraining.choices import DataFormat
from aitraining.compose import compose
from aitraining.config import DataConfig
from aitraining.data import load_examples
from aitraining.data.unpaired import balance_warning, unpair
from aitraining.errors import ConfigError, DataError
from conftest import PAIRS, read_run

KIND = "Question {i}: which word is kind?\nAnswer:"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def feedback(n: int = 32, good_every: int = 2) -> list[dict]:
    """Unpaired examples: a kind reply is desirable, a colour is not (every `good_every`-th one is good)."""
    return [{"prompt": KIND.format(i=i), "completion": " thank you" if i % good_every == 0 else " red rock",
             "label": i % good_every == 0} for i in range(n)]  # fmt: skip


def test_prompt_completion_label_is_detected_as_unpaired(tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", feedback(4))
    examples = load_examples(DataConfig(path=str(path)))
    assert examples.format is DataFormat.unpaired and not examples.is_chat
    assert examples.train[0] == {"prompt": KIND.format(i=0), "completion": " thank you", "label": True}
    assert examples.train[1]["label"] is False


def test_messages_with_label_split_off_the_final_reply(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}], "label": "true"},  # a CSV-style label
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
             "label": 0}]  # fmt: skip
    examples = load_examples(DataConfig(path=str(write_jsonl(tmp_path / "chat.jsonl", rows))))
    assert examples.format is DataFormat.unpaired and examples.is_chat
    first, second = examples.train
    assert first["prompt"] == rows[0]["messages"][:2] and first["completion"] == rows[0]["messages"][2:]
    assert first["label"] is True and second["label"] is False


def test_a_bad_label_names_the_record(tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "a", "completion": "b", "label": "maybe"}])
    with pytest.raises(DataError, match=r"kto.jsonl line 1: 'label' must be true .* got 'maybe'"):
        load_examples(DataConfig(path=str(path)))


def test_a_conversation_that_does_not_end_with_the_reply_is_named(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Hi"}], "label": True}]
    with pytest.raises(DataError, match=r"chat.jsonl line 1: 'messages' must end with the assistant's reply"):
        load_examples(DataConfig(path=str(write_jsonl(tmp_path / "chat.jsonl", rows))))


def test_unpaired_format_without_its_columns_says_what_it_needs(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "hello", "label": True}])
    with pytest.raises(DataError, match=r"unpaired data needs 'prompt' \+ 'completion' \+ 'label', or 'messages'"):
        load_examples(DataConfig(path=str(path), format=DataFormat.unpaired))


def test_preference_pairs_unpair_into_one_good_and_one_bad():
    rows = unpair([{"prompt": "p", "chosen": "good", "rejected": "bad"}])
    assert rows == [{"prompt": "p", "completion": "good", "label": True},
                    {"prompt": "p", "completion": "bad", "label": False}]  # fmt: skip


@pytest.mark.parametrize(
    "counts,weights,warned",
    [((16, 16), (1.0, 1.0), False), ((16, 48), (1.0, 1.0), True), ((16, 48), (3.5, 1.0), False),
     ((16, 48), (1.0, 0.3), False), ((16, 16), (2.0, 1.0), True), ((0, 10), (1.0, 1.0), False)],
)  # fmt: skip
def test_balance_warning_follows_the_range_kto_expects(counts, weights, warned):
    message = balance_warning(*counts, *weights)
    assert (message is not None) is warned
    if warned:
        assert "trainer.desirable_weight in [" in message and "trainer.undesirable_weight in [" in message


def test_balance_warning_gives_the_range_for_the_data():
    message = balance_warning(16, 48, 1.0, 1.0)
    assert "= 0.33; KTO expects 1 to 1.33" in message
    assert (
        "trainer.desirable_weight in [3.00, 4.00]" in message
        and "trainer.undesirable_weight in [0.25, 0.33]" in message
    )


def test_kto_fields_are_checked():
    with pytest.raises(ConfigError, match="trainer.desirable_weight must be > 0"):
        compose(["trainer=kto", "trainer.desirable_weight=0"])
    with pytest.raises(ConfigError, match="trainer=kto needs trainer.batch_size >= 2"):
        compose(["trainer=kto", "trainer.batch_size=1"])
    with pytest.raises(
        ConfigError, match=r"^trainer.loss_type: Invalid value 'ipo', expected one of \[kto, apo_zero_unpaired\]\.$"
    ):
        compose(["trainer=kto", "trainer.loss_type=ipo"])  # loss_type is DPO's too, with other values
    cfg = compose(["trainer=kto", "trainer.batch_size=1", "trainer.loss_type=apo_zero_unpaired"])
    assert cfg.trainer.loss_type.value == "apo_zero_unpaired"


def test_sft_on_unpaired_data_names_kto(cli, tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", feedback(8))
    result = cli("experiment=quickstart", f"data.path={path}", "data.format=auto")
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "Data of this shape trains with trainer=kto" in result.stderr


@pytest.mark.slow
def test_kto_trains_and_warns_about_the_balance(cli, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = write_jsonl(tmp_path / "kto.jsonl", feedback(64, good_every=4))  # 16 desirable, 48 not
    out = tmp_path / "kto"
    result = cli("experiment=quickstart", "trainer=kto", f"data.path={path}", "data.format=auto",
                 "trainer.learning_rate=3e-3", "trainer.max_steps=12", "trainer.logging_steps=1",
                 "trainer.desirable_weight=1.0", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("WARNING: KTO balance")]
    assert len(ours) == 1 and "trainer.desirable_weight in [3.00, 4.00]" in ours[0]
    assert "different amounts of desirable" not in result.stderr  # TRL's own words for it: said once is enough
    run = read_run(out)
    assert run["trainer"] == "kto" and run["data"]["format"] == "unpaired"
    assert (run["data"]["desirable"], run["data"]["undesirable"]) == (16, 48)
    history = json.loads((out / "metrics.json").read_text())
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    assert len(margins) >= 10 and sum(margins[-3:]) > sum(margins[:3]), margins  # it learns which is kind
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run["model"]["path"]), out / "adapter")
    assert any("lora_B" in name for name, _ in model.named_parameters())


@pytest.mark.slow
def test_kto_on_conversational_pairs_unpairs_them(cli, tmp_path):
    out = tmp_path / "kto-pairs"
    result = cli("experiment=quickstart", "trainer=kto", f"data.path={PAIRS}", "data.format=auto",
                 "data.max_samples=16", "trainer.max_prompt_length=48", "trainer.max_completion_length=32",
                 "trainer.max_steps=2", "trainer.logging_steps=1", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    data = read_run(out)["data"]
    assert data["format"] == "preference" and data["unpaired_from_pairs"] is True
    assert (data["desirable"], data["undesirable"]) == (16, 16) and data["examples_cut"] > 0
