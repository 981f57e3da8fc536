"""The parity API in one import: the pure metrics and the comparator that runs runners.

``metrics.py`` holds what only looks at arrays (tolerances, ``compare_outputs``, verdicts);
``check.py`` runs runners on the same inputs and compares. This module re-exports both under the
names users and tests have always imported (``from resnet_deploy.parity import compare``); the
library's own modules import ``metrics`` or ``check`` directly, so the import graph stays a tree.
"""

from .check import check, compare
from .metrics import (
    FP32_TOLERANCE,
    CheckReport,
    ParityResult,
    ParityRow,
    Tolerance,
    compare_outputs,
    random_inputs,
    refuse_or_keep,
)
from .precisions import DEFAULT_TOLERANCES

__all__ = [
    "DEFAULT_TOLERANCES",
    "FP32_TOLERANCE",
    "CheckReport",
    "ParityResult",
    "ParityRow",
    "Tolerance",
    "check",
    "compare",
    "compare_outputs",
    "random_inputs",
    "refuse_or_keep",
]
