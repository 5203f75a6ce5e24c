"""The published OpenVLA-family checkpoints (TraceVLA-7B, TraceVLA-Phi3V, OpenVLA).

Pure parts (no torch): ``prompts`` (exact training prompts), ``images``
(resizing as the training data), ``actions`` (token decoding,
unnormalisation, the unnormalisation probe), ``stats`` (dataset statistics),
``checkpoint`` (offline lookup + completeness), ``models`` (per-checkpoint
inputs). ``hf`` holds the transformers loading code and the backend factories
registered in ``tracevla_ros.policy.registry``.
"""
