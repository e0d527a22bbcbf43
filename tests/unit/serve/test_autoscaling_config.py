"""`autoscaling_config` is checked when the config is read, not when Serve deploys it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ecomine.serve.config import AppArgs, IngressArgs, ModelResources

UP = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 1}


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"min_replicas": 1, "max_replica": 2}, "unknown key(s) ['max_replica']"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) must be greater than or equal to min_replicas (3)"),
        ({"max_replicas": 2, "target_ongoing_requests": -1}, "target_ongoing_requests: Input should be greater than 0"),
    ],
)
def test_a_wrong_autoscaling_config_names_the_key(config: dict, needle: str) -> None:
    for model in (ModelResources, IngressArgs):
        with pytest.raises(ValidationError) as err:
            model.model_validate({"autoscaling_config": config})
        assert needle in str(err.value) and "autoscaling_config" in str(err.value)


def test_a_valid_autoscaling_config_is_kept_as_written() -> None:
    assert ModelResources(autoscaling_config=UP).autoscaling_config == UP


def test_colocated_arms_cannot_be_scaled_on_their_own() -> None:
    base = {"registry": "r", "recommend": {"champion": {"version": "v"}, "resources": {"autoscaling_config": UP}}}
    with pytest.raises(ValidationError, match=r"recommend\.resources\.autoscaling_config: with ingress\.colocate true"):
        AppArgs.model_validate({**base, "ingress": {"colocate": True}})
    with pytest.raises(ValidationError, match=r"recommend\.resources\.num_replicas"):
        AppArgs.model_validate({"registry": "r", "ingress": {"colocate": True},
                                "recommend": {"champion": {"version": "v"}, "resources": {"num_replicas": 2}}})
    assert AppArgs.model_validate(base).recommend.resources.autoscaling_config == UP  # split layout: fine
    colocated = AppArgs.model_validate({"registry": "r", "recommend": {"champion": {"version": "v"}},
                                        "ingress": {"colocate": True, "autoscaling_config": UP}})
    assert colocated.ingress.autoscaling_config == UP  # the colocated way to scale
