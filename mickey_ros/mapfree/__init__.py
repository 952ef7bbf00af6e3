"""The Map-free dataset layout: file formats (intrinsics, poses, submissions) and the scene reader.

Shared by the evaluation (``eval/``), the training data (``train/``) and the synthetic writer
(``synth/``).
"""
