"""Retrieval against the real llama-server started with ``--embeddings`` (issue 14): the
chunks of an attachment are embedded over ``/v1/embeddings``, stored in the database and
the chunk a question is about comes back first by vector similarity."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.chat.retrieval import Retrieval
from app.chat.service import ChatService, create_provider
from app.config import LoadedConfig, parse_config
from app.store.library import Library, memory_connection
from app.store.models import Tier
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.llama_server

# Words of the tiny model's vocabulary (tests/peers/tiny_model.py), so no byte tokens.
CHUNKS = [
    ("the quick brown fox jumps over the lazy dog", "story.txt, p. 1"),
    ("private local llama server stream", "story.txt, p. 2"),
    ("user question and assistant answer", "story.txt, p. 3"),
    ("tiny model chat first token", "story.txt, p. 4"),
]


@pytest.fixture(scope="module")
def embedding_server(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log_path = tmp_path_factory.mktemp("llama-embeddings") / "llama-server.log"
    with LlamaServer(llama_server_binary, tiny_model_path, log_path, embeddings=True) as server:
        yield server


@pytest.fixture
def service(embedding_server: LlamaServer) -> Iterator[ChatService]:
    config = parse_config(
        f"""llms:
  - provider_name: local
    type: openai
    base_url: {embedding_server.base_url}/v1
    model_name: {MODEL_ALIAS}
    embedding_model: {MODEL_ALIAS}
""",
        "test",
        {},
    )
    library = Library(memory_connection(), memory_connection())
    chat_service = ChatService(library, LoadedConfig(config, None, {}))
    yield chat_service
    chat_service.close()
    library.close()


async def test_chunks_are_embedded_and_the_nearest_one_is_retrieved(service: ChatService) -> None:
    store = service.library.store(Tier.STANDARD)
    chat = store.create_chat(provider="local")
    message = store.add_message(chat.id, "user", "see attached", parent_id=None)
    attachment = store.add_attachment(
        message.id, io.BytesIO(b"story"), max_size=1 << 20, name="story.txt"
    )
    retrieval = Retrieval(service, create_provider)

    result = await retrieval.index(chat.id, attachment.id, CHUNKS)

    assert (result.chunks, result.embedded, result.model) == (4, 4, MODEL_ALIAS)
    assert store.count_vectors(chat.id, MODEL_ALIAS) == 4
    for question, label in [
        ("lazy dog and brown fox", "story.txt, p. 1"),
        ("llama server stream", "story.txt, p. 2"),
        ("assistant answer to a question", "story.txt, p. 3"),
    ]:
        hits = await retrieval.relevant_chunks(chat.id, question, 2)
        assert hits[0].label == label, question
        assert hits[0].vector_rank == 1, question
