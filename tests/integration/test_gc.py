"""`llmpath gc` and `llmpath serve`'s choice of Bento, on a real MLflow store, a real Milvus Lite file and
real Bentos (built from a three-line service) in temp dirs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from llmpath import gc, tracking
from llmpath.families.index import vectors
from llmpath.kinds.rag.recipe import IndexConfig

pytestmark = pytest.mark.integration
SERVICE = "import bentoml\n\n\n@bentoml.service\nclass Echo:\n    @bentoml.api\n    def echo(self, text: str) -> str:\n        return text\n"


def build_bento(ctx: Path, name: str, labels: dict[str, str], models: list[str] = ()) -> str:
    import bentoml

    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "service.py").write_text(SERVICE)
    sys.modules.pop("service", None)  # an earlier build's module must not stand in for this one
    bento = bentoml.bentos.build(
        "service:Echo",
        name=name,
        labels=labels,
        include=["service.py"],
        python={"packages": [], "lock_packages": False},
        models=list(models),
        build_ctx=str(ctx),
    )
    return str(bento.tag)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_gc_lists_then_drops_only_what_nothing_refers_to_and_serve_follows_the_champion(
    home, tmp_path, monkeypatch, capsys
):
    import bentoml
    import mlflow

    from llmpath.cli import main
    from llmpath.served import NothingToServe, champion_bento

    monkeypatch.setattr(gc, "RECENT", 0.0)  # everything here was made a moment ago
    monkeypatch.delenv("LLMPATH_MILVUS_URI", raising=False)
    tracking.configure()
    client = mlflow.MlflowClient()
    store = tracking.store_digest()
    name, bento_name = "gc-model", f"gc-bento-{store}"

    # Registry: v1 and v2 have Bentos and collections; v3 has neither yet.
    run = client.create_run(tracking.ensure_experiment("gc"))
    client.create_registered_model(name)
    versions = [
        str(
            client.create_model_version(name, f"runs:/{run.info.run_id}/m{i}", run_id=run.info.run_id).version
        )
        for i in (1, 2, 3)
    ]
    with bentoml.models.create("gc-weights", labels={"store": store}) as kept_model:
        Path(kept_model.path, "w.txt").write_text("weights")
    with bentoml.models.create("gc-weights", labels={"store": store}) as orphan_model:
        Path(orphan_model.path, "w.txt").write_text("weights of a package stage that was killed")
    labels = {"registered_model": name, "store": store}
    bento_v1 = build_bento(tmp_path / "b1", bento_name, labels | {"version": "1"}, [str(kept_model.tag)])
    bento_v2 = build_bento(tmp_path / "b2", bento_name, labels | {"version": "2"})
    orphan_bento = build_bento(tmp_path / "b3", bento_name, labels | {"version": "9"})  # its version is gone
    foreign_bento = build_bento(tmp_path / "b4", bento_name, labels | {"store": "another-store"})
    client.set_model_version_tag(name, "1", "bento.tag", bento_v1)
    client.set_model_version_tag(name, "2", "bento.tag", bento_v2)

    # Milvus: collections named by v1 and by a run that is building one stay; a dead run's build, an
    # orphan and a collection llmpath did not build are told apart.
    uri = vectors.milvus_uri(IndexConfig())
    with vectors.connect(uri) as milvus:
        for collection in ("c_v1", "c_orphan", "c_building", "c_dead_build"):
            vectors.create_collection(
                milvus, collection, 4, IndexConfig(type="FLAT"), {"collection": collection}
            )
        milvus.create_collection("not_llmpath", dimension=4)
    client.set_model_version_tag(name, "1", "collection", "c_v1")
    client.set_model_version_tag(name, "1", "milvus_uri", uri)
    building = {}
    for collection, pid in (("c_building", os.getpid()), ("c_dead_build", dead_pid())):
        building[collection] = client.create_run(run.info.experiment_id).info.run_id  # RUNNING until ended
        client.set_tag(building[collection], "index.collection", collection)
        client.set_tag(building[collection], "llmpath.host", socket.gethostname())
        client.set_tag(building[collection], "llmpath.pid", str(pid))

    # The temp dir: scratch roots of a dead and a live process, index copies nobody has open and one a
    # live process works in.
    root = tmp_path / "tmp"
    dead_scratch = root / f"llmpath-scratch-{dead_pid()}-x1"
    live_scratch = root / f"llmpath-scratch-{os.getpid()}-x2"
    old_copy, held_copy = root / "llmpath-rag-old", root / "llmpath-rag-held"
    for folder in (dead_scratch, live_scratch, old_copy, held_copy):
        (folder / "sub").mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "300"], cwd=held_copy / "sub")
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    expected = {
        f"scratch: {dead_scratch}",
        f"index copy: {old_copy}",
        f"collection: {uri}#c_orphan",
        f"collection: {uri}#c_dead_build",
        f"bento: {orphan_bento}",
        f"bento model: {orphan_model.tag}",
        f"run: {building['c_dead_build']}",  # killed: left RUNNING by its dead process
    }
    try:
        capsys.readouterr()
        assert main(["gc"]) == 0
        out = capsys.readouterr().out
        listed = {
            line.removeprefix("would drop ").split(" (")[0]
            for line in out.splitlines()
            if line.startswith("would drop")
        }
        assert listed == expected, out
        assert "dry run: nothing dropped" in out and dead_scratch.exists()
        assert bentoml.get(orphan_bento) is not None

        assert main(["gc", "--yes"]) == 0
        out = capsys.readouterr().out
        assert {
            line.removeprefix("dropping ").split(" (")[0]
            for line in out.splitlines()
            if line.startswith("dropping")
        } == expected
    finally:
        holder.kill()
        holder.wait()
    assert not dead_scratch.exists() and not old_copy.exists()
    assert live_scratch.exists() and held_copy.exists()
    with vectors.connect(uri) as milvus:
        assert sorted(milvus.list_collections()) == ["c_building", "c_v1", "not_llmpath"]
    remaining = {str(b.tag) for b in bentoml.list(bento_name)}
    assert remaining == {bento_v1, bento_v2, foreign_bento}
    assert {str(m.tag) for m in bentoml.models.list("gc-weights")} == {str(kept_model.tag)}
    assert client.get_run(building["c_dead_build"]).info.status == "KILLED"
    assert client.get_run(building["c_building"]).info.status == "RUNNING"
    # Its worker gone, the held copy is a leftover too; nothing else is.
    assert main(["gc"]) == 0
    assert [line.split(" (")[0] for line in capsys.readouterr().out.splitlines()[:-1]] == [
        f"would drop index copy: {held_copy}"
    ]
    assert main(["gc", "--yes"]) == 0 and not held_copy.exists()
    assert main(["gc"]) == 0 and "nothing to collect" in capsys.readouterr().out

    # `llmpath serve` serves what the champion names, not the newest Bento.
    client.set_registered_model_alias(name, "champion", "2")
    assert champion_bento(bento_name, "hint") == (bento_v2, name, "2")
    client.set_registered_model_alias(name, "champion", "1")  # a rollback
    assert champion_bento(bento_name, "hint") == (bento_v1, name, "1")
    client.set_registered_model_alias(name, "champion", versions[2])
    with pytest.raises(NothingToServe, match=r"champion is v3, which has no Bento yet: run its recipe"):
        champion_bento(bento_name, "llmpath run recipes/x.yaml")
    assert main(["serve", "classifier", "--bento", bento_name, "--port", "1"]) == 2
    assert "has no Bento yet" in capsys.readouterr().err
    assert main(["serve", "classifier", "--bento", "no-such-bento"]) == 2
    assert "No Bento named 'no-such-bento' yet" in capsys.readouterr().err
