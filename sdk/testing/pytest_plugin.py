"""arcoflow's pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

* ``arcoflow_kernel`` — a :class:`~arcoflow.kernel.Kernel` on a fresh LMDB store;
* ``arcoflow_clock`` — a :class:`~arcoflow.sdk.testing.Clock` at 2030-01-01T00:00:00Z;
* ``arcoflow_plugins`` — an empty :class:`~arcoflow.sdk.Plugins` (no entry points loaded, so
  tests do not depend on what else is installed): register the plugin under test on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from arcoflow.kernel import Kernel

from ..plugins import Plugins
from ._clock import Clock
from ._kernel import temporary_kernel


@pytest.fixture
def arcoflow_kernel() -> Iterator[Kernel]:
    """A kernel on a fresh LMDB store in a temporary directory, closed after the test."""
    with temporary_kernel() as kernel:
        yield kernel


@pytest.fixture
def arcoflow_clock() -> Clock:
    """A controllable clock at 2030-01-01T00:00:00Z: ``arcoflow_clock.advance("5m")``."""
    return Clock()


@pytest.fixture
def arcoflow_plugins() -> Plugins:
    """An empty plugin registry: ``arcoflow_plugins.register(my_plugin, "name")``."""
    return Plugins()
