"""Closed-loop evaluation in simulator B (PyBullet): policies, the episode loop, the HTML report."""
