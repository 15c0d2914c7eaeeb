"""The service's one clock: seconds since the epoch, as a callable injected into every
component that needs the time (tests pass a fake; production passes ``time.time``)."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

SYSTEM_CLOCK: Clock = time.time
