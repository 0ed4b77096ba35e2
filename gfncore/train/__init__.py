"""The training layer: the Trainer (optimisation, guards, evaluation, checkpoints, data-parallel
steps) and the pieces the applications share when they train through it (schedules, log Z
initialisation). Applications import from here; nothing here imports an application."""
from .hooks import Checkpoints, Evaluate, Hook, LRSchedule, Metrics
from .resume import load
from .schedules import cosine_factor, cosine_schedule
from .start import initialise_log_z
from .trainer import (EXACT_LIMIT, NonFiniteError, TrainConfig, Trainer, config_dict, describe_policy, make_optimizer,
                      policy_for)

__all__ = ["Checkpoints", "EXACT_LIMIT", "Evaluate", "Hook", "LRSchedule", "Metrics", "NonFiniteError", "TrainConfig",
           "Trainer", "config_dict", "cosine_factor", "cosine_schedule",
           "describe_policy", "initialise_log_z", "load", "make_optimizer", "policy_for"]
