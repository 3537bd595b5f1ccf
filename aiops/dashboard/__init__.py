"""The dashboard (issue 7): server-rendered pages on the API app, for people watching and deciding.

``mount(app, ctx, views)`` adds them; ``views`` (:class:`DashboardViews`) is how the pages see live
pipeline state (recent points, the call graph, forecasts, changes, settings, playbooks) without
racing the pipeline thread. Pages refresh themselves every few seconds (``static/dashboard.js``
re-fetches the page and swaps its main part when it changed); Approve/Reject post to the JSON
API with the bearer token the person typed in, kept in the browser's localStorage only.
"""

from aiops.dashboard.routes import mount
from aiops.dashboard.views import DashboardViews, NoViews, PipelineViews

__all__ = ["DashboardViews", "NoViews", "PipelineViews", "mount"]
