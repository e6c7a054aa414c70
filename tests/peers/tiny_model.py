"""A tiny random-weight llama GGUF that llama-server loads and streams printable text from.

Recipe (shared DESIGN §7): llama architecture, 2 layers, 64-dim embeddings, a small
SentencePiece-style vocabulary (control tokens, the 256 byte tokens, a few dozen words and
letters). Random weights alone would sample byte tokens that are not valid UTF-8 and hit
end-of-sequence early, so one embedding dimension (``_GUARD``) is held at 1.0 through the
whole residual stream: every token embedding has 1.0 there, and that row is zero in every
``attn_output`` and ``ffn_down`` matrix, so no layer writes to it. After the final RMS norm
that dimension is large and positive, and every control, unknown and byte token has a large
negative weight on it in ``output.weight``: those tokens are never sampled. Generation
therefore yields printable words and ends only by ``max_tokens``.

The weights come from a seeded generator, so the file is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

# Shape of the model. Context 512 keeps "prompt over the context size" tests cheap.
CONTEXT_LENGTH = 512
EMBEDDING_LENGTH = 64
BLOCK_COUNT = 2
HEAD_COUNT = 4
FEED_FORWARD_LENGTH = 128
MODEL_NAME = "hushchat-tiny-llama"

_SEED = 20_261_124
_GUARD = 0  # the embedding dimension held constant through the residual stream
_FORBIDDEN_LOGIT_WEIGHT = -1000.0
_WEIGHT_SCALE = 0.02

_CONTROL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
_WORDS = (
    "hello",
    "world",
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "tiny",
    "model",
    "chat",
    "local",
    "first",
    "private",
    "llama",
    "server",
    "stream",
    "token",
    "user",
    "assistant",
    "system",
    "answer",
    "question",
    "is",
    "a",
    "of",
    "to",
    "and",
)
_PUNCTUATION = (".", ",", "!", "?")

# A ChatML-style template, enough for llama-server's /v1/chat/completions and /v1/messages.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, SentencePiece scores and token types, control tokens first (ids 0, 1, 2)."""
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []

    def add(text: str, score: float, token_type: gguf.TokenType) -> None:
        tokens.append(text)
        scores.append(score)
        types.append(int(token_type))

    for text in _CONTROL_TOKENS:
        add(text, 0.0, gguf.TokenType.UNKNOWN if text == "<unk>" else gguf.TokenType.CONTROL)
    for byte in range(256):
        add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    # Longer pieces score higher so the SentencePiece merge prefers whole words.
    pieces = ["▁" + word for word in _WORDS]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁", *_PUNCTUATION]
    for rank, piece in enumerate(pieces):
        add(piece, float(len(piece)) - rank * 1e-3, gguf.TokenType.NORMAL)
    return tokens, scores, types


def _random(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * _WEIGHT_SCALE).astype(np.float32)


def write_tiny_model(path: Path) -> Path:
    """Write the tiny model to ``path`` (a ``.gguf`` file) and return ``path``.

    Numpy shapes are (rows, columns) = (out, in); GGUF stores them reversed, which is the
    ``{in, out}`` order llama.cpp's loader checks (``src/models/llama.cpp``).
    """
    tokens, scores, types = _vocabulary()
    n_vocab = len(tokens)
    n_embd = EMBEDDING_LENGTH
    rng = np.random.default_rng(_SEED)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(MODEL_NAME)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(BLOCK_COUNT)
    writer.add_feed_forward_length(FEED_FORWARD_LENGTH)
    writer.add_head_count(HEAD_COUNT)
    writer.add_head_count_kv(HEAD_COUNT)
    writer.add_rope_dimension_count(n_embd // HEAD_COUNT)
    writer.add_rope_freq_base(10_000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    token_embd = _random(rng, n_vocab, n_embd)
    token_embd[:, _GUARD] = 1.0
    writer.add_tensor("token_embd.weight", token_embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))

    output = (rng.standard_normal((n_vocab, n_embd)) * 0.5).astype(np.float32)
    output[:, _GUARD] = 0.0
    forbidden = [i for i, t in enumerate(types) if t != int(gguf.TokenType.NORMAL)]
    output[forbidden, _GUARD] = _FORBIDDEN_LOGIT_WEIGHT
    writer.add_tensor("output.weight", output)

    for layer in range(BLOCK_COUNT):
        prefix = f"blk.{layer}"
        attn_output = _random(rng, n_embd, n_embd)
        attn_output[_GUARD, :] = 0.0
        ffn_down = _random(rng, n_embd, FEED_FORWARD_LENGTH)
        ffn_down[_GUARD, :] = 0.0
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", _random(rng, n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_k.weight", _random(rng, n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_v.weight", _random(rng, n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_output.weight", attn_output)
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", _random(rng, FEED_FORWARD_LENGTH, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", _random(rng, FEED_FORWARD_LENGTH, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", ffn_down)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
