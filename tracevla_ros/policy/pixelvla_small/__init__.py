"""A small PixelVLA trained in this repository (backend ``pixelvla``).

Pixel-level visual prompts (point, line, box, mask on the target object) enter the
network as one extra input channel beside the RGB frame and as one prompt token (the
raster's geometry); the network predicts a chunk
of 8 ee_delta_7d actions, continuous (L1) or 256-bin discrete (the local policy's
decoding), from the same backbone.

* :mod:`.transforms` -- prompt raster, chunk labels, observation -> inputs, outputs ->
  chunk (the trainer and the backend share them; built on the local policy's transforms);
* :mod:`.model` -- ``PixelVLANet`` (torch; the local policy's conv blocks);
* :mod:`.checkpoint`, :mod:`.backend`, :mod:`.train` -- save/load, ``make(cfg)``, trainer.

Importing this package does not import torch.
"""
