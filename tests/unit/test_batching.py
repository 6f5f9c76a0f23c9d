import pytest

pytestmark = pytest.mark.unit


def test_length_grouped_batches_cover_every_row_once():
    import random

    from llmpath.training import batches

    rows = [{"text": "x" * n, "label": 0} for n in range(1, 1001)]
    grouped = batches(rows, 32, random.Random(0), group_by_length=True)
    assert sorted(len(r["text"]) for b in grouped for r in b) == list(range(1, 1001))
    # grouping cuts padding: the spread of lengths inside a batch is far below random batching
    plain = batches(rows, 32, random.Random(0), group_by_length=False)

    def spread(bs):
        return sum(max(len(r["text"]) for r in b) - min(len(r["text"]) for r in b) for b in bs) / len(bs)

    assert spread(grouped) < spread(plain) / 5
    assert batches(rows, 32, random.Random(0), True) == grouped  # seeded
