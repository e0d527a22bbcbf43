"""Ray Tune campaigns from `tune/*.yaml`: the campaign driver (`campaign`) and the callbacks it hands Tune (`callbacks`).

Sits above `train` (each trial is a training run) and the registry (a campaign registers its best trials).
"""
