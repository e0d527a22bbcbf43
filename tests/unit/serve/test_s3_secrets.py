"""S3 credentials given in AppArgs never print: not in the built app's deployment args, not in dumps.

Builds the real Serve application (``ecomine.serve.app.build``: imports Ray Serve, starts
nothing) and walks every deployment's bound arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ecomine.serve.arm_options import arm_init_kwargs
from ecomine.serve.config import AppArgs
from ecomine.storage import S3Options

SECRET, TOKEN = "hush-app-secret-7f3a", "hush-app-token-91c2"


def _args(tmp_path: Path) -> AppArgs:
    return AppArgs.model_validate(
        {
            "registry": str(tmp_path / "registry"),
            "s3": {"endpoint_url": "http://127.0.0.1:9", "access_key_id": "AKID", "secret_access_key": SECRET, "session_token": TOKEN},
            "recommend": {
                "champion": {"version": "latest"}, "challenger": {"version": "latest"},
                "traffic": {"mode": "shadow", "weight": 1.0},
            },
            "check_versions": False,
        }
    )


def _printed(value: Any) -> list[str]:
    """Every way the value is commonly printed or logged."""
    return [repr(value), str(value), json.dumps(value, default=str)]


def _bound_arguments(app: Any) -> list[Any]:
    """The init args and kwargs of every deployment bound under ``app`` (the ingress and each arm)."""
    from ray.serve.deployment import Application

    found, todo = [], [app]
    while todo:
        deployment = todo.pop()._bound_deployment
        values = [*deployment.init_args, *deployment.init_kwargs.values()]
        found.extend(values)
        stack = list(values)
        while stack:  # the ingress receives the arms' Applications inside a dict of dicts
            item = stack.pop()
            if isinstance(item, Application):
                todo.append(item)
            elif isinstance(item, dict):
                stack.extend(item.values())
    return found


def test_arm_kwargs_carry_the_secret_without_printing_it(tmp_path: Path) -> None:
    args = _args(tmp_path)
    kwargs = arm_init_kwargs(args, "recommend", "champion")
    for text in [*_printed(kwargs), args.model_dump_json(), json.dumps(args.model_dump(mode="json")), repr(args)]:
        assert SECRET not in text and TOKEN not in text
    rebuilt = S3Options(**kwargs["s3"])  # what a model replica does with its kwargs
    assert rebuilt.secret_access_key is not None and rebuilt.secret_access_key.get_secret_value() == SECRET
    assert rebuilt.session_token is not None and rebuilt.session_token.get_secret_value() == TOKEN


def test_built_app_deployment_args_print_no_secret(tmp_path: Path) -> None:
    from ecomine.serve.app import build

    values = _bound_arguments(build(_args(tmp_path)))
    assert sum(isinstance(v, AppArgs) for v in values) == 1  # the ingress's args
    arm_s3 = [v for v in values if isinstance(v, dict) and "secret_access_key" in v]
    assert len(arm_s3) == 2  # champion and challenger each carry the options...
    assert all(S3Options(**v).secret_access_key.get_secret_value() == SECRET for v in arm_s3)  # ...and the secret
    for value in values:
        for text in _printed(value):
            assert SECRET not in text and TOKEN not in text, text[:200]
