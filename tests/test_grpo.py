"""trainer=grpo: reward functions named, checked early and loaded; prompts from every data shape; a real
GRPO run on the tiny model with the user's reward file."""

from __future__ import annotations

import json
import textwrap

import pytest

from aitraining import rewards
from aitraining.choices import DataFormat
from aitraining.compose import compose
from aitraining.config import DataConfig
from aitraining.data import load_examples
from aitraining.data.prompts import to_prompt
from aitraining.errors import ConfigError
from conftest import ALPACA, read_run

# A user's reward file: it records the keyword arguments TRL passed (to prove the data's columns arrive).
USER_REWARDS = """
import json, os

def short_and_polite(prompts, completions, reference, solution, **kwargs):
    with open(os.environ["SEEN_FILE"], "w") as handle:
        json.dump({"keys": sorted(kwargs) + ["prompts", "completions", "reference", "solution"],
                   "reference": reference[:2], "solution": solution[:2]}, handle)
    return [1.0 if "please" in c else -0.01 * len(c) for c in completions]

def no_kwargs(prompts, completions):
    return [0.0 for _ in completions]

def wants_a_grade(completions, grade, **kwargs):
    return [0.0 for _ in completions]
"""


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def grpo(*overrides: str):
    return compose(["trainer=grpo", *overrides])


# --------------------------------------------------------------------------- reward functions, checked early


def test_built_ins_and_user_functions_pass_the_early_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mine.py", USER_REWARDS)
    cfg = grpo("trainer.reward_funcs=[answer_format,length,mine.py:short_and_polite,json:dumps]")
    assert cfg.trainer.reward_funcs[2] == "mine.py:short_and_polite"


@pytest.mark.parametrize(
    "entry,needle",
    [
        ("answer_fromat", "'answer_fromat' is not a built-in reward (answer_format, answer_match, length). "
                          "Did you mean 'answer_format'?"),
        ("missing.py:score", "'missing.py:score': no such file missing.py"),
        ("mine.py:short_polite", "mine.py defines no function 'short_polite'. Did you mean 'short_and_polite'? "
                                 "It defines: json, os, short_and_polite, no_kwargs, wants_a_grade."),
        ("broken.py:score", "'broken.py:score': broken.py line 2: not valid Python"),
        ("no_such_module_here:score", "no module named 'no_such_module_here'"),
        ("mine.py:9lives", "'9lives' is not a function name"),
    ],
)  # fmt: skip
def test_a_bad_reward_entry_names_the_file_and_function(tmp_path, monkeypatch, entry, needle):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mine.py", USER_REWARDS)
    write(tmp_path / "broken.py", "def score(completions, **kwargs):\n    return [1.0 for c in completions\n")
    with pytest.raises(ConfigError) as caught:
        grpo(f"trainer.reward_funcs=[{entry}]")
    assert caught.value.key == "trainer.reward_funcs" and needle in str(caught.value)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["trainer.reward_funcs=[]"], "trainer.reward_funcs is empty"),
        (["trainer.reward_funcs=[length,length]"], "names length twice"),
        (["trainer.reward_funcs=[length,answer_format]", "trainer.reward_weights=[1.0]"],
         "trainer.reward_weights has 1 weight(s) for 2 reward function(s)"),
        (["trainer.num_generations=1"], "trainer.num_generations must be >= 2"),
        (["trainer.batch_size=3", "trainer.num_generations=2"], "(3 x 1 = 3 completions per step) must be a multiple"),
        (["trainer.answer_pattern='(unclosed'"], "trainer.answer_pattern is not a valid regex"),
        (["trainer.temperature=0"], "trainer.temperature must be > 0"),
    ],
)  # fmt: skip
def test_grpo_settings_are_checked(overrides, needle):
    with pytest.raises(ConfigError) as caught:
        grpo(*overrides)
    assert needle in str(caught.value)


