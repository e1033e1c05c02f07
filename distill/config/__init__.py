"""The experiment file: schema, YAML loading with line numbers, variants."""
from distill.config.load import ExperimentFile, load_experiment
from distill.config.schema import Experiment

__all__ = ["Experiment", "ExperimentFile", "load_experiment"]
