"""Artifact families, one package each (`llmpath/families/<family>/`, defining `FAMILY`): export, parity and
the Bento of every kind whose model is of that family."""
