"""The content studio's staff pages (editors only): the dashboard (items by state, search and
assignee, what awaits each reviewer, the new-brief form) and one item's page (its edit form,
regeneration, comments, checks and overrides, the fact check, state moves, assignment, image
candidates, revisions and history), as plain HTML forms that work without JavaScript. static/parley/studio.js
only follows the generation's, a regeneration's and the images' progress, and redraws the
search-result preview as the editor types.

Every change goes through the service layer (content/review.py, regeneration.py, images.py,
briefs.py), as the API's do, and the pages show present.py's dicts, as the API does. A refused
change (an edit conflict, a missing reason, a failing check) comes back as a message on the
page, never as an error page.
"""

from __future__ import annotations

from content.views.actions import assign, comment, image_action, more_images, move, regenerate, save
from content.views.dashboard import dashboard, new_brief
from content.views.item import item_page

# config/urls.py routes to these: base.py (shared by all), dashboard.py, item.py (the page),
# actions.py (its forms).
__all__ = [
    "assign",
    "comment",
    "dashboard",
    "image_action",
    "item_page",
    "more_images",
    "move",
    "new_brief",
    "regenerate",
    "save",
]
