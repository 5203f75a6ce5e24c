"""tracevla_ros: real-time ROS 2 stack for trace-based manipulation policies.

This file is also installed next to the rosidl-generated ``tracevla_ros.msg``
module (see CMakeLists.txt), so it must stay dependency-free. ``extend_path``
merges every ``tracevla_ros`` directory on ``sys.path``: the generated
interfaces (``tracevla_ros.msg``) and the Python sources resolve as one package
whether the sources come from a colcon install or an editable checkout.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
