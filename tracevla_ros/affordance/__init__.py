"""TRACE / RoboPoint affordances (no rclpy): answer parsing and Where2Place scoring.

``answer.parse_answer`` reads a model's text answer (reasoning + points) into
normalized image points for the affordance node; ``where2place`` scores
answers against valid-region masks exactly as the Where2Place benchmark does.
"""
