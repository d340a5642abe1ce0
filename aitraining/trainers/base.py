"""What every trainer kind shares: the common fields of `trainer=` and the shape of a registry record.

Nothing here imports torch or TRL: records name TRL's classes and the heavy functions by import
path (`module:attribute`), resolved only when a run builds its trainer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import MISSING

from aitraining.choices import DataFormat, TrainerKind
from aitraining.errors import ConfigError, closest, require

if TYPE_CHECKING:
    from aitraining.config import Config

# Keys of TRL's configs (TrainingArguments) that aitraining sets from its own fields, for every kind;
# trainer.args may not set them. A record adds the keys its own fields set (`owns`).
COMMON_OWNED = {
    "output_dir": "output_dir",
    "learning_rate": "trainer.learning_rate",
    "num_train_epochs": "trainer.epochs",
    "max_steps": "trainer.max_steps",
    "per_device_train_batch_size": "trainer.batch_size",
    "gradient_accumulation_steps": "trainer.gradient_accumulation",
    "gradient_checkpointing": "trainer.gradient_checkpointing",
    "logging_steps": "trainer.logging_steps",
    "save_strategy": "trainer.save_steps",
    "save_steps": "trainer.save_steps",
    "save_total_limit": "trainer.save_total_limit",
    "eval_strategy": "trainer.eval_steps",
    "eval_steps": "trainer.eval_steps",
    "load_best_model_at_end": "trainer.load_best_at_end",
    "metric_for_best_model": "trainer.load_best_at_end",
    "resume_from_checkpoint": "resume",
    "seed": "seed",
    "max_length": "model.max_seq_length",
    "fsdp": "dist=fsdp",
    "fsdp_config": "dist.fsdp_config (dist=fsdp)",
    "deepspeed": "dist=zero2|zero3 (dist.deepspeed)",
    "use_liger_kernel": "model.liger_kernel",
    "report_to": "logger",
    "run_name": "logger.run_name",
}


@dataclass
class TrainerConfig:
    """`trainer=`: the fields every trainer kind has. Each kind's schema (its record's `schema`)
    extends this with its own; its option file in conf/trainer/ holds only what differs."""

    kind: TrainerKind = MISSING
    """Set by the option file's schema (trainer=sft|dpo|...); choose a trainer with trainer=NAME."""
    learning_rate: float = 2e-4
    epochs: float = 1.0
    """Passes over the training set; ignored when max_steps > 0."""
    max_steps: int = -1
    """Optimizer steps to run; -1 means run `epochs` epochs."""
    batch_size: int = 4
    """Examples per device per forward pass."""
    gradient_accumulation: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x this)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: less memory, about 20-30% slower."""
    logging_steps: int = 10
    """Log loss every N optimizer steps."""
    save_steps: int = 500
    """Save a checkpoint (weights, optimizer, scheduler, RNG states, data position) every N optimizer
    steps, into <output_dir>/checkpoints; 0 saves none. `resume=true` continues from the newest."""
    save_total_limit: int = 2
    """Checkpoints kept: the newest N (and the best one, with load_best_at_end)."""
    eval_steps: Optional[int] = None
    """With an evaluation set: evaluate every N optimizer steps; null: at each checkpoint
    (save_steps); 0: only once, at the end."""
    early_stopping_patience: Optional[int] = None
    """With an evaluation set: stop after N evaluations in a row without a lower eval loss
    (transformers' EarlyStoppingCallback); null: never stop early."""
    load_best_at_end: bool = False
    """With an evaluation set: end with the weights of the checkpoint of lowest eval loss
    (run.json `kept` says which); evaluates at each checkpoint (eval_steps null or = save_steps)."""
    args: dict[str, Any] = field(default_factory=dict)
    """Passed through to TRL's config for this trainer (its record's `trl_config`)."""
    samples: int = 3
    """Prompts the model answers at the end of training, into samples.md beside the base model's
    answers (0: none): trainer.sample_prompts, else the first validation (or training) prompts."""
    sample_prompts: list[str] = field(default_factory=list)
    """Your own prompts for samples.md (rendered the way the training data was)."""
    sample_max_new_tokens: int = 48
    """Tokens each sample answer may have (greedy decoding)."""

    def __post_init__(self) -> None:
        require(self.learning_rate > 0, "trainer.learning_rate",
                f"trainer.learning_rate must be > 0 (got {self.learning_rate}).")  # fmt: skip
        require(self.epochs > 0, "trainer.epochs", f"trainer.epochs must be > 0 (got {self.epochs}).")
        require(
            self.max_steps == -1 or self.max_steps > 0,
            "trainer.max_steps",
            f"trainer.max_steps must be -1 (use epochs) or > 0 (got {self.max_steps}).",
        )
        require(self.batch_size >= 1, "trainer.batch_size", f"trainer.batch_size must be >= 1 (got {self.batch_size}).")
        require(
            self.gradient_accumulation >= 1,
            "trainer.gradient_accumulation",
            f"trainer.gradient_accumulation must be >= 1 (got {self.gradient_accumulation}).",
        )
        require(self.logging_steps >= 1, "trainer.logging_steps",
                f"trainer.logging_steps must be >= 1 (got {self.logging_steps}).")  # fmt: skip
        self._check_checkpoints()
        require(self.samples >= 0, "trainer.samples", f"trainer.samples must be >= 0 (got {self.samples}).")
        require(self.sample_max_new_tokens >= 1, "trainer.sample_max_new_tokens",
                f"trainer.sample_max_new_tokens must be >= 1 (got {self.sample_max_new_tokens}).")  # fmt: skip
        from aitraining.trainers.registry import TRAINERS  # the records name this class's subclasses

        record = TRAINERS[self.kind]
        if not require(
            type(self) is record.schema,
            "trainer.kind",
            f"trainer.kind={self.kind.value} does not match the trainer's fields ({type(self).__name__}): "
            f"choose a trainer with trainer={self.kind.value}, not trainer.kind.",
        ):
            return
        record.check_args(self.args)

    @property
    def periodic_eval_steps(self) -> int:
        """Optimizer steps between evaluations during training (0: none; the end always evaluates)."""
        return self.save_steps if self.eval_steps is None else self.eval_steps

    def check_eval_set(self, has_eval: bool) -> None:
        """Refuse the options that need an evaluation set when the data has none (known once it is read)."""
        needing = [key for key, on in (("trainer.load_best_at_end", self.load_best_at_end),
                                       ("trainer.early_stopping_patience", self.early_stopping_patience is not None))
                   if on]  # fmt: skip
        if needing and not has_eval:
            raise ConfigError(
                f"{' and '.join(needing)} need an evaluation set: a validation file beside the training data, "
                "data.valid_split, or data.valid_size (e.g. 0.05).",
                key=needing[0],
            )

    def _check_checkpoints(self) -> None:
        require(self.save_steps >= 0, "trainer.save_steps",
                f"trainer.save_steps must be >= 0 (0: no checkpoints; got {self.save_steps}).")  # fmt: skip
        require(self.save_total_limit >= 1, "trainer.save_total_limit",
                f"trainer.save_total_limit must be >= 1 (got {self.save_total_limit}).")  # fmt: skip
        require(
            self.eval_steps is None or self.eval_steps >= 0,
            "trainer.eval_steps",
            f"trainer.eval_steps must be >= 0 or null (null: at each checkpoint; got {self.eval_steps}).",
        )
        patience = self.early_stopping_patience
        require(patience is None or patience >= 1, "trainer.early_stopping_patience",
                f"trainer.early_stopping_patience must be >= 1 or null (got {patience}).")  # fmt: skip
        every = self.periodic_eval_steps
        if patience is not None:
            require(
                every > 0,
                "trainer.early_stopping_patience",
                "trainer.early_stopping_patience needs periodic evaluation: set trainer.eval_steps > 0 "
                "(or leave it null with trainer.save_steps > 0).",
            )
        if self.load_best_at_end:
            # Evaluated exactly at the checkpoints: with evaluations in between, the Trainer's best
            # checkpoint can be one whose eval loss is not the lowest among the checkpoints.
            require(
                self.save_steps > 0 and every == self.save_steps,
                "trainer.load_best_at_end",
                "trainer.load_best_at_end=true chooses the checkpoint of lowest eval loss: it needs trainer.save_steps "
                f"> 0 and evaluation at each checkpoint (trainer.eval_steps null or {self.save_steps}; got "
                f"save_steps={self.save_steps}, eval_steps={self.eval_steps}).",
            )


@dataclass(frozen=True)
class TrainerSpec:
    """One trainer kind: everything that differs between kinds, in one record."""

    kind: TrainerKind
    schema: type[TrainerConfig]
    """Its fields: conf/trainer/<kind>.yaml composes onto this dataclass."""
    summary: str
    """One line for the README's trainer table and errors."""
    trl_config: str
    """TRL's config class, `module:Class` (its fields are checked from trainers/trl_fields.json)."""
    trl_trainer: str
    """TRL's trainer class, `module:Class`."""
    data_formats: frozenset[DataFormat]
    """The data shapes it trains on (after conversion, see aitraining/data)."""
    data_needs: str
    """What that data looks like, for the error when the data is something else."""
    prepare: str
    """`module:function` that makes the data ready before the model loads: (examples, tokenizer,
    cfg, template) -> Prepared."""
    unsloth: bool
    """Whether Unsloth applies (the product's rule: sft and default only)."""
    config_args: Callable[[Config], dict[str, Any]] = lambda cfg: {}
    """TRL config keyword arguments its own fields set (beyond the common ones)."""
    owns: Mapping[str, str] = field(default_factory=dict)
    """TRL config keys its fields set -> the aitraining key to set instead (refused in trainer.args)."""
    trainer_kwargs: str | None = None
    """`module:function` (cfg, loaded) -> extra keyword arguments for TRL's trainer (e.g. a reference model)."""
    sequence_classification: bool = False
    """Trains a sequence classifier with one output (a reward model): AutoModelForSequenceClassification,
    LoRA task SEQ_CLS (its score head trains in full and is saved with the adapter)."""
    results: str | None = None
    """`module:function` (cfg, log_history) -> what the run reports beyond the loss (run.json `results`)."""
    example: str = ""
    """One example command line (the README's trainer table)."""
    logs: str = ""
    """What it logs beyond the loss, in metrics.json (the README's trainer table)."""

    def check_args(self, args: Mapping[str, Any]) -> None:
        """`trainer.args`: each key a field of TRL's config for this kind, none that aitraining sets."""
        if not args:
            return
        from aitraining.trainers.registry import trl_fields

        owned = {**COMMON_OWNED, **self.owns}
        fields = trl_fields(self.trl_config)
        config_name = self.trl_config.rsplit(":", 1)[-1]
        for key in args:
            key_path = f"trainer.args.{key}"
            if key in owned:
                require(False, key_path, f"trainer.args.{key} is set by aitraining: set {owned[key]} instead.")
            else:
                require(
                    key in fields,
                    key_path,
                    f"trainer.args.{key} is not a field of TRL's {config_name}/TrainingArguments."
                    + closest(key, fields),
                )


def load(path: str) -> Any:
    """`module:attribute` -> the attribute (imports the module: heavy ones only when a run needs them)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
