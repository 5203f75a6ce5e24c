"""Benchmarks behind ``tracevla-bench <name>``; each prints one JSON object.

A benchmark is a module here with ``main(argv: list[str]) -> dict``; add it to
``BENCHMARKS`` below.
"""

BENCHMARKS: dict[str, str] = {
    # name: module (relative to tracevla_ros.bench)
    "ik": "ik",
    "experts": "experts",
    "sim": "sim",
    "tracker": "tracker",
    "remote": "remote",
    "replay": "replay",
    "tracegen-sim": "tracegen_sim",
    "policy": "policy",
    "tracegen": "tracegen",
    "loop": "loop",
    "estop": "estop",
    "recorder": "recorder",
}
