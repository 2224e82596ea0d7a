"""`sim2real calibrate`: the scenario's sensor model fitted to a recording (see ``fit`` and ``overlay``)."""
