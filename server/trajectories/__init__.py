"""Agent trajectories: how they are shown to a judge and fused, and the file format `fusionkit fuse` reads.

The wire format (the seed's TrajectoryInput) is in `server.protocol.trajectories`."""

from server.trajectories.file_format import FriendlyTrajectory, TrajectoryFileError, load_trajectory_file
from server.trajectories.render import best_verified, render, synthesis_record, to_candidates

__all__ = [
    "FriendlyTrajectory",
    "TrajectoryFileError",
    "best_verified",
    "load_trajectory_file",
    "render",
    "synthesis_record",
    "to_candidates",
]
