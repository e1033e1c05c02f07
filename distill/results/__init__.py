"""Results: the store every run writes to, and the method table built from it."""
from distill.results.store import ResultsStore
from distill.results.table import MethodTable

__all__ = ["MethodTable", "ResultsStore"]
