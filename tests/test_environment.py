"""The one environment: Prefect 3, Great Expectations 1.x and Featureform 1.15.8 work side by side."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_three_frameworks_import_together():
    out = subprocess.run(
        [sys.executable, "-c", "import featureform, prefect, great_expectations; print(prefect.__version__, great_expectations.__version__)"],
        capture_output=True, text=True, check=True,
    )
    prefect_version, gx_version = out.stdout.split()
    assert prefect_version.startswith("3.") and gx_version.startswith("1.")


def test_the_dataclasses_backport_is_not_installed():
    assert not (Path(sysconfig.get_paths()["purelib"]) / "dataclasses.py").exists()


def test_great_expectations_validates_a_dataframe():
    import great_expectations as gx
    import pandas as pd

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("bars")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": pd.DataFrame({"high": [2.0, 1.0], "low": [1.0, 3.0]})})
    )
    result = batch.validate(gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True))
    assert not result.success and result.result["unexpected_count"] == 1


@pytest.mark.slow
def test_a_prefect_flow_with_a_retried_task_runs(tmp_path):
    script = textwrap.dedent(
        """
        from prefect import flow, task
        calls = []

        @task(retries=2, retry_delay_seconds=0)
        def flaky():
            calls.append(1)
            if len(calls) < 2:
                raise RuntimeError("transient")
            return len(calls)

        @flow
        def pipeline():
            return flaky()

        print("result", pipeline())
        """
    )
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "", "PATH": "/usr/bin:/bin", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}  # shared CI machines can be slow
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "result 2" in out.stdout


def test_featureform_apply_dry_run_resolves_resources(tmp_path):
    definitions = tmp_path / "defs.py"
    definitions.write_text(textwrap.dedent(
        """
        import featureform as ff
        redis = ff.register_redis(name="redis-check", host="127.0.0.1", port=6379, password="", db=0)

        @ff.entity
        class Ticker:
            pass
        """
    ))
    cli = Path(sys.executable).parent / "featureform"
    out = subprocess.run([str(cli), "apply", str(definitions), "--host", "localhost:1", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "redis-check" in out.stdout + out.stderr
