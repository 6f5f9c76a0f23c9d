"""`llmpath up | down | status`: the local stack that runs llmpath's deployments.

`up` starts, bound to 127.0.0.1 unless `--host` says otherwise:

1. a Prefect server (API and UI, default port 4200) with its own PREFECT_HOME under `<home>/.llmpath/prefect`
   unless the environment sets PREFECT_HOME; it asks for an auth string (generated at the first `up`, kept in
   `<home>/.llmpath/prefect-auth`, mode 0600), refuses state-changing requests without a CSRF token and answers
   cross-origin requests only from the stack's own UIs;
2. a lean MLflow tracking server on the embedded store `<home>/mlruns` (default port 5000), always on 127.0.0.1;
3. the work pools `cpu-pool` and `gpu-pool` from `deployments/<pool>.json` (a flow run cannot set their shell
   command), and every deployment in `prefect.yaml`;
4. a process worker for `cpu-pool`, and one for `gpu-pool` when a GPU is present (`--gpu-worker` forces it).

A host other than loopback is refused with `--no-auth`. Each part runs in a process group of its own, logs to
`<home>/.llmpath/logs/<part>.log` and is recorded with its PID and kernel start time in `<home>/.llmpath/stack.json`,
so `down` stops exactly these processes and never a process that later got a recycled PID. `<home>` is
`llmpath.settings.project_home()`.

Modules: `state` (stack.json), `config` (addresses), `auth` (the auth string and an API client), `procs`
(processes), `parts` (commands, environments, health, pools), `commands` (the CLI commands).
"""

from __future__ import annotations

from llmpath.stack.auth import StackAPI, create_auth, read_auth, recorded_auth
from llmpath.stack.commands import add_commands as _add_commands
from llmpath.stack.commands import (
    check_port_free,
    cmd_down,
    cmd_status,
    cmd_up,
    resolve_state,
    wanted_parts,
)
from llmpath.stack.config import (
    StackConfig,
    StackError,
    StackUsageError,
    config_from_args,
    config_of,
    is_loopback,
)
from llmpath.stack.parts import (
    POOLS,
    SERVER_PARTS,
    client_env,
    mlflow_cmd,
    mlflow_env,
    pool_template,
    server_env,
    stack_api,
    worker_status,
)
from llmpath.stack.procs import (
    REPO_ROOT,
    STOP_GRACE_SECONDS,
    descendants,
    is_alive,
    owns_group,
    proc_start_time,
    stop_parts,
)
from llmpath.stack.state import Part, StackState, load_state, save_state, state_file


def add_commands(sub) -> None:
    """Register `up`, `down` and `status` on the CLI's subparsers (`up -h` shows this package's docstring)."""
    _add_commands(sub, description=__doc__)


__all__ = [
    "POOLS",
    "REPO_ROOT",
    "SERVER_PARTS",
    "STOP_GRACE_SECONDS",
    "Part",
    "StackAPI",
    "StackConfig",
    "StackError",
    "StackState",
    "StackUsageError",
    "add_commands",
    "check_port_free",
    "client_env",
    "cmd_down",
    "cmd_status",
    "cmd_up",
    "config_from_args",
    "config_of",
    "create_auth",
    "descendants",
    "is_alive",
    "is_loopback",
    "load_state",
    "mlflow_cmd",
    "mlflow_env",
    "owns_group",
    "pool_template",
    "proc_start_time",
    "read_auth",
    "recorded_auth",
    "resolve_state",
    "save_state",
    "server_env",
    "stack_api",
    "state_file",
    "stop_parts",
    "wanted_parts",
    "worker_status",
]
