"""The scheduled retrain manifest: its pipeline and data specs validate, its entrypoint is a real command line."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer.main
import yaml

from ecomine.cli.main import app
from ecomine.specs import DataSpec, PipelineSpec

REPO = Path(__file__).resolve().parents[3]
MANIFEST = REPO / "serve_configs" / "kuberay-retrain-raycronjob.yaml"


def _docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_the_configmap_carries_a_valid_pipeline_and_data_spec():
    cm = _docs()["ConfigMap"]["data"]
    pipeline = PipelineSpec.model_validate(yaml.safe_load(cm["recommend.yaml"]))
    DataSpec.model_validate(yaml.safe_load(cm["events-data.yaml"]))
    train = pipeline.train_spec()
    assert train.data.spec == "/etc/ecomine/pipelines/events-data.yaml" and train.data.window == pipeline.window
    assert train.run.registry.startswith("s3://")  # the job's pods share no disk with the serving cluster


def test_the_entrypoint_is_ecomine_retrain_with_options_it_has():
    docs = _docs()
    cron = docs["RayCronJob"]
    assert cron["apiVersion"] == "ray.io/v1" and len(cron["spec"]["schedule"].split()) == 5
    job = cron["spec"]["jobTemplate"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["ecomine", "retrain"]
    mount = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
    assert argv[2] == f"{mount}/recommend.yaml"
    command = typer.main.get_command(app).commands["retrain"]
    known = {opt for p in command.params for opt in p.opts}
    assert {a for a in argv[3:] if a.startswith("--")} <= known
    # --serve names the RayService's application, --address its head service's dashboard
    service = yaml.safe_load((REPO / "serve_configs" / "kuberay-rayservice.yaml").read_text())
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert argv[argv.index("--serve") + 1] in {a["name"] for a in serve_config["applications"]}
    assert argv[argv.index("--address") + 1] == f"http://{service['metadata']['name']}-head-svc:8265"
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] == 0
