"""aitraining: a declarative LLM fine-tuning runner (Hydra config -> TRL trainer).

Importing this package is cheap: it imports neither torch nor transformers.
"""

__version__ = "0.1.0"
