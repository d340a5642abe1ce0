"""Data at scale: sources read lazily, mixtures by weight, the tokenization cache, streaming, datasets
saved to disk or laid out as on the hub (tests cannot reach the hub: the same code path reads a local
hub-style folder), and line-numbered errors past the rows checked before the model loads."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from aitraining import chat_templates, data
from aitraining.choices import DataFormat, MixStopping
from aitraining.compose import compose
from aitraining.config import Config, DataConfig, ModelConfig
from aitraining.config.data import SourceConfig
from aitraining.data import load_examples
from aitraining.data import prepare as prepare_module
from aitraining.data.encode import prepare
from aitraining.data.prepare import Store
from aitraining.errors import ConfigError, DataError
from aitraining.trainers.sft import SFTTrainerConfig
from conftest import ALPACA


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca_rows(n: int, tag: str = "q") -> list[dict]:
    return [{"instruction": f"{tag} {i}?", "input": "", "output": f"answer {i}."} for i in range(n)]


def chat_rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
            for i in range(n)]  # fmt: skip


def config(tmp_path: Path, max_len: int = 256, trainer=None, **data) -> Config:
    data.setdefault("cache_dir", str(tmp_path / "cache"))
    return Config(
        model=ModelConfig(name="tiny:llama", max_seq_length=max_len),
        trainer=trainer or SFTTrainerConfig(),
        data=DataConfig(**data),
    )


def ready(tokenizer, cfg: Config):
    examples = load_examples(cfg.data, cfg.seed)
    template = chat_templates.setup(tokenizer, cfg, examples.chat_format) if examples.is_chat else None
    return examples, prepare(examples, tokenizer, cfg, template)


# --------------------------------------------------------------------------- mixtures


def test_a_mixture_converts_each_format_and_reports_every_source(tmp_path, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(60))
    b = write_jsonl(tmp_path / "b.jsonl", chat_rows(40))
    mix = [SourceConfig(path=str(a), weight=0.5), SourceConfig(path=str(b), weight=0.5)]
    examples, prepared = ready(tokenizer, config(tmp_path, mix=mix))
    assert [s.raw_format for s in examples.sources] == [DataFormat.alpaca, DataFormat.messages]
    assert prepared.train.column_names == ["input_ids", "labels"]
    entries = {e.path: e for e in prepared.sources}
    assert entries[str(a)].format == "alpaca" and entries[str(b)].format == "messages"
    assert entries[str(a)].rows_read == 60 and entries[str(b)].rows_read == 40
    used = entries[str(a)].rows_used + entries[str(b)].rows_used
    assert used == len(prepared.train) and entries[str(b)].rows_used == 40  # first_exhausted: b runs out first
    # Both formats are in the mixed set: Alpaca prompts and chat turns.
    texts = [tokenizer.decode(ids) for ids in prepared.train["input_ids"]]
    assert any("### Instruction" in t for t in texts) and any("hello" in t for t in texts)


def test_weights_decide_each_sources_share(tmp_path, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(200, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", alpaca_rows(200, "b"))

    def shares(wa: float, wb: float) -> tuple[int, int]:
        mix = [SourceConfig(path=str(a), weight=wa), SourceConfig(path=str(b), weight=wb)]
        _, prepared = ready(tokenizer, config(tmp_path, mix=mix, mix_stopping=MixStopping.all_exhausted))
        return tuple(e.rows_used for e in prepared.sources)

    heavy_a, heavy_b = shares(0.8, 0.2), shares(0.2, 0.8)
    # all_exhausted: every source is seen whole, the lighter one repeats; the heavier is drawn ~4x as often.
    assert heavy_a[0] > 2.5 * heavy_a[1] and heavy_b[1] > 2.5 * heavy_b[0]


def test_each_source_takes_its_own_format_columns_and_max_samples(tmp_path, tokenizer):
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(30)])
    text = write_jsonl(tmp_path / "t.jsonl", [{"body": f"plain text {i}"} for i in range(30)])
    mix = [
        SourceConfig(path=str(qa), columns={"question": "prompt", "answer": "completion"}, max_samples=10),
        SourceConfig(path=str(text), format=DataFormat.text, columns={"body": "text"}, max_samples=5),
    ]
    examples, prepared = ready(tokenizer, config(tmp_path, mix=mix, mix_stopping=MixStopping.all_exhausted))
    assert [s.format for s in examples.sources] == [DataFormat.prompt_completion, DataFormat.text]
    assert [e.examples for e in prepared.sources] == [10, 5]


def test_a_mixture_source_of_the_wrong_shape_names_itself(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(4))
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    examples = load_examples(DataConfig(mix=[SourceConfig(path=str(a)), SourceConfig(path=str(pairs))]))
    with pytest.raises(DataError, match=r"p\.jsonl: trainer=sft needs"):
        data.check_trainer(SFTTrainerConfig().kind, examples)


def test_mixture_keys_compose_and_validate():
    cfg = compose(["data.mix=[{path: a.jsonl, weight: 0.7}, {path: b.json, weight: 0.3, format: alpaca}]",
                   "data.mix.0.weight=0.6"])  # fmt: skip
    assert [s.weight for s in cfg.data.mix] == [0.6, 0.3] and cfg.data.mix[1].format is DataFormat.alpaca
    with pytest.raises(ConfigError, match=r"data\.mix\.1\.weight must be > 0"):
        compose(["data.mix=[{path: a.jsonl}, {path: b.json, weight: 0}]"])


def test_hydra_sweeps_over_mixture_weights():
    """Each weight is sweepable on its own (data.mix.N.weight=x,y), and so is the whole list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    one = parser.parse_overrides(["data.mix.0.weight=0.7,0.5"])[0]
    assert one.is_sweep_override() and [v for v in one.sweep_string_iterator()] == ["0.7", "0.5"]
    whole = parser.parse_overrides(["data.mix=[{path: a.jsonl, weight: 0.7}],[{path: a.jsonl, weight: 0.5}]"])[0]
    assert whole.is_sweep_override() and len(list(whole.sweep_iterator())) == 2


