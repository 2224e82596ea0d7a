"""Gazebo (gz sim) as simulator B: SDF world and ros_gz_bridge config from a scenario, ROS 2 episode loop."""
