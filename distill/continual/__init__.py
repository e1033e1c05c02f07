"""Continual learning: a task sequence split from a dataset's classes, one Trainer.fit per task with
its own checkpoint folder, a manifest of completed tasks, the accuracy matrix and its metrics."""