# --------------------------------------------------------------------------- the cache


def test_the_cache_is_reused_and_keyed_by_what_changes_the_data(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(20))
    first = ready(tokenizer, config(tmp_path, path=str(path)))[1]
    again = ready(tokenizer, config(tmp_path, path=str(path)))[1]
    assert first.sources[0].cache == "miss" and again.sources[0].cache == "hit"
    assert again.train["input_ids"] == first.train["input_ids"] and again.stats["cache"]["entries_bytes"] > 0
    # A key that does not change the data (the learning rate) hits; one that does misses.
    other_lr = ready(tokenizer, config(tmp_path, path=str(path), trainer=SFTTrainerConfig(learning_rate=1e-3)))[1]
    assert other_lr.sources[0].cache == "hit"
    for cfg in (config(tmp_path, max_len=128, path=str(path)),
                config(tmp_path, path=str(path), trainer=SFTTrainerConfig(response_only_loss=False)),
                config(tmp_path, path=str(path), max_samples=5)):  # fmt: skip
        assert ready(tokenizer, cfg)[1].sources[0].cache == "miss"
    write_jsonl(path, alpaca_rows(21))  # the file's content changed
    assert ready(tokenizer, config(tmp_path, path=str(path)))[1].sources[0].cache == "miss"
    # A different chat template on the same tokenizer changes the key too.
    chats = write_jsonl(tmp_path / "c.jsonl", chat_rows(4))
    assert ready(tokenizer, config(tmp_path, path=str(chats)))[1].sources[0].cache == "miss"
    tokenizer.chat_template = chat_templates.resolve("llama3")
    cfg = config(tmp_path, path=str(chats))
    examples = load_examples(cfg.data)
    template = chat_templates.setup(tokenizer, cfg, examples.format)
    assert prepare(examples, tokenizer, cfg, template).sources[0].cache == "miss"


def test_cache_off_writes_nothing_to_the_cache_folder(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(8))
    prepared = ready(tokenizer, config(tmp_path, path=str(path), cache=False))[1]
    assert prepared.sources[0].cache == "off" and prepared.stats["cache"] is None and len(prepared.train) == 8
    assert not (tmp_path / "cache").exists()


