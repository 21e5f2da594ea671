r"""Optimizers: :class:`StepwiseAdamW`, AdamW with STAIR's backward stepwise convolution."""
from stair_pyg.optim.stepwise_adamw import StepwiseAdamW

__all__ = ["StepwiseAdamW"]
