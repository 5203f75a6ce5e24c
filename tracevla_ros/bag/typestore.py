"""A rosbags typestore that knows ROS 2 Kilted's standard types and ours (msg/)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore


def msg_dir() -> Path:
    """Our .msg files: the installed share dir (colcon/ament) or the checkout's msg/."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("tracevla_ros")) / "msg")
    except (ImportError, LookupError, OSError):  # not installed through ament
        pass
    for c in candidates:
        if c.is_dir() and any(c.glob("*.msg")):
            return c
    raise FileNotFoundError(f"tracevla_ros .msg definitions not found in {candidates}")


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """Kilted standard types plus ``tracevla_ros/msg/*`` (cached)."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"tracevla_ros/msg/{path.stem}"))
    store.register(types)
    return store
