"""Evaluation metrics, one module per concern, so a kind's code version takes in only the metrics it uses:
`classification` (accuracy, macro-F1, confusion matrix, agreement), `generation` (ROUGE-L, perplexity, token
agreement, the parity chart of exported forms), `answers` (SQuAD EM and token F1), `plots` (the loss curve)."""
