"""sim2real: depth obstacle avoidance, from simulation to a ROS 2 node, proven in a second simulator."""

__version__ = "0.1.0"
