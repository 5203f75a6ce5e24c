"""TraceGen's benchmarks behind ``tracevla-bench tracegen`` and ``tracevla-bench tracegen-sim``.

Each module has ``main(argv: list[str]) -> dict`` (the JSON object ``tracevla-bench`` prints)
and is registered in entry point group ``tracevla_ros.benches`` (``scripts/entry_points.cfg``),
where ``tracevla-bench`` finds it without importing tracegen_ros itself.
"""
