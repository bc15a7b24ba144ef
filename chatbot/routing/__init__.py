"""Routing messages to skills: sentence embeddings, a prototype per skill, a calibrated out-of-scope threshold.

See ``router.py`` for how a router is fitted and ``calibration.py`` for how the threshold is chosen.
"""

from chatbot.defaults import DEFAULT_ENCODER
from chatbot.routing.accuracy import RoutingReport, evaluate_files, evaluate_registry
from chatbot.routing.calibration import Calibration
from chatbot.routing.encoder import Encoder, ProgressCallback
from chatbot.routing.from_registry import router_for_registry
from chatbot.routing.router import Candidate, Route, Router, RouterSettings

__all__ = ["DEFAULT_ENCODER", "Calibration", "Candidate", "Encoder", "ProgressCallback", "Route", "Router", "RouterSettings", "RoutingReport",
           "evaluate_files", "evaluate_registry", "router_for_registry"]