def test_reward_file_is_checked_before_torch_is_imported(cli, tmp_path):
    result = cli("experiment=quickstart", "trainer=grpo", "trainer.reward_funcs=[rewards.py:score]",
                 python_flags=("-X", "importtime"))  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "ERROR: trainer.reward_funcs: 'rewards.py:score': no such file rewards.py" in result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "transformers"} & imported


# --------------------------------------------------------------------------- loaded, and checked against the data


def loaded_config(tmp_path, monkeypatch, *entries: str):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mine.py", USER_REWARDS)
    return grpo(f"trainer.reward_funcs=[{','.join(entries)}]").trainer


def test_user_functions_must_take_what_trl_gives(tmp_path, monkeypatch):
    t = loaded_config(tmp_path, monkeypatch, "mine.py:no_kwargs")
    with pytest.raises(ConfigError, match=r"'mine.py:no_kwargs' must accept \*\*kwargs: TRL passes prompts"):
        rewards.check_columns(t, ["reference"], "data.jsonl")
    t = loaded_config(tmp_path, monkeypatch, "mine.py:wants_a_grade")
    with pytest.raises(ConfigError, match=r"requires 'grade', which it will not get: .* columns are reference"):
        rewards.check_columns(t, ["reference"], "data.jsonl")
    rewards.check_columns(t, ["reference", "grade"], "data.jsonl")  # a column of that name: fine


def test_answer_match_needs_reference_answers(tmp_path, monkeypatch):
    t = loaded_config(tmp_path, monkeypatch, "answer_match")
    with pytest.raises(ConfigError, match=r"answer_match compares each completion with the prompt's 'reference'"):
        rewards.check_columns(t, ["solution"], "data.jsonl")


def test_an_exception_while_importing_names_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "boom.py", "import math\n\nVALUE = 1 / 0\n\ndef score(completions, **kwargs):\n    return []\n")
    t = grpo("trainer.reward_funcs=[boom.py:score]").trainer
    with pytest.raises(ConfigError, match=r"running boom.py line 3 raised ZeroDivisionError: division by zero"):
        rewards.load(t)


def test_built_ins_score_text_and_chat_completions():
    pattern = r"<answer>(.*?)</answer>"
    texts = ["I think <answer> 42 </answer>", "forty-two", "<answer>41</answer>"]
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    for completions in (texts, chats):
        assert rewards.answer_format(completions, pattern=pattern) == [1.0, 0.0, 1.0]
        assert rewards.answer_match(completions, pattern=pattern, reference=["42", "Forty-Two", "42"]) == [
            1.0,
            1.0,
            0.0,
        ]
    assert rewards.answer_match(texts[:1], pattern=pattern, reference=[None]) == [None]
    assert rewards.length([[1] * 4, [1] * 8, [1] * 20], target=8) == [0.5, 1.0, 0.0]


# --------------------------------------------------------------------------- prompts from every shape


