"""rosbag2 recording and reading without ros2 bag (``rosbags``), no rclpy."""
