"""tracegen_ros: TraceGen (3D trace-space flow model) for the Franka FR3."""

__version__ = "0.1.0"
