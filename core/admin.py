from django.contrib import admin
from django.http import HttpRequest

from core.models import ApiToken
from core.signin import AdminSignInForm

# The admin is Parley's, not "Django administration": its header, page titles and sign-in page.
admin.site.site_header = "Parley administration"
admin.site.site_title = "Parley"
admin.site.index_title = "Administration"
admin.site.login_form = AdminSignInForm  # the same failed-sign-in limit as Parley's own page


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    exclude = ("token_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are made with `manage.py create_api_token`, which shows them once
