"""distill: a knowledge-distillation workbench (engine, experiment files, objectives, results)."""
