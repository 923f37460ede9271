"""helpdesk.gctune: what the long-running processes do to the collector once warm."""

from __future__ import annotations

import gc

from helpdesk import gctune


def test_it_freezes_what_is_loaded_and_widens_the_young_generation() -> None:
    saved = gc.get_threshold()
    try:
        gctune.tune()
        assert gc.get_freeze_count() > 10_000, "Django and the project should be frozen"
        assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, saved[1], saved[2])
        # Cycles made afterwards are still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
