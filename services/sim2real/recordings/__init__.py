"""Back from the robot: recordings (rosbag2) against a model (`validate`) and into a dataset (`ingest`).

- :mod:`.bags`: reading a recording's depth images, CameraInfo and the driver's commands, with
  the checks that turn a bad bag into one line.
- :mod:`.labels`: the driver's command in effect at each image, as a label.
- :mod:`.settings`: what validate and ingest share (topics, labelling, exclusions).
- :mod:`.validate`: agreement, unsafe rate and label-free figures, the gate.
- :mod:`.stats`: block-bootstrap intervals, one model or two paired.
- :mod:`.report`: the HTML report of frames where the model and the driver disagree.
- :mod:`.ingest`: recordings written in the project's dataset format.
"""