def _save_entry(folder: str, key: str) -> str:
    """A process that writes one cache entry (atomically) and reads it back."""
    from datasets.arrow_writer import ArrowWriter

    def write(staging: Path) -> dict:

        writer = ArrowWriter(path=str(staging / "data.arrow"))
        writer.write_batch({"x": list(range(1000))})
        writer.finalize()
        writer.close()
        return {"counts": {}}

    dataset, _ = Store(Path(folder), keyed=True).save(key, write)
    return str(sum(dataset["x"]))


def test_processes_writing_the_same_entry_at_once_both_get_it_whole(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sums = pool.starmap(_save_entry, [(str(tmp_path), "k")] * 2)
    assert sums == [str(sum(range(1000)))] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # one entry, no staging folder left


# --------------------------------------------------------------------------- errors past the first rows


def test_a_bad_row_past_the_first_rows_names_its_file_and_line(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(data, "HEAD_ROWS", 5)
    rows = [json.dumps(r) for r in alpaca_rows(12)]
    rows[9] = json.dumps({"instruction": 3, "output": "x"})  # line 10: not a string
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(rows) + "\n")
    cfg = config(tmp_path, path=str(path))
    examples = load_examples(cfg.data)  # the first 5 rows are fine
    with pytest.raises(DataError, match=r"big\.jsonl line 10: 'instruction' must be a string"):
        prepare(examples, tokenizer, cfg, None)


def test_bad_json_past_the_first_rows_names_its_line(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(data, "HEAD_ROWS", 2)
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in alpaca_rows(5)) + "{oops\n")
    cfg = config(tmp_path, path=str(path))
    with pytest.raises(DataError, match=r"big\.jsonl line 6: not valid JSON"):
        prepare(load_examples(cfg.data), tokenizer, cfg, None)


# --------------------------------------------------------------------------- streaming


def test_streaming_gives_an_iterable_dataset_read_lazily(tmp_path, tokenizer, monkeypatch):
    from datasets import IterableDataset

    monkeypatch.setattr(data, "HEAD_ROWS", 3)
    monkeypatch.setattr(prepare_module, "STREAM_BATCH", 4)  # rows are prepared a batch at a time
    rows = [json.dumps(r) for r in alpaca_rows(10)]
    rows[7] = json.dumps({"instruction": ["not", "text"], "output": "x"})  # line 8
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(rows) + "\n")
    cfg = config(tmp_path, path=str(path), streaming=True, trainer=SFTTrainerConfig(max_steps=2))
    prepared = ready(tokenizer, cfg)[1]
    assert isinstance(prepared.train, IterableDataset) and prepared.stats["streaming"] is True
    assert prepared.sources[0].rows_read is None and not (tmp_path / "cache").exists()  # nothing counted ahead
    stream = iter(prepared.train)
    first = next(stream)
    assert set(first) == {"input_ids", "labels"} and tokenizer.decode(first["input_ids"]).startswith("### Instruction")
    with pytest.raises(DataError, match=r"s\.jsonl line 8: 'instruction' must be a string"):
        list(stream)


