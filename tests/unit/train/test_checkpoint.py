"""Loop checkpoints hold what training changes: frozen weights are left out and come back from build_model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ecomine.train.loop import WEIGHTS, load_checkpoint_dir, save_checkpoint_dir


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    m[0].requires_grad_(False)  # the "encoder": pretrained, never trained
    return m


def test_frozen_weights_are_not_saved_and_trained_ones_round_trip(tmp_path: Path) -> None:
    trained = _model(0)
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad])
    trained(torch.ones(2, 4)).sum().backward()
    opt.step()
    save_checkpoint_dir(tmp_path, trained, opt, {"epoch": 1})
    assert set(load_file(str(tmp_path / WEIGHTS))) == {"1.weight", "1.bias"}
    fresh = _model(0)  # build_model: the same frozen part, a new head
    fresh[1].reset_parameters()
    state = load_checkpoint_dir(tmp_path, fresh, torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad]))
    assert state["epoch"] == 1
    for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    save_checkpoint_dir(tmp_path, _model(0), None, {"epoch": 1})
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))  # nothing frozen: head-only file lacks layer 0
    with pytest.raises(RuntimeError, match=r"missing \['0.bias', '0.weight'\]"):
        load_checkpoint_dir(tmp_path, other)


def test_an_averaged_run_keeps_the_average_as_its_model_and_resumes_from_the_trained_weights(tmp_path: Path) -> None:
    from ecomine.train.loop import TRAINED, _averaged

    trained = _model(0)
    ema = _averaged(trained, 1.0, steps_per_epoch=4)  # decay 0.75
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        trained(torch.ones(2, 4)).sum().backward()
        opt.step()
        ema.update_parameters(trained)
    assert not torch.equal(ema.module[1].weight, trained[1].weight)  # the average lags the trained weights
    save_checkpoint_dir(tmp_path, trained, opt, {"epoch": 1}, averaged=ema.module)
    # what the runner registers (WEIGHTS) is the average; the trained weights sit beside it
    assert torch.equal(load_file(str(tmp_path / WEIGHTS))["1.weight"], ema.module[1].weight)
    assert torch.equal(load_file(str(tmp_path / TRAINED))["1.weight"], trained[1].weight)
    fresh = _model(0)
    fresh_ema = _averaged(fresh, 1.0, steps_per_epoch=4)
    load_checkpoint_dir(tmp_path, fresh, torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad]),
                        averaged=fresh_ema.module)
    assert torch.equal(fresh[1].weight, trained[1].weight)  # training goes on from where it was
    assert torch.equal(fresh_ema.module[1].weight, ema.module[1].weight)  # and so does the average
    plain = _model(1)
    load_checkpoint_dir(tmp_path, plain)  # a reader without an average (the runner) gets the average
    assert torch.equal(plain[1].weight, ema.module[1].weight)


def test_no_average_without_ema_epochs() -> None:
    from ecomine.train.loop import _averaged

    assert _averaged(_model(0), None, steps_per_epoch=10) is None
