from django.contrib import admin
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from assistant.chat import copilot_views
from assistant.chat import views as assistant_views
from assistant.desk import views as desk_views
from assistant.insights import metrics
from assistant.learning import views as learning_views
from config.api import api
from content import views as studio_views
from core import signin
from governance import views as governance_views

urlpatterns = [
    path("", assistant_views.demo_site, name="demo-site"),
    path(
        "favicon.ico", RedirectView.as_view(url=static("parley/favicon.svg"), permanent=True), name="favicon"
    ),
    path("accounts/login/", signin.SignInView.as_view(), name="signin"),
    path("accounts/logout/", signin.SignOutView.as_view(), name="signout"),
    path("setup/", signin.first_admin, name="setup"),
    path("health", assistant_views.health, name="health"),
    path("health/ready", assistant_views.health_ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("kb/<int:document_id>/", assistant_views.kb_document, name="kb-document"),
    path("console/", assistant_views.console, name="console"),
    path("console/analytics/", assistant_views.console_analytics, name="console-analytics"),
    path("console/analytics/<str:what>.<str:fmt>", assistant_views.console_export, name="console-export"),
    path("console/desk/", desk_views.desk, name="desk"),
    path("console/desk/<int:ticket_id>/", desk_views.ticket, name="desk-ticket"),
    path("console/desk/<int:ticket_id>/approve", desk_views.approve, name="desk-approve"),
    path("console/desk/<int:ticket_id>/edit", desk_views.edit, name="desk-edit"),
    path("console/desk/<int:ticket_id>/reject", desk_views.reject, name="desk-reject"),
    path("console/desk/<int:ticket_id>/regenerate", desk_views.regenerate, name="desk-regenerate"),
    path("console/desk/<int:ticket_id>/reassign", desk_views.reassign, name="desk-reassign"),
    path("console/desk/<int:ticket_id>/suggest", copilot_views.desk_suggest, name="desk-suggest"),
    path("console/governance/", governance_views.governance, name="governance"),
    path("console/audit/", governance_views.audit, name="audit"),
    path("console/audit.csv", governance_views.audit_download, {"fmt": "csv"}, name="audit-csv"),
    path("console/audit.json", governance_views.audit_download, {"fmt": "json"}, name="audit-json"),
    path("console/models/", learning_views.models_page, name="console-models"),
    path("console/models/<int:version_id>/", learning_views.version_page, name="console-model"),
    path("console/models/<int:version_id>/activate", learning_views.activate, name="console-model-activate"),
    path("console/models/rollback", learning_views.rollback, name="console-model-rollback"),
    path("console/models/finetune", learning_views.start_finetune, name="console-finetune"),
    path("studio/", studio_views.dashboard, name="studio"),
    path("studio/briefs", studio_views.new_brief, name="studio-brief"),
    path("studio/<int:item_id>/", studio_views.item_page, name="studio-item"),
    path("studio/<int:item_id>/save", studio_views.save, name="studio-save"),
    path("studio/<int:item_id>/regenerate", studio_views.regenerate, name="studio-regenerate"),
    path("studio/<int:item_id>/transition", studio_views.move, name="studio-transition"),
    path("studio/<int:item_id>/comment", studio_views.comment, name="studio-comment"),
    path("studio/<int:item_id>/assign", studio_views.assign, name="studio-assign"),
    path("studio/<int:item_id>/images", studio_views.more_images, name="studio-more-images"),
    path("studio/<int:item_id>/images/<int:image_id>", studio_views.image_action, name="studio-image"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
