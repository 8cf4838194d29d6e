"""The spec language: loading with line numbers, expressions, names, the pydantic models,
checks of what a spec refers to, and the built-in library of blocks and modules."""
