"""Traces for rviz (no rclpy): 2D traces lifted to 3D, TraceGen's 3D traces, line strips.

* ``lift`` -- depth sampling, back-projection, ray/table intersection, Trace3D to metres;
* ``markers`` -- per-point polylines with the overlay's colours;
* ``config`` -- ``TraceVizConfig`` of ``trace_viz_node``.
"""
