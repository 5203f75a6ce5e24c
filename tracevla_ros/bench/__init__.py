"""Benchmarks behind ``tracevla-bench <name>``; each prints one JSON object.

A benchmark is a module here with ``main(argv: list[str]) -> dict``; add it to
``BENCHMARKS`` below. Other packages add theirs through the ``tracevla_ros.benches``
entry point group (tracegen_ros: ``tracegen``, ``tracegen-sim``; see
``tracevla_ros/plugins.py``).
"""

BENCHMARKS: dict[str, str] = {
    # name: module (relative to tracevla_ros.bench)
    "ik": "ik",
    "experts": "experts",
    "sim": "sim",
    "tracker": "tracker",
    "remote": "remote",
    "replay": "replay",
    "policy": "policy",
    "loop": "loop",
    "estop": "estop",
    "recorder": "recorder",
    "action": "action",
    "annotate": "annotate",
    "affordance": "affordance",
}
