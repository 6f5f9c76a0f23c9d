"""What a run's records point at in MLflow: the data it trained and was evaluated on (dataset inputs), the
model each metric belongs to (the base weights, the merged candidate), how the candidate is called (input
example, signature) and the ONNX form that ships (a logged model of its own). MLflow calls only; the stages
decide when to make them.

MLflow 3 gives a metric logged at step 0 to every model its run logged at step 0 unless a model is active:
base scores logged after training would land on the candidate. `metrics_for` makes the right model active.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmpath import data as d
from llmpath import settings, tracking
from llmpath.links import data_label, model_id_of
from llmpath.results import ParityResult, PreparedData

SPLITS = {"train": "training", "validation": "validation"}  # prepared split -> MLflow input context
ROLE = "llmpath.role"  # tag on the logged models llmpath makes: "base" or "deployable"


def _client():
    import mlflow

    tracking.configure()
    return mlflow.MlflowClient()


# ---- dataset inputs ----------------------------------------------------------------------------------------


def split_sources(cfg) -> dict[str, tuple[str, Any]]:
    """Prepared split -> (dataset name, MLflow dataset source) for a recipe's `data` section: files named
    relative to the data root (`sst2/dev.tsv`), hub datasets as `hub:ID (split)`. A validation split carved
    out of the training file is that file's `(held-out part)`; documents drawn from several files (`sources`,
    each with a `path`) are named after the first."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    def source(name: str) -> tuple[str, Any]:
        if getattr(cfg, "hub", None):  # a data section of several files has none
            return f"hub:{cfg.hub} ({name})", HuggingFaceDatasetSource(path=cfg.hub, split=name)
        label = data_label(d.resolve_path(name), settings.data_root())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow registers its local-file source twice and says so
            return label, resolve_dataset_source(label)

    files = [s.path for s in getattr(cfg, "sources", None) or []]
    if files:  # documents of several files, held out by document: both splits are parts of them all
        label, first = source(files[0])
        label += f" + {len(files) - 1} more" if len(files) > 1 else ""
        return {
            "train": (f"{label} (training documents)", first),
            "validation": (f"{label} (held-out part)", first),
        }
    train = source(cfg.train)
    if cfg.validation:
        return {"train": train, "validation": source(cfg.validation)}
    return {"train": train, "validation": (f"{train[0]} (held-out part)", train[1])}


def log_split_inputs(run_id: str, cfg, data: PreparedData) -> None:
    """Log the prepared splits as the run's dataset inputs (contexts `training`, `validation`): name, source,
    digest, schema and row count, as the MLflow UI's Datasets column shows them."""
    import mlflow
    import pandas as pd

    folder = tracking.download(data.uri)  # the later stages read the same download
    datasets, contexts = [], []
    for split, (name, source) in split_sources(cfg).items():
        frame = pd.read_parquet(folder / f"{split}.parquet")
        targets = "label" if "label" in frame.columns else None
        datasets.append(mlflow.data.from_pandas(frame, source=source, name=name, targets=targets))
        contexts.append(SPLITS[split])
    with tracking.use_run(run_id), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")  # labels are ints
        mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=[None] * len(datasets))


def copy_inputs(source_run_id: str, run_id: str) -> int:
    """Log on `run_id` the dataset inputs of the run that made a reused result; how many there were."""
    client = _client()
    inputs = client.get_run(source_run_id).inputs
    found = list(inputs.dataset_inputs) if inputs else []
    if found:
        client.log_inputs(run_id, datasets=found)
    return len(found)


# ---- which model a metric belongs to ------------------------------------------------------------------------


@contextlib.contextmanager
def metrics_for(model_id: str | None) -> Iterator[None]:
    """Metrics logged inside belong to logged model `model_id` (and stay run metrics); None: MLflow's rule."""
    if model_id is None:
        yield
        return
    import mlflow

    tracking.configure()
    chatty = logging.getLogger("mlflow.tracking.fluent")  # says "Active model is set to ..." each time
    level = chatty.level
    chatty.setLevel(max(level, logging.WARNING))
    try:
        with mlflow.set_active_model(model_id=model_id):
            chatty.setLevel(level)
            yield
    finally:
        chatty.setLevel(level)


def base_model(experiment_id: str, run_id: str, base: str, revision: str) -> str:
    """The logged model that stands for the base weights (`base-all-minilm-l6-v2`): one per experiment, base
    and revision, reused by every run. External: the weights stay where their source keeps them."""
    import mlflow

    client = _client()
    tail = base.split(":", 1)[1] if re.match(r"^(packaged|hub):", base) else Path(base).name
    name = "base-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model")
    for found in client.search_logged_models([experiment_id], filter_string=f"name = '{name}'"):
        tags = found.tags
        if tags.get(ROLE) == "base" and tags.get("base_revision") == revision and tags.get("base") == base:
            return found.model_id
    made = mlflow.create_external_model(
        name=name,
        source_run_id=run_id,
        tags={ROLE: "base", "base": base, "base_revision": revision},
        model_type="base",
        experiment_id=experiment_id,
    )
    return made.model_id


# ---- the merged candidate: how it is called ----------------------------------------------------------------


