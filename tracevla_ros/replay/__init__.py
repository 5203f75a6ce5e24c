"""Offline replay of recorded bags through the tracker and the policy (no rclpy).

* ``topics`` -- which bag topic is the image, instruction, joint states, actions, traces;
* ``recorded`` -- what the recorded run did (traces, actions, instruction, joints);
* ``engine`` -- the tracker/policy loop with the nodes' schedules and pairing;
* ``report`` -- statistics, comparison with the recording, plots, video;
* ``config`` -- options and the recorded run's parameters;
* ``run`` -- ``replay(options)``, used by ``tracevla-replay``.
"""
