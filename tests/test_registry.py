"""The model registry: activation, rollback and their audit trail; the `models` command; the
admin actions; and the process-wide backends following the active version."""

from __future__ import annotations

import asyncio
import io
import json
import pickle
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connections, transaction
from django.test import TestCase, override_settings
from django.urls import reverse

from core.errors import DomainError
from inference import services
from inference.actions import (
    AlreadyActive,
    ModelFilesMissing,
    NothingToRollBack,
    RegistryError,
    VersionNotFound,
    do_activate_model_version,
    do_register_model_version,
    do_rollback,
    version_for_key,
)
from inference.base import GenerationParams, InferenceError, InputTooLong, ModelBusy, ModelUnavailable
from inference.finetune import FineTuneError
from inference.management.commands.models import Command as ModelsCommand
from inference.models import ModelEvent, ModelVersion

CHANGELIST = "admin:inference_modelversion_changelist"


class FakeGenerator:
    """A text generator that loads from a folder (takes model_dir) without loading anything."""

    def __init__(self, model_dir: str | None = None) -> None:
        self.model_dir = model_dir
        self.model_version = f"chat:{model_dir}"


class FakeRemoteGenerator:
    """A text generator that asks a server (no model_dir): the server picks the model."""

    def __init__(self, base_url: str | None = None, model: str | None = None) -> None:
        self.model_version = "chat:served@remote"


FAKE = "tests.test_registry.FakeGenerator"


def django_on_commit():
    """Run on_commit callbacks as a real commit would (the test's transaction never commits)."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@pytest.fixture(autouse=True)
def services_state():
    """Leave the process-wide backends as they were (the session's text generator included)."""
    saved = dict(services._instances)
    services.forget_active()
    yield
    services._instances.clear()
    services._instances.update(saved)
    services.forget_active()


def chat_dir() -> str:
    return str(Path(settings.CHAT_MODEL))


def register(key: str, *, kind: str = "chat", path: str | None = None, first: bool = False) -> ModelVersion:
    return do_register_model_version(
        key=key,
        kind=kind,
        activate_if_none=first,
        actor="prepare_models",
        name=key.split(":", 1)[1],
        path=chat_dir() if path is None else path,
        dtype="float32",
    )


def reload(*versions: ModelVersion) -> list[str]:
    return [ModelVersion.objects.get(pk=v.pk).status for v in versions]


@pytest.fixture
def two_chat_versions(db):
    first = register("chat:first@1", first=True)
    second = register("chat:second@2")
    return first, second


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("root", password="correct horse battery staple")


# --- Actions --------------------------------------------------------------------------------------


def test_activate_swaps_the_active_version_and_records_who_and_why(two_chat_versions, admin_user):
    first, second = two_chat_versions
    embedding = register("embedding:mini@3", kind="embedding", first=True)

    do_activate_model_version(second, actor=admin_user, reason="better answers")

    assert reload(first, second, embedding) == ["retired", "active", "active"]
    assert ModelVersion.objects.filter(kind="chat", status="active").count() == 1
    assert ModelVersion.objects.get(pk=second.pk).activated_at is not None
    event = ModelEvent.objects.filter(action="activated").latest("id")
    assert (event.version, event.previous, event.actor_user) == (second, first, admin_user)
    assert (event.actor, event.reason) == ("user:root", "better answers")
    trail = list(
        ModelEvent.objects.filter(version__kind="chat").order_by("id").values_list("action", "version")
    )
    assert trail == [
        ("registered", first.pk),
        ("activated", first.pk),
        ("registered", second.pk),
        ("activated", second.pk),
    ]


def test_registering_again_records_nothing_new(two_chat_versions):
    before = ModelEvent.objects.count()
    register("chat:first@1", first=True)
    assert ModelEvent.objects.count() == before


def test_the_database_refuses_two_active_versions_of_a_kind(two_chat_versions):
    _, second = two_chat_versions
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status="active")


