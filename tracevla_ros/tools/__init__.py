"""Offline command-line tools (console scripts). None of them imports rclpy
unless it runs nodes (tracevla-demo)."""
