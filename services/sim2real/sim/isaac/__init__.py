"""Isaac Sim (Replicator) as simulator A in the isaac-datagen image.

``mapping`` turns a scenario and a sampled World into a plain scene description (USD prims,
transforms, camera intrinsics, and where each randomization range is applied); it imports nothing
from Isaac Sim and is unit-tested everywhere. ``backend`` builds that description in a running
Isaac Sim and reads depth back through a Replicator annotator; it needs an RTX GPU.
"""