def test_rollback_restores_the_previous_version_and_a_second_rollback_undoes_it(two_chat_versions):
    first, second = two_chat_versions
    do_activate_model_version(second, actor="cli:ops")

    restored = do_rollback("chat", actor="cli:ops", reason="worse answers")

    assert restored == first
    assert reload(first, second) == ["active", "retired"]
    event = ModelEvent.objects.latest("id")
    assert (event.action, event.version, event.previous, event.actor) == (
        "rolled_back",
        first,
        second,
        "cli:ops",
    )
    assert do_rollback("chat", actor="cli:ops") == second
    assert reload(first, second) == ["retired", "active"]


def test_rollback_with_no_history_is_refused_and_changes_nothing(db):
    with pytest.raises(NothingToRollBack):
        do_rollback("chat", actor="cli:ops")  # nothing active at all
    only = register("chat:only@1", first=True)
    events = ModelEvent.objects.count()
    with pytest.raises(NothingToRollBack) as refused:
        do_rollback("chat", actor="cli:ops")
    assert refused.value.code == "nothing_to_roll_back" and "chat:only@1" in refused.value.message
    assert reload(only) == ["active"] and ModelEvent.objects.count() == events


def test_activating_a_version_whose_files_are_missing_is_refused_and_changes_nothing(
    two_chat_versions, tmp_path
):
    first, _ = two_chat_versions
    gone = register("chat:gone@9", path=str(tmp_path / "deleted"))
    events = ModelEvent.objects.count()
    with pytest.raises(ModelFilesMissing) as refused:
        do_activate_model_version(gone, actor="cli:ops")
    assert refused.value.code == "model_files_missing" and str(tmp_path / "deleted") in refused.value.message
    assert reload(first, gone) == ["active", "candidate"]
    assert ModelEvent.objects.count() == events


def test_activating_the_active_version_is_refused(two_chat_versions):
    first, _ = two_chat_versions
    with pytest.raises(AlreadyActive):
        do_activate_model_version(first, actor="cli:ops")
    assert ModelEvent.objects.filter(action="activated").count() == 1


def test_a_version_reported_by_a_remote_server_is_registered_with_an_event(db):
    version = version_for_key("chat:remote-model@remote", "chat")
    assert version.status == "candidate" and version.files_present
    assert ModelEvent.objects.get(version=version).action == "registered"


# --- Command line ---------------------------------------------------------------------------------


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command("models", *args, stdout=out)
    return out.getvalue()


def exit_status(monkeypatch, *args: str) -> int:
    """`manage.py models ...` as a shell runs it: the exit status it would give."""
    # run_from_argv closes connections when it finishes; the test's transaction must stay open.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    try:
        ModelsCommand().run_from_argv(["manage.py", "models", *args])
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_models_list_json_prints_one_array_with_every_field(two_chat_versions, tmp_path):
    register("embedding:mini@3", kind="embedding", path=str(tmp_path / "gone"), first=True)
    rows = json.loads(run_cli("list", "--json"))
    assert isinstance(rows, list) and len(rows) == 3
    by_key = {row["key"]: row for row in rows}
    assert set(by_key["chat:first@1"]) >= {
        "id",
        "key",
        "kind",
        "name",
        "base",
        "adapter",
        "dtype",
        "source",
        "path",
        "metrics",
        "status",
        "files_present",
        "created_at",
        "activated_at",
    }
    assert by_key["chat:first@1"]["status"] == "active" and by_key["chat:second@2"]["activated_at"] is None
    assert by_key["embedding:mini@3"]["files_present"] is False
    chat_only = json.loads(run_cli("list", "--json", "--kind", "chat"))
    assert {row["kind"] for row in chat_only} == {"chat"}
    assert "chat:second@2" in run_cli("list")


