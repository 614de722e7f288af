"""HTTP API of loyalty.members (being built)."""

from flask_smorest import Blueprint

blp = Blueprint("members", __name__, description="members")
