"""PixelVLA at the published size: an OpenVLA/Prismatic base plus a visual-prompt encoder, a
multiscale pixel-aware encoder and a continuous action head (torch + transformers + peft;
no rclpy). See ``model.py`` for the architecture, ``train.py`` for the two training stages
and ``backend.py`` for the ``pixelvla-7b`` policy backend."""