def test_cli_activate_and_rollback_change_the_active_version_and_name_the_os_user(
    two_chat_versions, monkeypatch
):
    first, second = two_chat_versions
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    assert exit_status(monkeypatch, "activate", str(second.pk), "--reason", "canary passed") == 0
    assert reload(first, second) == ["retired", "active"]
    event = ModelEvent.objects.latest("id")
    assert (event.actor, event.actor_user, event.reason) == ("cli:deploy", None, "canary passed")

    assert "rolled back: chat:first@1" in run_cli("rollback")
    assert reload(first, second) == ["active", "retired"]
    assert "activated chat:second@2" in run_cli("activate", "chat:second@2")  # by key


def test_cli_refusals_exit_non_zero_with_a_clear_message(two_chat_versions, monkeypatch, capsys, tmp_path):
    first, _ = two_chat_versions
    assert exit_status(monkeypatch, "activate", "999999") == 1
    assert "No model version with id or key '999999'" in capsys.readouterr().err

    assert exit_status(monkeypatch, "rollback") == 1
    assert "nothing_to_roll_back" in capsys.readouterr().err

    gone = register("chat:gone@9", path=str(tmp_path / "deleted"))
    assert exit_status(monkeypatch, "activate", gone.key) == 1
    assert "files are missing" in capsys.readouterr().err
    assert reload(first, gone) == ["active", "candidate"]

    with pytest.raises(CommandError, match="already the active"):
        run_cli("activate", first.key)


# --- Admin ----------------------------------------------------------------------------------------


def post_action(client, action: str, version: ModelVersion):
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [version.pk]})


def test_admin_activate_and_roll_back_work_for_a_superuser(client, admin_user, two_chat_versions):
    first, second = two_chat_versions
    client.force_login(admin_user)
    assert post_action(client, "activate", second).status_code == 302
    assert reload(first, second) == ["retired", "active"]
    assert ModelEvent.objects.latest("id").actor_user == admin_user

    post_action(client, "roll_back", second)
    assert reload(first, second) == ["active", "retired"]
    page = client.get(reverse("admin:inference_modelversion_change", args=[first.pk]))
    assert page.status_code == 200 and b"Rolled Back" in page.content
    assert client.get(reverse("admin:inference_modelevent_changelist")).status_code == 200


