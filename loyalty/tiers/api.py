"""HTTP API of loyalty.tiers (being built)."""

from flask_smorest import Blueprint

blp = Blueprint("tiers", __name__, description="tiers")
