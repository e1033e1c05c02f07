"""The engine: the shared training loop, how objects are built from an experiment, how a stage is
run and checkpointed."""
