"""Difficulty from small proxy models: loss trajectories, S2L, learning percentage, IFD.

Importing this package is cheap; torch loads only when scores are computed.
"""

COLUMNS = ("loss_trajectory", "learning_percentage", "difficulty", "s2l_cluster", "s2l_selected", "ifd", "ic_ifd")
