"""The hand-written TRL script that scripts/bench.py measures aitraining against: the same job
(Alpaca prompt/completion, LoRA r=16 on the seven projections, same SFTConfig), no runner.

    python scripts/bench_trl_baseline.py MODEL_DIR DATA_JSON OUT_DIR STEPS BATCH MAX_LEN

Prints `FIRST_STEP_AT <epoch seconds>` when the first optimizer step begins.
"""

import json
import sys
import time

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, data_json, out_dir, steps, batch, max_len = sys.argv[1:7]


class FirstStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            print(f"FIRST_STEP_AT {time.time()}", flush=True)


def to_prompt_completion(row):
    if row["input"].strip():
        prompt = f"### Instruction:\n{row['instruction']}\n\n### Input:\n{row['input']}\n\n### Response:\n"
    else:
        prompt = f"### Instruction:\n{row['instruction']}\n\n### Response:\n"
    return {"prompt": prompt, "completion": row["output"]}


rows = json.load(open(data_json))
dataset = Dataset.from_list([to_prompt_completion(r) for r in rows])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM", target_modules=SEVEN)
args = SFTConfig(output_dir=out_dir, max_steps=int(steps), per_device_train_batch_size=int(batch),
                 learning_rate=2e-4, max_length=int(max_len), gradient_checkpointing=False, logging_steps=10,
                 use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=42)  # fmt: skip
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
                     callbacks=[FirstStep()])  # fmt: skip
trainer.train()
trainer.model.save_pretrained(f"{out_dir}/adapter")
