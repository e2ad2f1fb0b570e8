"""Models: how a model is built (`networks`), stored and verified (`store`), folded for inference (`fold`) and
which one a task ships by default (`selection`: `choose`, `default_model`). What each model *is* lives one layer
down in `core.registry`; how it is trained, in `core.training`.

The registry names are re-exported here for callers that predate the split.
"""
from core.registry import TASKS, InputSpec, ModelSpec, TaskSpec, TrainConfig, get_model_spec, get_task

__all__ = ["TASKS", "InputSpec", "ModelSpec", "TaskSpec", "TrainConfig", "get_model_spec", "get_task"]
