"""Old import path of the wachttijden model, kept for models registered before src/models existed.

MLflow pickles the pyfunc wrapper with references to `tasks.model`; loading such a model where
`tasks` is this package (the pipelines) imports this module. New code imports models.wachttijden.model.
"""

from models.wachttijden.model import *  # noqa: F403
from models.wachttijden.model import WachttijdenModel, build_model, load_served_model, to_model_inputs  # noqa: F401
