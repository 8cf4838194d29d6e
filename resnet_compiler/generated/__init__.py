"""Home of the modules `CompiledNetwork.build_torch` makes from generated source, so that built
models have an importable class (pickle, `inspect.getsource`)."""
