"""aitraining's Hydra launchers (Hydra instantiates plugins only from the hydra_plugins package)."""
