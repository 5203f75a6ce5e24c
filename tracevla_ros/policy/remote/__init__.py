"""Policy over the network: ``tracevla-serve`` on a GPU machine, backend ``remote`` on the robot.

``protocol`` (versioned binary frames, no pickle), ``server`` (PolicyServer),
``client`` (RemotePolicy, the ``remote`` backend), ``hold`` (a no-motion
backend for checking the link).
"""