def test_streaming_a_mixture_interleaves_lazily(tmp_path, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(30, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", alpaca_rows(30, "b"))
    mix = [SourceConfig(path=str(a), weight=0.5), SourceConfig(path=str(b), weight=0.5)]
    cfg = config(tmp_path, mix=mix, streaming=True, trainer=SFTTrainerConfig(max_steps=2))
    texts = [tokenizer.decode(r["input_ids"]) for r in ready(tokenizer, cfg)[1].train]
    assert any("a 0?" in t for t in texts) and any("b 0?" in t for t in texts)


def test_streaming_needs_max_steps_and_no_valid_size():
    with pytest.raises(ConfigError, match="data.streaming=true needs trainer.max_steps"):
        compose(["data.streaming=true"])
    with pytest.raises(ConfigError, match="data.valid_size needs the whole data"):
        compose(["data.streaming=true", "trainer.max_steps=3", "data.valid_size=0.1"])


# --------------------------------------------------------------------------- datasets on disk, hub layout


def _hub_style_folder(root: Path) -> Path:
    """A dataset laid out as a hub repository: README.md with two configs, parquet files under data/."""
    from datasets import Dataset

    for config_name, rows in (("alpaca", alpaca_rows(20)), ("plain", [{"text": f"t {i}"} for i in range(7)])):
        folder = root / "data" / config_name
        folder.mkdir(parents=True)
        Dataset.from_list(rows).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    Dataset.from_list(alpaca_rows(5, "v")).to_parquet(str(root / "data" / "alpaca" / "test-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: alpaca\n  data_files:\n  - split: train\n    path: data/alpaca/train-*\n"
        "  - split: test\n    path: data/alpaca/test-*\n"
        "- config_name: plain\n  data_files:\n  - split: train\n    path: data/plain/train-*\n---\n"
    )
    return root


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.mark.parametrize("streaming", [False, True])
def test_a_hub_style_folder_reads_with_subset_and_splits(tmp_path, tokenizer, hf_cache, streaming):
    root = _hub_style_folder(tmp_path / "org_name")
    trainer = SFTTrainerConfig(max_steps=2)
    cfg = config(tmp_path, path=str(root), subset="alpaca", valid_split="test", streaming=streaming, trainer=trainer)
    examples, prepared = ready(tokenizer, cfg)
    assert [s.name for s in examples.sources + examples.valid_sources] == [f"{root}[train]", f"{root}[test]"]
    assert examples.format is DataFormat.prompt_completion
    train = list(prepared.train)
    assert len(train) == 20 and len(list(prepared.valid)) == 5
    plain = load_examples(DataConfig(path=str(root), subset="plain"))
    assert plain.format is DataFormat.text and len(plain.train) == 7


def test_a_bad_row_of_a_dataset_names_its_split_and_row(tmp_path, hf_cache):
    from datasets import Dataset

    Dataset.from_list([{"text": "fine"}, {"text": ""}, {"text": None}]).save_to_disk(str(tmp_path / "d"))
    rows = load_examples(DataConfig(path=str(tmp_path / "d"))).train
    assert rows == [{"text": "fine"}]  # empty rows dropped as for files
    Dataset.from_list([{"text": "ok"}, {"text": "ok"}]).save_to_disk(str(tmp_path / "e"))
    cfg = DataConfig(path=str(tmp_path / "e"), format=DataFormat.alpaca)
    with pytest.raises(DataError, match=r"e\[train\] row 1: missing column\(s\) \['instruction', 'output'\]"):
        load_examples(cfg)


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_save_to_disk_folder_is_a_source(tmp_path, tokenizer, hf_cache, as_dict):
    from datasets import Dataset, DatasetDict

    train = Dataset.from_list(alpaca_rows(12))
    saved = DatasetDict({"train": train, "validation": Dataset.from_list(alpaca_rows(3))}) if as_dict else train
    saved.save_to_disk(str(tmp_path / "saved"))
    cfg = config(tmp_path, path=str(tmp_path / "saved"), valid_split="validation" if as_dict else None)
    prepared = ready(tokenizer, cfg)[1]
    assert len(prepared.train) == 12 and (len(prepared.valid) == 3 if as_dict else prepared.valid is None)
    again = ready(tokenizer, cfg)[1]
    assert again.sources[0].cache == "hit"  # keyed by the saved dataset's fingerprint


def test_the_shipped_sample_in_a_mixture_with_a_save_to_disk_folder(tmp_path, tokenizer, hf_cache):
    from datasets import Dataset

    Dataset.from_list(chat_rows(10)).save_to_disk(str(tmp_path / "chats"))
    mix = [SourceConfig(path=str(ALPACA), weight=0.9, max_samples=50),
           SourceConfig(path=str(tmp_path / "chats"), weight=0.1)]  # fmt: skip
    _, prepared = ready(tokenizer, config(tmp_path, mix=mix))
    assert [e.format for e in prepared.sources] == ["alpaca", "messages"]


def test_a_save_to_disk_folder_streams(tmp_path, tokenizer, hf_cache):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(alpaca_rows(9)), "dev": Dataset.from_list(alpaca_rows(2))}).save_to_disk(
        str(tmp_path / "saved")
    )
    cfg = config(tmp_path, path=str(tmp_path / "saved"), valid_split="dev", streaming=True,
                 trainer=SFTTrainerConfig(max_steps=1))  # fmt: skip
    prepared = ready(tokenizer, cfg)[1]
    assert len(list(prepared.train)) == 9 and len(list(prepared.valid)) == 2
