"""Recipe kinds, one package each (`llmpath/kinds/<kind>/`, defining `KIND`); `llmpath.recipes` finds them.
Kinds never import each other: what two share lives in a family (`llmpath/families/`) or in the core."""