def test_admin_activation_is_refused_to_a_non_staff_user_and_absent_without_the_permission(
    client, two_chat_versions
):
    first, second = two_chat_versions
    visitor = User.objects.create_user("vic", password="correct horse battery staple")
    client.force_login(visitor)
    response = post_action(client, "activate", second)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert reload(first, second) == ["active", "candidate"]

    viewer = User.objects.create_user("val", password="correct horse battery staple", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(viewer)
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and b'value="activate"' not in page.content
    post_action(client, "activate", second)
    assert reload(first, second) == ["active", "candidate"]

    viewer.user_permissions.add(Permission.objects.get(codename="activate_modelversion"))
    viewer = User.objects.get(pk=viewer.pk)  # fresh permission cache
    client.force_login(viewer)
    assert b'value="activate"' in client.get(reverse(CHANGELIST)).content
    post_action(client, "activate", second)
    assert reload(first, second) == ["retired", "active"]


def test_admin_reports_a_refusal_without_changing_anything(client, admin_user, two_chat_versions, tmp_path):
    first, _ = two_chat_versions
    gone = register("chat:gone@9", path=str(tmp_path / "deleted"))
    client.force_login(admin_user)
    page = client.post(
        reverse(CHANGELIST), {"action": "activate", "_selected_action": [gone.pk]}, follow=True
    )
    assert b"files are missing" in page.content
    assert reload(first, gone) == ["active", "candidate"]


# --- Services follow the active version -----------------------------------------------------------


@override_settings(TEXT_GENERATOR_BACKEND=FAKE)
def test_the_text_generator_is_built_from_the_active_chat_version(
    two_chat_versions, django_capture_on_commit_callbacks
):
    first, second = two_chat_versions
    generator = services.get_text_generator()
    assert (generator.model_dir, generator.model_version) == (first.path, first.key)
    assert services.get_text_generator() is generator

    with django_capture_on_commit_callbacks(execute=True):  # as when the activation commits
        do_activate_model_version(second, actor="cli:ops")
    swapped = services.get_text_generator()
    assert swapped is not generator and swapped.model_version == second.key
    assert generator.model_version == first.key  # a request still holding it is undisturbed


@override_settings(TEXT_GENERATOR_BACKEND=FAKE)
def test_an_activation_in_another_process_takes_effect_within_the_check_interval(
    two_chat_versions, django_assert_num_queries, monkeypatch
):
    first, second = two_chat_versions
    assert services.get_text_generator().model_version == first.key
    # Another process activates: this process's cache is not told.
    do_activate_model_version(second, actor="cli:ops")
    with django_assert_num_queries(0):
        assert services.get_text_generator().model_version == first.key  # trusted for a moment
    monkeypatch.setattr(services, "ACTIVE_CHECK_SECONDS", 0.0)
    assert services.get_text_generator().model_version == second.key


@override_settings(TEXT_GENERATOR_BACKEND=FAKE)
def test_without_an_active_version_a_remote_backend_or_an_own_chat_model_settings_decide(db, tmp_path):
    assert services.get_text_generator().model_dir is None
    register("chat:first@1", first=True)
    services.forget_active()
    with override_settings(TEXT_GENERATOR_BACKEND="tests.test_registry.FakeRemoteGenerator"):
        assert services.get_text_generator().model_version == "chat:served@remote"
    with override_settings(CHAT_MODEL=str(tmp_path)):  # configured outside MODELS_DIR: used as is
        assert services.get_text_generator().model_dir is None
    assert services.get_text_generator().model_version == "chat:first@1"


@pytest.mark.django_db(transaction=True)
@override_settings(TEXT_GENERATOR_BACKEND=FAKE)
def test_the_registry_is_read_safely_from_inside_an_event_loop():
    first = register("chat:first@1", first=True)

    async def from_a_coroutine():
        return services.get_text_generator()  # no sync_to_async: Django would refuse the ORM here

    assert asyncio.run(from_a_coroutine()).model_version == first.key


@pytest.mark.slow
@pytest.mark.django_db
def test_answers_come_from_the_newly_active_chat_version(text_generator):
    # The same prepared folder under another key: a new version without a second download.
    register("chat:SmolLM2-135M-Instruct@first", first=True)
    again = register("chat:SmolLM2-135M-Instruct@again")
    with django_on_commit():
        do_activate_model_version(again, actor="cli:ops")

    generator = services.get_text_generator()
    assert generator is not text_generator and generator.model_version == again.key
    messages = [{"role": "user", "content": "Say hello."}]
    _, usage = asyncio.run(generator.complete(messages, GenerationParams(max_tokens=4)))
    assert usage.model_version == again.key
    assert version_for_key(usage.model_version, "chat") == again  # what a stored answer points at
    _, old_usage = asyncio.run(text_generator.complete(messages, GenerationParams(max_tokens=4)))
    assert old_usage.model_version == text_generator.model_version  # the old one still serves


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (InferenceError(), "inference_error", 503),
        (InferenceError("The server timed out.", code="timeout"), "timeout", 503),
        (ModelBusy(), "busy", 503),
        (ModelUnavailable("No chat model."), "model_unavailable", 503),
        (InputTooLong("Too long."), "input_too_long", 400),
        (RegistryError(), "registry_error", 409),
        (AlreadyActive("Already."), "already_active", 409),
        (VersionNotFound("No model version 7."), "version_not_found", 404),
        (FineTuneError("Diverged."), "finetune_failed", 400),
    ],
)
def test_inference_errors_are_domain_errors_that_keep_their_codes_and_messages(error, code, status):
    assert isinstance(error, DomainError)
    assert (error.code, error.status) == (code, status)
    assert str(error) == error.message and error.message  # str() is the message, as callers store it
    assert error.body() == {"error": {"code": code, "message": error.message}}
    copy = pickle.loads(pickle.dumps(error))  # a Celery result carries it across processes
    assert (type(copy), copy.code, copy.message, copy.status) == (type(error), code, error.message, status)
