"""prefect.yaml: agrees with config/schedules.yaml, holds no secrets or paths, deploys, and a worker runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.deploy import PREFECT_FILE, WORK_POOL, deploy, deploy_command, rate_limits
from headwater.config import load_schedules

SPEC = yaml.safe_load(PREFECT_FILE.read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_schedules_in_prefect_yaml_are_the_ones_in_config_schedules_yaml():
    crons = {}
    for d in SPEC["deployments"]:
        for schedule in d.get("schedules") or []:
            crons[d["entrypoint"].split(":")[1]] = schedule["cron"]
            assert schedule["timezone"] == "UTC"
    assert crons == load_schedules()
    assert DEPLOYMENTS["historical-data-backfiller"]["schedules"] == []  # on demand


def test_deployments_use_the_work_pool_and_name_real_flows():
    assert len(DEPLOYMENTS) == 8  # six ingestion flows, archive, cold storage
    for d in DEPLOYMENTS.values():
        assert d["work_pool"]["name"] == WORK_POOL
        path, function = d["entrypoint"].split(":")
        assert f"def {function}(" in (PREFECT_FILE.parent / path).read_text()


def test_no_secrets_or_machine_paths_in_prefect_yaml():
    text = PREFECT_FILE.read_text().lower()
    for needle in ("/home/", "/root", "/work/", "/users/", "apikey=", "api_key:", "password", "token:", "secret:"):
        assert needle not in text, needle
    assert SPEC["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $HEADWATER_REPO }}"}}]


def test_global_rate_limits_mirror_data_sources_yaml():
    limits = rate_limits()
    assert limits["headwater-alphavantage"] == (75, 1.25)
    assert limits["headwater-sec"] == (8, 8.0)
    command, missing = deploy_command()
    assert command[-4:-2] == ["deploy", "--all"] or missing


@pytest.mark.slow
def test_prefect_deploy_all_then_a_worker_runs_a_deployment(flow_env, hub_at, blob_env, fast, monkeypatch):
    from flow_support import new_york
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    hub_at(new_york(2024, 3, 5, 15, 0))
    done = deploy()  # work pool + limits + `prefect deploy --all` against the session's server
    assert "historical-data-backfiller" in done.stdout
    with get_client(sync_client=True) as client:
        deployed = {d.name: d for d in client.read_deployments()}
        assert set(DEPLOYMENTS) <= set(deployed)
        assert deployed["market-data-fetcher"].schedules[0].schedule.cron == "* * * * *"
        scheduled = [d.id for d in deployed.values() if d.schedules]
        for deployment_id in scheduled:
            client.pause_deployment(deployment_id)  # no cron runs while this test owns the worker ...
        for early in client.read_flow_runs(  # ... including the ones the scheduler created before the pause
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=scheduled)),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))):
            client.delete_flow_run(early.id)
        run = client.create_flow_run_from_deployment(deployed["historical-data-backfiller"].id, parameters={
            "tickers": ["AAPL"], "years": 0.1, "include_intraday": False, "end_date": "2024-03-05",
            "data_sources": fast})  # fmt: skip
    prefect = Path(sys.executable).with_name("prefect")
    worker = subprocess.run([str(prefect), "worker", "start", "--pool", WORK_POOL, "--run-once"], capture_output=True,
                            text=True, timeout=240, env={**os.environ})  # fmt: skip
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.is_completed(), (state, worker.stdout[-2000:], worker.stderr[-2000:])
    from headwater.settings import BlobSettings
    from headwater.storage.blob import BlobStore

    assert BlobStore(BlobSettings()).list(BlobSettings().warm_container, "bars/alphavantage/1d/AAPL/")
