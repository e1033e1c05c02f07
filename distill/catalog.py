"""Imports every module that registers names, so the registries are complete."""
from __future__ import annotations


def load_all() -> None:
    import distill.data  # noqa: F401
    import distill.data.views  # noqa: F401
    import distill.optimizers  # noqa: F401
    import distill.evaluation  # noqa: F401
    import distill.objectives.all_objectives  # noqa: F401
    import students  # noqa: F401
    import teachers  # noqa: F401
