"""The recommend task's `augment:` block: augmented copies of the training split only."""

from __future__ import annotations

import numpy as np
import pytest

from ecomine.specs import TrainSpec

DATA = {"kind": "synthetic", "users": 120, "items": 40, "days": 120, "seed": 3}


def test_augment_adds_copies_to_training_windows_only():
    from ecomine.train.recommend_task import TASK, augmented_copies

    plain = TASK.prepare(TrainSpec.model_validate({"data": DATA}))
    spec = TrainSpec.model_validate({"data": DATA, "augment": {
        "copies": 2, "sequences": {"crop": {"prob": 0.5}, "mask": {"prob": 0.2}, "reorder": {"prob": 0.5}}}})
    aug = TASK.prepare(spec)
    assert len(aug.inputs) > len(plain.inputs)
    # validation and test are the un-augmented splits
    np.testing.assert_array_equal(aug.data.valid_targets, plain.data.valid_targets)
    assert all(np.array_equal(a, b) for a, b in zip(aug.data.test_histories, plain.data.test_histories))
    copies = augmented_copies(plain.data.train_sequences, spec.augment, seed=0)
    assert len(copies) == 2 * len(plain.data.train_sequences)
    n = plain.data.n_items
    assert all(((c >= 0) & (c <= n)).all() for c in copies)  # ids or padding (a masked item), nothing else
    assert any((c == 0).any() for c in copies)  # masking happened
    assert any(len(c) < len(s) for c, s in zip(copies, plain.data.train_sequences * 2))  # cropping happened
    # seeded: the same spec gives the same copies
    again = augmented_copies(plain.data.train_sequences, spec.augment, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(copies, again))
    # a campaign changing only the lr keeps the windows; changing the augmentation re-cuts them
    assert TASK.adapt(aug, spec.model_copy(update={"optim": spec.optim.model_copy(update={"lr": 1e-3})})) is aug
    assert TASK.adapt(aug, TrainSpec.model_validate({"data": DATA})).inputs.shape == plain.inputs.shape


def test_augment_is_refused_for_other_tasks():
    with pytest.raises(ValueError, match="augment.sequences applies to task recommend"):
        TrainSpec.model_validate({"task": "demand", "data": DATA, "augment": {"sequences": {"token_dropout": 0.1}}})
