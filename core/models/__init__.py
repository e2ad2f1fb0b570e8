"""Models: what each task and model is (`registry`), how it is built (`networks`), stored and verified (`store`),
folded for inference (`fold`), chosen as a task's default (`selection`), trained (`training`, `augment`) and
cross-validated by patient-grouped folds (`cv`).

`training` is imported on its own (it pulls in data loading and TensorFlow); the rest are light.
"""
from core.models.registry import TASKS, InputSpec, ModelSpec, TaskSpec, TrainConfig, get_model_spec, get_task

__all__ = ["TASKS", "InputSpec", "ModelSpec", "TaskSpec", "TrainConfig", "get_model_spec", "get_task"]
