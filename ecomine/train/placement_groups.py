"""Freeing the CPUs of a stopped training run: the placement groups its progress file names.

Sits in `train` beside the loop that records them (rank 0 writes its placement
group's id into `progress.jsonl`); `ecomine.tuning.campaign` and its Tune callbacks call it
when a trial ends. Ray is imported inside the function, never at import time.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["free_run_placement_groups"]


def free_run_placement_groups(run_dir: Path) -> list[str]:
    """Remove the placement groups a (stopped) training run recorded in its progress file.

    Ray Train's own cleaner finds a dead run through the state API; where that is
    unreachable (dashboard off, or several Ray instances on one host) a trial that
    ASHA stopped kept its workers' CPUs and every later trial waited forever.
    Returns the ids removed (a group already gone is skipped).
    """
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    progress = Path(run_dir) / "progress.jsonl"
    if not progress.exists():
        return []
    removed = []
    for line in progress.read_text().splitlines():
        pg_hex = json.loads(line).get("placement_group") if line.strip() else None
        if not pg_hex:
            continue
        pg = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_hex)))
        if ray.util.placement_group_table(pg).get("state") in (None, "REMOVED"):
            continue
        remove_placement_group(pg)
        removed.append(pg_hex)
    return removed
