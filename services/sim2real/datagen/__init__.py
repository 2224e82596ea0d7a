"""Data generation: labelled depth images rendered in simulator A (MuJoCo); see ``datagen.generate``."""
