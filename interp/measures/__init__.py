"""Pure measurement functions: (model, tokens) -> tensors. Nothing here prints or plots."""