def describe_calls(model_uri: str, example: Any) -> bool:
    """Give the logged model at `model_uri` an input example (and, lacking one, a signature inferred from it).
    A model that has both is left alone; True when it was changed."""
    import mlflow
    from mlflow.models import Model, infer_signature
    from mlflow.models.utils import _save_example

    model_id = model_id_of(model_uri)
    if model_id is None or example is None:
        return False
    client = _client()
    location = client.get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location.rstrip('/')}/MLmodel", dst_path=str(tracking.scratch("mlmodel-"))
    )
    meta = Model.load(local)
    if meta.saved_input_example_info and meta.signature is not None:
        return False
    out = tracking.scratch("example-")
    if meta.signature is None:
        meta.signature = infer_signature(example)
    if not meta.saved_input_example_info:
        _save_example(meta, example, str(out))
    meta.save(str(out / "MLmodel"))
    client.log_model_artifacts(model_id, str(out))
    return True


def example_input(row: dict) -> str | None:
    """A text the model takes, from a prepared validation row: its `text`, else its first user message."""
    if isinstance(row.get("text"), str):
        return row["text"]
    for message in row.get("messages", []) if row.get("messages") is not None else []:
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return None


# ---- the ONNX form that ships ------------------------------------------------------------------------------


def onnx_file(folder: Path) -> Path:
    """The model file of an exported form's folder (optimum names a quantized one `model_quantized.onnx`)."""
    files = sorted(folder.glob("*.onnx"))
    for preferred in ("model_quantized.onnx", "model.onnx"):
        if len(files) > 1 and (folder / preferred) in files:
            return folder / preferred
    if not files:
        raise FileNotFoundError(f"{folder.name}: no .onnx file in the exported form")
    return files[0]


def onnx_signature(path: Path):
    """The signature of an ONNX graph: its named inputs and outputs with dtype and shape (-1: dynamic)."""
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim)
        return TensorSpec(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type), shape, value.name)

    return ModelSignature(Schema([spec(v) for v in graph.input]), Schema([spec(v) for v in graph.output]))


def log_onnx_form(run_id: str, folder: Path, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
    """Log an exported form's folder (ONNX file, tokenizer, config, as serving reads it) as a logged model of
    the onnx flavour, output of `run_id`; its model id. `mlflow.onnx.load_model("models:/ID")` loads it."""
    import mlflow
    import onnx
    import onnxruntime
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    client = _client()
    experiment_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=tags, params=params, model_type="onnx"
    )
    try:
        file = onnx_file(folder)
        meta = Model(artifact_path=model.artifact_location, run_id=run_id, model_id=model.model_id)
        meta.model_uuid = model.model_id
        meta.signature = onnx_signature(file)
        mlflow.pyfunc.add_to_model(meta, loader_module="mlflow.onnx", data=file.name)
        meta.add_flavor(
            "onnx",
            onnx_version=onnx.__version__,
            data=file.name,
            providers=["CPUExecutionProvider"],
            onnx_session_options=None,
            code=None,
        )
        meta.model_size_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        out = tracking.scratch("onnx-model-")
        meta.save(str(out / "MLmodel"))
        (out / "requirements.txt").write_text(
            f"onnxruntime=={onnxruntime.__version__}\nonnx=={onnx.__version__}\n"
        )
        client.log_model_artifacts(model.model_id, str(folder))
        client.log_model_artifacts(model.model_id, str(out))
        client.finalize_logged_model(model.model_id, "READY")
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id


def deployable_model(name: str, version: str, checked: ParityResult, run_id: str) -> str:
    """The logged model of version `version`'s deployable form: the one it names already (same form), or a
    new one logged from `run_id`; its URI."""
    from mlflow.exceptions import MlflowException

    client = _client()
    have = client.get_model_version(name, version).tags
    known = have.get("deployable.model_uri") if have.get("deployable.uri") == checked.deployable_uri else None
    if model_id := model_id_of(known):
        try:
            if str(client.get_logged_model(model_id).status) == "READY":
                return known
        except MlflowException:
            pass  # deleted: log it again
    form = checked.deployable_form
    prefix = f"parity.{form}."
    model_id = log_onnx_form(
        run_id,
        tracking.download(checked.deployable_uri),
        name=f"onnx-{form}",
        tags={
            ROLE: "deployable",
            "registered_model": name,
            "registered_version": version,
            "deployable.form": form,
            "deployable.uri": checked.deployable_uri,
            "merged_model_uri": have.get("model_uri", ""),
            # how MLflow itself links a logged model to its versions (the UI's "Registered models" column)
            "mlflow.modelVersions": json.dumps([{"name": name, "version": int(version)}]),
        },
        params={
            k.removeprefix(prefix): f"{v:.6g}" for k, v in checked.metrics.items() if k.startswith(prefix)
        },
    )
    print(f"logged the {form} form of {name} v{version} as models:/{model_id}")
    return f"models:/{model_id}"


def drop_deployable_model(name: str, version: str) -> None:
    """Delete the logged model of a version that is being deleted (its tags would name a version number
    MLflow may give the next registration). Never raises: the version goes either way."""
    client = _client()
    try:
        model_id = model_id_of(client.get_model_version(name, version).tags.get("deployable.model_uri"))
        if model_id and client.get_logged_model(model_id).tags.get("registered_version") == version:
            client.delete_logged_model(model_id)
    except Exception as err:
        print(f"could not delete the logged model of {name} v{version}: {err}")
