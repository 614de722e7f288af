"""HTTP API of loyalty.earning (being built)."""

from flask_smorest import Blueprint

blp = Blueprint("earning", __name__, description="earning")
