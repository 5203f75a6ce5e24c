"""MuJoCo simulation of the WidowX-250s and FR3 table-top worlds (no rclpy)."""
