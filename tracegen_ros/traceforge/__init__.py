"""TraceForge: RGB-D videos -> TraceGen training triplets (reference frame, instructions, 3D traces)."""
