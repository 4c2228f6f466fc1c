"""Agent trajectories: their format, how they are shown to a judge, and how they are fused."""

from server.trajectories.models import StepRequest, Trajectory, TrajectoryFuseRequest
from server.trajectories.render import best_verified, synthesis_record, to_candidates

__all__ = ["StepRequest", "Trajectory", "TrajectoryFuseRequest", "best_verified", "synthesis_record", "to_candidates"]
