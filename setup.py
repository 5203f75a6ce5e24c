"""Python packaging for a venv without a ROS install (``scripts/setup.sh``).

colcon builds this repository with CMakeLists.txt (ament_cmake), which also
installs the Python packages; this file serves ``pip install -e .`` only.
Node executables come from scripts/nodes.txt, shared with CMakeLists.txt.
"""

import configparser
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _node_scripts() -> list[str]:
    lines = (HERE / "scripts" / "nodes.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def plugin_entry_points() -> dict[str, list[str]]:
    """tracegen_ros's tracevla-demo / tracevla-bench plugins (scripts/entry_points.cfg, shared
    with CMakeLists.txt)."""
    cfg = configparser.ConfigParser()
    cfg.read(HERE / "scripts" / "entry_points.cfg")
    return {group: [ln.strip() for ln in value.splitlines() if ln.strip()]
            for group, value in cfg["options.entry_points"].items()}


TOOLS = [
    "tracevla-bench=tracevla_ros.tools.bench:main",
    "tracevla-demo=tracevla_ros.tools.demo:main",
    "tracevla-collect=tracevla_ros.tools.collect:main",
    "tracevla-serve=tracevla_ros.tools.serve:main",
    "tracevla-replay=tracevla_ros.tools.replay:main",
    "tracevla-bag=tracevla_ros.tools.bag:main",
    "traceforge=tracegen_ros.traceforge.cli:main",
    "tracevla-annotate=tracevla_ros.tools.annotate:main",
    "tracevla-train=tracevla_ros.tools.train:main",
    "tracevla-train-pixelvla=tracevla_ros.tools.train_pixelvla:main",
    "tracevla-finetune-vla=tracevla_ros.tools.finetune_vla:main",
    "tracevla-train-pixelvla-small=tracevla_ros.tools.train_pixelvla_small:main",
    "tracevla-dataset=tracevla_ros.tools.dataset:main",
    "tracevla-prompt=tracevla_ros.tools.prompt:main",
    "tracegen-train=tracegen_ros.train:main",
    "tracegen-predict=tracegen_ros.predict:main",
]

setup(
    # Not "tracevla_ros": that distribution name belongs to the colcon-built
    # interfaces in the same venv, which pip would otherwise uninstall.
    name="tracevla-stack",
    version="0.1.0",
    packages=find_packages(include=["tracevla_ros", "tracevla_ros.*", "tracegen_ros", "tracegen_ros.*",
                                    "tracetrain", "tracetrain.*"]),
    # The shipped checkpoints (config.json + model.safetensors): local policy and TraceGen.
    package_data={"tracevla_ros.policy": ["checkpoints/*/*.json", "checkpoints/*/*.safetensors"],
                  "tracevla_ros.affordance": ["checkpoints/*/*.json", "checkpoints/*/*.safetensors"],
                  "tracegen_ros": ["checkpoints/*/*.safetensors", "checkpoints/*/*.json"]},
    python_requires=">=3.10,<3.14",
    entry_points={"console_scripts": _node_scripts() + TOOLS, **plugin_entry_points()},
)
