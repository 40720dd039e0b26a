"""arcoflow's formal model: the semantics in prose (SPEC.md), executable references written
independently of the kernel, and reusable Hypothesis suites.

>>> from arcoflow.spec import reference_ticks
>>> [t.at for t in reference_ticks("@hourly", "UTC", "transition", "first", 0, 3600)]
[3600]
"""

from .ticks import RefTick, reference_ticks

__all__ = ["RefTick", "reference_ticks"]
