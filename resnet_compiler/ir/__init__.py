"""Expansion of a validated spec into the graph IR and the code layout beside it: templates,
the wiring of block and module bodies, and their instances."""
