from django.contrib import admin
from django.urls import path

from assistant import views as assistant_views
from config.api import api

urlpatterns = [
    path("", assistant_views.demo_site, name="demo-site"),
    path("health", assistant_views.health, name="health"),
    path("kb/<int:document_id>/", assistant_views.kb_document, name="kb-document"),
    path("console/", assistant_views.console, name="console"),
    path("console/analytics/", assistant_views.console_analytics, name="console-analytics"),
    path("console/analytics/<str:what>.<str:fmt>", assistant_views.console_export, name="console-export"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
