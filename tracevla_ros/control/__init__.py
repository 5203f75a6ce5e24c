"""Arm control algorithms without rclpy: kinematics/IK, safety filters, action integration."""
