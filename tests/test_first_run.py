"""The first hour: a new install with nobody in it leads to /setup/, which makes exactly one
administrator (with every role) and signs them in; Parley's sign-in page signs people in and
honours `next` only on this site. Django's test client, a real `serve` for simultaneous set-ups."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from core.models import AuditEvent
from core.roles import ALL_ROLES, has_role
from tests.conftest import ManagedServer, free_port

PASSWORD = "a long pass phrase 7"


def _setup_form(**changes: str) -> dict[str, str]:
    return {
        "username": "sam",
        "display_name": "Sam Taylor",
        "email": "sam@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
    } | changes


def _final_path(response) -> str:
    return response.redirect_chain[-1][0] if response.redirect_chain else response.request["PATH_INFO"]


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/console/", "/studio/", "/accounts/login/", "/console/desk/"])
def test_with_nobody_yet_the_staff_pages_lead_to_setup(client, page):
    response = client.get(page, follow=True)
    assert _final_path(response) == "/setup/"
    assert response.status_code == 200
    assert "Create the first administrator" in response.content.decode()


@pytest.mark.django_db
def test_setup_makes_one_administrator_with_every_role_and_signs_them_in(client):
    response = client.post("/setup/", _setup_form(), follow=True)
    assert _final_path(response) == "/console/" and response.status_code == 200
    assert "Welcome, Sam Taylor" in response.content.decode()
    (admin,) = User.objects.all()
    assert admin.username == "sam" and admin.email == "sam@example.com"
    assert admin.is_superuser and admin.is_staff and admin.get_full_name() == "Sam Taylor"
    assert admin.check_password(PASSWORD)
    assert set(admin.groups.values_list("name", flat=True)) == set(ALL_ROLES)
    assert all(has_role(admin, role) for role in ALL_ROLES)
    assert response.wsgi_request.user == admin
    assert client.get("/studio/").status_code == 200
    assert AuditEvent.objects.filter(action="setup.first_admin", actor_user=admin).exists()


@pytest.mark.django_db
def test_once_anyone_exists_setup_is_gone(client, agent):
    assert client.get("/setup/")["Location"] == "/accounts/login/"
    response = client.post("/setup/", _setup_form(username="mallory"))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert not User.objects.filter(username="mallory").exists()
    assert list(User.objects.filter(is_superuser=True)) == []


@pytest.mark.django_db
def test_a_second_setup_after_the_first_is_refused(client):
    client.post("/setup/", _setup_form())
    other = client.__class__()
    response = other.post("/setup/", _setup_form(username="second"), follow=True)
    assert _final_path(response) == "/accounts/login/"
    assert list(User.objects.values_list("username", flat=True)) == ["sam"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"password2": "something else 9"}, "password2", "not the same"),
        ({"password1": "short", "password2": "short"}, "password1", "too short"),
        ({"password1": "password123", "password2": "password123"}, "password1", "too common"),
        ({"password1": "38572910485", "password2": "38572910485"}, "password1", "entirely numeric"),
        ({"password1": "samtaylor1", "password2": "samtaylor1"}, "password1", "too similar"),
        ({"username": "no spaces please"}, "username", "valid username"),
        ({"email": "not-an-address"}, "email", "valid email"),
        ({"username": ""}, "username", "required"),
    ],
)
def test_a_bad_setup_form_says_what_is_wrong_and_makes_nobody(client, changes, field, says):
    response = client.post("/setup/", _setup_form(**changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and says in " ".join(errors[field]).lower(), errors.as_data()
    page = response.content.decode()
    assert "Please correct what is marked below." in page
    assert not User.objects.exists()


@pytest.mark.django_db
def test_setup_checks_csrf():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/setup/", _setup_form())
    assert response.status_code == 403 and not User.objects.exists()


@pytest.mark.django_db
def test_the_sign_in_page_says_parley_and_signs_in(client, agent):
    page = client.get("/accounts/login/?next=/console/desk/")
    text = page.content.decode()
    assert page.status_code == 200 and "Sign in to Parley" in text and "Django" not in text
    wrong = client.post("/accounts/login/", {"username": "alex", "password": "nope"})
    assert wrong.status_code == 200
    assert "Please enter a correct username and password" in wrong.content.decode()
    response = client.post(
        "/accounts/login/",
        {"username": "alex", "password": "correct horse battery staple", "next": "/console/desk/"},
    )
    assert response.status_code == 302 and response["Location"] == "/console/desk/"
    assert client.get("/console/desk/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/accounts/login/", "/admin/login/"])
def test_failed_sign_ins_are_limited_per_address_and_account(client, agent, settings, page):
    from django.core.cache import cache

    cache.clear()
    settings.SIGNIN_FAILURES_PER_WINDOW = 3
    for _ in range(3):
        response = client.post(page, {"username": "alex", "password": "wrong"})
        assert response.status_code == 200 and "Too many" not in response.content.decode()
    # Now even the right password is not checked, with a plain reason; nobody is signed in.
    response = client.post(page, {"username": "alex", "password": "correct horse battery staple"})
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same address is held too (the address's counter).
    response = client.post(page, {"username": "someone", "password": "x"})
    assert "Too many failed sign-ins" in response.content.decode()
    cache.clear()
    response = client.post(page, {"username": "alex", "password": "correct horse battery staple"})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(agent.pk)


@pytest.mark.django_db
def test_without_next_a_person_lands_on_their_first_section(client, editor):
    response = client.post(
        "/accounts/login/", {"username": "edna", "password": "correct horse battery staple"}
    )
    assert response["Location"] == "/studio/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/console/", "http://evil.example"]
)
def test_next_to_another_host_is_ignored(client, agent, target):
    response = client.post(
        "/accounts/login/",
        {"username": "alex", "password": "correct horse battery staple", "next": target},
    )
    assert response.status_code == 302
    assert response["Location"] == "/console/"  # the agent's first section, not the other host


@pytest.mark.django_db
def test_signing_out_goes_back_to_the_sign_in_page(client, agent):
    client.force_login(agent)
    page = client.get("/console/").content.decode()
    assert 'action="/accounts/logout/"' in page
    response = client.post("/accounts/logout/", follow=True)
    assert _final_path(response) == "/accounts/login/"
    assert "You have signed out." in response.content.decode()
    assert client.get("/console/")["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_the_admin_is_branded_parley(client, agent):
    page = client.get("/admin/login/").content.decode()
    assert "Parley administration" in page and "Django administration" not in page


@pytest.mark.django_db
def test_createsuperuser_still_works(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", username="root", email="root@example.com", verbosity=0)
    assert User.objects.get(username="root").is_superuser


@pytest.mark.django_db
def test_favicon_redirects_to_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/parley/favicon.svg"


# --- Two people setting up at the same moment, on a real server -----------------------------------


class SetupServer(ManagedServer):
    """`serve` without the worker and the model warm-up: only its pages are needed."""

    log_name = "setup-serve.log"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 302 itself is the answer: where the server sent this person


def _submit_setup(url: str, username: str, barrier: threading.Barrier, outcome: dict[str, str]) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirects())
    with opener.open(f"{url}/setup/", timeout=60) as response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode()).group(1)
    body = urllib.parse.urlencode(_setup_form(username=username, csrfmiddlewaretoken=token)).encode()
    barrier.wait()
    try:
        opener.open(urllib.request.Request(f"{url}/setup/", data=body), timeout=60)
    except urllib.error.HTTPError as answer:
        outcome[username] = f"{answer.code} {answer.headers['Location']}"


@pytest.mark.slow
def test_two_simultaneous_setups_make_one_administrator(tmp_path):
    server = SetupServer(tmp_path, free_port(), "--no-worker", "--no-warmup")
    server.migrate()
    server.start()
    try:
        barrier, outcome = threading.Barrier(2), {}
        threads = [
            threading.Thread(target=_submit_setup, args=(server.url, name, barrier, outcome))
            for name in ("first", "second")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        code = (
            "from django.contrib.auth.models import User; "
            "print(list(User.objects.values_list('username', flat=True)))"
        )
        users = server.manage("shell", "-c", code).stdout.strip().splitlines()[-1]
    finally:
        server.stop()
    assert len(outcome) == 2, server.read_log()
    winners = [name for name, answer in outcome.items() if answer == "302 /console/"]
    assert len(winners) == 1, outcome
    (loser,) = set(outcome) - set(winners)
    assert outcome[loser] == "302 /accounts/login/"
    assert users == str(winners)
