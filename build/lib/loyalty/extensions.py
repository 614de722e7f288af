"""Flask extensions, created unbound and initialised by the app factory."""

from flask_migrate import Migrate

from loyalty.api import ProblemApi

migrate = Migrate()
api = ProblemApi()
