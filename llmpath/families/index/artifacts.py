"""Reading what earlier stages logged: the prepared corpus's tables and the embedded vectors."""

from __future__ import annotations

import numpy as np

from llmpath import tracking
from llmpath.results import Embeddings, PreparedCorpus


def read_table(prepared: PreparedCorpus, name: str) -> list[dict]:
    """`chunks` or `questions` of a prepared corpus, as rows."""
    import pandas as pd

    return pd.read_parquet(tracking.download(prepared.uri) / f"{name}.parquet").to_dict("records")


def load_vectors(embedded: Embeddings, name: str) -> np.ndarray:
    """`chunks` or `questions` vectors of an embedding run, one row per item in table order."""
    return np.load(tracking.download(embedded.uri) / f"{name}.npy", allow_pickle=False)
