"""HTTP API of loyalty.stores (being built)."""

from flask_smorest import Blueprint

blp = Blueprint("stores", __name__, description="stores")
