from django.contrib import admin
from django.urls import path

from assistant import views as assistant_views
from config.api import api

urlpatterns = [
    path("", assistant_views.demo_site, name="demo-site"),
    path("health", assistant_views.health, name="health"),
    path("kb/<int:document_id>/", assistant_views.kb_document, name="kb-document"),
    path("console/", assistant_views.console, name="console"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
