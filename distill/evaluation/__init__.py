"""Evaluation stages run after training (``evaluate:`` in the experiment file), one file each;
importing this package registers them."""
from distill.evaluation import knn, linear_probe  # noqa: F401  (registration)
