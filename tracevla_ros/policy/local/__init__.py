"""The small trace-prompted policy trained in this repository (backend ``local``).

* :mod:`.transforms` -- observation -> model inputs, logits -> action (shared by
  the trainer and the backend);
* :mod:`.model` -- ``TracePolicyNet`` (torch);
* :mod:`.checkpoint` -- safetensors + config.json save/load (never pickle);
* :mod:`.backend` -- ``LocalPolicy`` and ``make(cfg)`` for ``policy_node``;
* :mod:`.train` -- the trainer behind ``tracevla-train``.

Importing this package does not import torch; the submodules that need it do.
"""