def test_prompt_data_keeps_every_other_column(tmp_path):
    rows = [{"prompt": "What is 6 x 7?", "solution": "42", "difficulty": 1}]
    examples = load_examples(DataConfig(path=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    assert examples.format is DataFormat.prompt
    assert examples.train == [{"prompt": "What is 6 x 7?", "solution": "42", "difficulty": 1}]


def test_alpaca_instructions_without_output_are_prompts(tmp_path):
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "answer": "5"}]
    examples = load_examples(DataConfig(path=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    assert examples.format is DataFormat.prompt
    assert examples.train[0]["prompt"].startswith("### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3")
    assert examples.train[0]["answer"] == "5" and "instruction" not in examples.train[0]


def test_alpaca_output_and_final_assistant_turn_become_the_reference():
    alpaca = {"prompt": "### Instruction:\nSay hi\n\n### Response:\n", "completion": "hi"}
    assert to_prompt(alpaca, DataFormat.prompt_completion) == {"prompt": alpaca["prompt"], "reference": "hi"}
    turns = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert to_prompt({"messages": turns}, DataFormat.messages) == {"prompt": turns[:1], "reference": "4"}
    assert to_prompt({"messages": turns[:1]}, DataFormat.messages) == {"prompt": turns[:1]}


def test_grpo_on_text_data_names_what_it_needs(cli):
    from conftest import TEXT

    result = cli("experiment=quickstart", "trainer=grpo", f"data.path={TEXT}", "data.format=auto")
    assert result.returncode != 0 and "trainer=grpo needs prompts: a 'prompt' column" in result.stderr


def test_a_reward_function_that_cannot_be_called_stops_before_the_model_loads(cli, tmp_path):
    write(tmp_path / "mine.py", USER_REWARDS)
    result = cli("experiment=quickstart", "trainer=grpo", "trainer.reward_funcs=[mine.py:no_kwargs]")
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "'mine.py:no_kwargs' must accept **kwargs" in result.stderr and "Loading tiny:llama" not in result.stderr


# --------------------------------------------------------------------------- training


GRPO_QUICK = ["experiment=quickstart", "trainer=grpo", "trainer.num_generations=2", "trainer.batch_size=4",
              "trainer.max_completion_length=8", "trainer.max_steps=3", "trainer.logging_steps=1",
              "trainer.learning_rate=1e-3", "model.max_seq_length=256"]  # fmt: skip


@pytest.mark.slow
def test_grpo_trains_with_a_user_reward_file(cli, tmp_path):
    write(tmp_path / "mine.py", USER_REWARDS)
    rows = [{"prompt": f"Ask nicely for item {i}:", "completion": f"item {i}, please", "solution": str(i)}
            for i in range(16)]  # fmt: skip
    path = write_jsonl(tmp_path / "asks.jsonl", rows)
    out, seen = tmp_path / "grpo", tmp_path / "seen.json"
    result = cli(*GRPO_QUICK, f"data.path={path}", "data.format=prompt", f"output_dir={out}",
                 "trainer.reward_funcs=[mine.py:short_and_polite,length]", "trainer.target_length=4",
                 extra_env={"SEEN_FILE": str(seen)})  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    # TRL called the user's function with the data's other columns: the solution, and the completion as reference
    got = json.loads(seen.read_text())
    assert got["solution"] == ["0", "0"] or got["solution"][0] == got["solution"][1]  # a group shares its prompt
    assert {"completion_ids", "trainer_state", "reference", "solution"} <= set(got["keys"])
    assert got["reference"][0].startswith("item ")
    run = read_run(out)
    assert run["trainer"] == "grpo" and run["data"]["reward_columns"] == ["reference", "solution"]
    assert run["results"]["reward_funcs"] == ["mine.py:short_and_polite", "length"]
    assert set(run["results"]["rewards"]) == {"short_and_polite", "length"}
    history = json.loads((out / "metrics.json").read_text())
    steps = [h for h in history if "rewards/short_and_polite/mean" in h]
    assert len(steps) == 3 and all("rewards/length/mean" in h and "reward" in h for h in steps)
    assert run["results"]["rewards"]["short_and_polite"] == steps[-1]["rewards/short_and_polite/mean"]


@pytest.mark.slow
def test_grpo_on_chat_messages_and_alpaca(cli, tmp_path):
    chats = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]}
             for w in ("yes", "no", "maybe", "hello") * 2]  # fmt: skip
    for name, data in (("chat", write_jsonl(tmp_path / "chat.jsonl", chats)), ("alpaca", ALPACA)):
        out = tmp_path / name
        result = cli(*GRPO_QUICK, f"data.path={data}", "data.format=auto", "data.max_samples=16",
                     "trainer.max_steps=2", "trainer.reward_funcs=[answer_match,answer_format]",
                     f"output_dir={out}")  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
        run = read_run(out)
        assert run["data"]["reward_columns"] == ["reference"]
        assert set(run["results"]["rewards"]) == {"answer_match", "answer_format"}
