"""`manage.py inference_server` as a client sees it: the official openai client against the real
server in its own process, the remote backends against it, bad requests, and a client that
hangs up mid-stream."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import httpx
import numpy as np
import openai
import pytest

from inference.base import GenerationParams
from tests.conftest import ManagedServer, free_port

pytestmark = pytest.mark.slow

KEY = "test-key-123"
MESSAGES = [{"role": "user", "content": "Name three colours."}]
BODY_LIMIT = 64 * 1024


class InferenceServer(ManagedServer):
    """`manage.py inference_server`. One generation at a time and no queue, so a held slot shows
    at once as a 429."""

    command = "inference_server"
    log_name = "server.log"
    startup_seconds = 240
    extra_env = {
        "HF_HUB_OFFLINE": "1",
        "INFERENCE_SERVER_API_KEY": KEY,
        "INFERENCE_SERVER_MAX_BODY_BYTES": str(BODY_LIMIT),
        "INFERENCE_MAX_CONCURRENT": "1",
        "INFERENCE_QUEUE_DEPTH": "0",
    }

    def start(self) -> InferenceServer:
        # The chat backend follows the model registry: give it a database to read.
        self.manage("migrate", "--noinput")
        return super().start()

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, **kwargs)

    def post(self, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        return httpx.post(
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {KEY}", **(headers or {})},
            timeout=60,
            **kwargs,
        )

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    server = InferenceServer(tmp_path_factory.mktemp("inference-server"), free_port()).start()
    yield server
    assert server.stop() == 0, server.read_log()
    assert "Traceback" not in server.read_log()


@pytest.fixture(scope="session")
def image_generator():
    from inference.services import get_image_generator

    return get_image_generator()


def _chat_model(server) -> str:
    return next(m.id for m in server.client().models.list() if m.id.startswith("chat:"))


def assert_still_serving(server) -> None:
    reply = server.client(max_retries=0).chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=MESSAGES, max_tokens=1, temperature=0
    )
    assert reply.choices[0].message.content


# --- The openai client -------------------------------------------------------------------------


def test_models_lists_the_active_versions_by_registry_key(server, text_generator, embedder):
    ids = [model.id for model in server.client().models.list()]
    assert text_generator.model_version in ids
    assert embedder.model_version in ids
    assert any(i.startswith("image:") for i in ids)


def test_streamed_chat_equals_the_non_streamed_answer(server, text_generator):
    client = server.client()
    # The plain name is an alias of the registry key.
    reply = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=MESSAGES, max_tokens=8, temperature=0
    )
    assert reply.model == text_generator.model_version
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 5

    chunks = list(
        client.chat.completions.create(
            model=reply.model,
            messages=MESSAGES,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [reply.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_stop_strings_cut_the_answer(server):
    client = server.client()
    full = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=MESSAGES, max_tokens=8, temperature=0
    )
    text = full.choices[0].message.content
    word = text.split()[1]
    cut = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=MESSAGES, max_tokens=8, temperature=0, stop=[word]
    )
    assert cut.choices[0].message.content == text[: text.index(word)]
    assert cut.choices[0].finish_reason == "stop"


def test_embeddings_equal_the_in_process_ones(server, embedder):
    texts = ["How do I reset my router?", "Refunds take 5 to 10 working days."]
    local = embedder.embed(texts)
    client = server.client()
    for fmt in ("base64", "float"):  # base64 is what the openai client asks for by default
        kwargs = {} if fmt == "base64" else {"encoding_format": "float"}
        response = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, **kwargs)
        remote = np.asarray([row.embedding for row in response.data], dtype=np.float32)
        assert remote.shape == local.shape
        np.testing.assert_allclose(np.linalg.norm(remote, axis=1), 1.0, atol=1e-4)
        np.testing.assert_allclose(remote, local, atol=1e-4)
        assert response.model == embedder.model_version
    single = client.embeddings.create(model=embedder.model_version, input=texts[0])
    assert float(np.dot(single.data[0].embedding, local[0])) > 0.9999


def test_an_image_is_a_png_of_the_asked_size_with_its_provenance(server):
    from PIL import Image

    response = server.client().images.generate(
        prompt="a red bicycle", size="64x64", response_format="b64_json", extra_body={"seed": 7}
    )
    png = base64.b64decode(response.data[0].b64_json)
    assert png.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(png))
    assert image.size == (64, 64)
    assert image.text["parley:prompt"] == "a red bicycle"
    assert image.text["parley:seed"] == "7"
    assert image.text["parley:model_version"].startswith("image:")


# --- The remote backends ---------------------------------------------------------------------


async def test_remote_text_generator_answers_as_the_local_one(server, text_generator):
    from inference.backends.remote import RemoteTextGenerator

    remote = RemoteTextGenerator(base_url=server.url, api_key=KEY)
    assert remote.model_version == text_generator.model_version
    params = GenerationParams(max_tokens=10, repetition_penalty=1.15)
    local_text, local_usage = await text_generator.complete(MESSAGES, params)
    remote_text, remote_usage = await remote.complete(MESSAGES, params)
    assert remote_text == local_text
    assert remote_usage.model_version == local_usage.model_version
    assert (remote_usage.prompt_tokens, remote_usage.completion_tokens, remote_usage.finish_reason) == (
        local_usage.prompt_tokens,
        local_usage.completion_tokens,
        local_usage.finish_reason,
    )


async def test_remote_errors_are_the_local_ones(server):
    from inference.backends.remote import RemoteTextGenerator
    from inference.base import InputTooLong, ModelUnavailable

    remote = RemoteTextGenerator(base_url=server.url, api_key=KEY)
    with pytest.raises(InputTooLong):
        await remote.complete([{"role": "user", "content": "word " * 3000}], GenerationParams(max_tokens=4))
    nobody = RemoteTextGenerator(base_url=f"http://127.0.0.1:{free_port()}", model="m")
    with pytest.raises(ModelUnavailable):
        await nobody.complete(MESSAGES, GenerationParams(max_tokens=4))


def test_remote_embedder_and_image_generator_give_the_local_results(server, embedder, image_generator):
    from inference.backends.remote import RemoteEmbedder, RemoteImageGenerator

    remote = RemoteEmbedder(base_url=server.url, api_key=KEY)
    assert (remote.dim, remote.model_version) == (embedder.dim, embedder.model_version)
    texts = ["Öffnungszeiten: Montag bis Freitag.", "Is my router broken?", "x"]
    np.testing.assert_allclose(remote.embed(texts), embedder.embed(texts), atol=1e-4)
    assert remote.embed([]).shape == (0, embedder.dim)

    images = RemoteImageGenerator(base_url=server.url, api_key=KEY)
    assert images.model_version == image_generator.model_version
    assert images.meaningful == image_generator.meaningful
    got = images.generate("a lighthouse", width=64, height=64, steps=2, seed=11)
    want = image_generator.generate("a lighthouse", width=64, height=64, steps=2, seed=11)
    assert got.metadata == want.metadata and got.model_version == want.model_version
    difference = np.abs(np.asarray(got.image, dtype=np.int16) - np.asarray(want.image, dtype=np.int16))
    assert difference.max() <= 2  # same seed, same pixels (thread counts may differ by a rounding)


# --- Bad requests ------------------------------------------------------------------------------

CHAT = "/v1/chat/completions"


def _chat(**fields) -> dict:
    return {"model": "SmolLM2-135M-Instruct", "messages": MESSAGES, "max_tokens": 4, **fields}


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        (CHAT, _chat(max_tokens="8"), 400, "max_tokens", None),
        (CHAT, _chat(messages="hello"), 400, "messages", None),
        (CHAT, _chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content", None),
        (CHAT, _chat(temperature=9), 400, "temperature", None),
        (CHAT, _chat(n=2), 400, "n", None),
        (CHAT, _chat(model="gpt-9"), 404, "model", "model_not_found"),
        (CHAT, _chat(model="all-MiniLM-L6-v2"), 404, "model", "model_not_found"),
        (
            CHAT,
            _chat(messages=[{"role": "user", "content": "word " * 3000}]),
            400,
            "messages",
            "context_length_exceeded",
        ),
        (
            CHAT,
            _chat(stream=True, messages=[{"role": "user", "content": "word " * 3000}]),
            400,
            "messages",
            "context_length_exceeded",
        ),
        (CHAT, _chat(max_tokens=10**9), 400, "max_tokens", "invalid_value"),
        (CHAT, _chat(max_tokens=0), 400, "max_tokens", "invalid_value"),
        (CHAT, _chat(max_completion_tokens=-1), 400, "max_completion_tokens", "invalid_value"),
        (CHAT, _chat(stream=True, max_tokens=10**9), 400, "max_tokens", "invalid_value"),
        (CHAT, [1, 2], 400, None, None),
        ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": [1, 2]}, 400, "input", None),
        ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": []}, 400, "input", None),
        ("/v1/embeddings", {"input": "hi"}, 400, "model", None),
        ("/v1/images/generations", {"prompt": "x", "response_format": "url"}, 400, "response_format", None),
        ("/v1/images/generations", {"prompt": "x", "size": "big"}, 400, "size", None),
        (
            "/v1/images/generations",
            {"prompt": "x", "size": "64x64", "guidance": 29.5, "steps": 999},
            400,
            "steps",
            None,
        ),
        ("/v1/images/generations", {"prompt": "x", "size": "64x64", "seed": -1}, 400, "seed", None),
    ],
)
def test_a_bad_request_gets_an_openai_error_and_the_server_keeps_serving(
    server, path, body, status, param, code
):
    response = server.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["param"], error["code"]) == (param, code)
    assert error["type"] == "invalid_request_error"
    assert_still_serving(server)


def test_invalid_json_and_oversized_bodies_are_refused_before_parsing(server):
    headers = {"Content-Type": "application/json"}
    for raw in (b'{"model": ', b"\xff\xfe not utf-8", b""):
        response = server.post(CHAT, content=raw, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    huge = _chat(messages=[{"role": "user", "content": "x" * (BODY_LIMIT + 1)}])
    response = server.post(CHAT, json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: counted while it arrives
        yield b'{"model": "m", "input": "'
        for _ in range(BODY_LIMIT // 1024 + 1):
            yield b"y" * 1024
        yield b'"}'

    response = server.post("/v1/embeddings", content=chunked(), headers=headers)
    assert response.status_code == 413
    assert_still_serving(server)


def test_the_bearer_key_is_required_on_every_v1_route(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.post(f"{server.url}{CHAT}", json=_chat(), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{server.url}/v1/models", headers=headers).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").models.list()
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key
    assert_still_serving(server)


def test_the_openai_client_sees_typed_errors(server):
    client = server.client(max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "word " * 3000}],
            max_tokens=4,
        )
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")


# --- A client that leaves ----------------------------------------------------------------------


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    client = server.client(max_retries=0)
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "Count from 1 to 1000."}],
        max_tokens=400,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},  # keeps going however short the model's answer is
    )
    for _, _chunk in zip(range(4), stream, strict=False):
        pass
    # The only slot is taken and there is no queue: a second request is refused, not queued.
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=MESSAGES, max_tokens=2)
    assert caught.value.response.headers["Retry-After"]
    assert caught.value.code == "busy"

    stream.close()
    time.sleep(0.3)  # the server notices the closed socket
    started = time.monotonic()
    assert_still_serving(server)
    assert time.monotonic() - started < 10  # accepted at once, not after a 400-token generation

    # The abandoned generation stopped: no more tokens are being produced.
    generated = server.metric("parley_inference_generated_tokens_total")
    time.sleep(1)
    assert server.metric("parley_inference_generated_tokens_total") == generated
    assert server.metric("parley_inference_busy_refusals_total") >= 1


async def test_a_remote_generation_closed_early_frees_the_server_slot(server):
    from inference.backends.remote import RemoteTextGenerator
    from inference.base import ModelBusy

    remote = RemoteTextGenerator(base_url=server.url, api_key=KEY)
    long = GenerationParams(max_tokens=400, ignore_eos=True)
    generation = remote.stream([{"role": "user", "content": "Count from 1 to 1000."}], long)
    deltas = aiter(generation)
    for _ in range(3):
        await anext(deltas)
    with pytest.raises(ModelBusy):  # a 429 from the server is the local backend's error
        await remote.complete(MESSAGES, GenerationParams(max_tokens=1))
    await deltas.aclose()  # what the chat consumer does when the visitor leaves
    assert generation.usage.finish_reason == "cancelled"
    await asyncio.sleep(0.3)
    text, _ = await remote.complete(MESSAGES, GenerationParams(max_tokens=1))
    assert text


def test_metrics_count_requests_by_endpoint_and_status(server):
    assert server.post(CHAT, json=_chat(max_tokens=0)).status_code == 400
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert_still_serving(server)
    text = httpx.get(f"{server.url}/metrics").text
    assert 'parley_inference_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    assert 'status="400"' in text and 'status="401"' in text
    assert 'status="500"' not in text
    assert "parley_inference_time_to_first_token_seconds_bucket" in text
    assert "parley_inference_requests_in_flight" in text
