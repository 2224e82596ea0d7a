"""`sim2real deploy`: the runtime image and a model onto a robot's Docker engine (docker SDK)."""
