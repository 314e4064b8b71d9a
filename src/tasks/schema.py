"""Old import path of the wachttijden schema, kept for models registered before src/models existed
(their bundled `tasks/model.py` imports it). New code imports models.wachttijden.schema."""

from models.wachttijden.schema import *  # noqa: F403
