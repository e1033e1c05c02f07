"""The contracts between the parts: what a network returns (``ModelOutput``), what an objective
reads at each step (``Step``) and when it binds (``BindContext``), and a step's global batch
across the processes of one run (``global_batch``). The engine, the objectives, the
networks and the teacher roles all import them from here; this package imports none of them."""
from distill.contracts.bind_context import BindContext
from distill.contracts.model_output import FIELDS, ModelOutput
from distill.contracts.step import Step

__all__ = ["BindContext", "FIELDS", "ModelOutput", "Step"]
