"""What the embedded backend's llama.cpp contexts will take from memory, checked before they
are made.

llama.cpp allocates a context's KV cells and logits up front, and on Linux an allocation
larger than the memory left usually succeeds and is only paid for later, by the kernel
killing the process in the middle of a run. So each model's contexts are priced from its
GGUF metadata first, and a batch size or context size that cannot fit beside what is already
loaded is refused with the largest values that would fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from cope.errors import ConfigError

GIB = 1024 ** 3
KV_BYTES = 2  # llama.cpp's default cache type, f16, for keys and values alike
LOGIT_BYTES = 4  # float32 logits, one row of n_vocab per output


@dataclass(frozen=True)
class ModelShape:
    """What of a model's architecture sets the size of its contexts."""

    kv_bytes_per_cell: int  # keys and values of one token in every layer
    n_vocab: int

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], n_vocab: int) -> ModelShape:
        arch = metadata["general.architecture"]

        def number(key: str, default: int | None = None) -> int:
            value = metadata.get(f"{arch}.{key}")
            if value is None:
                if default is None:
                    raise KeyError(f"{arch}.{key}")
                return default
            return int(value)

        n_head = number("attention.head_count")
        n_head_kv = number("attention.head_count_kv", n_head)
        head_dim = number("embedding_length") // n_head
        k_dim = number("attention.key_length", head_dim)
        v_dim = number("attention.value_length", head_dim)
        cell = number("block_count") * n_head_kv * (k_dim + v_dim) * KV_BYTES
        return cls(cell, n_vocab)

    def context_bytes(self, n_ctx: int, outputs: int) -> int:
        """KV cells and the logits of up to `outputs` tokens per decode."""
        return n_ctx * self.kv_bytes_per_cell + outputs * self.n_vocab * LOGIT_BYTES


def available_bytes() -> int | None:
    """Memory the kernel can still give without swapping (MemAvailable); None off Linux."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemoryLedger:
    """Memory left for the backend's models and contexts, as they are added; None when the
    machine does not say (then nothing is checked)."""

    def __init__(self, available: int | None = None) -> None:
        self.left = available_bytes() if available is None else available

    def take_model(self, alias: str, weights_bytes: int, shape: ModelShape, n_ctx: int) -> None:
        """The weights (mapped from their file, and needed resident) and the context of one
        sequence that `backend.n_ctx` sizes. llama-cpp-python makes that context as it loads
        the model, so it is counted after the fact: what it leaves is what the batch
        contexts, priced before they are made, may take."""
        need = weights_bytes + shape.context_bytes(n_ctx, 1)
        if self.left is not None and need > self.left:
            raise ConfigError(
                f"{alias} needs {need / GIB:.1f} GiB (weights and a backend.n_ctx={n_ctx} "
                f"context) and {self.left / GIB:.1f} GiB of memory is left: a smaller "
                "backend.n_ctx, or a smaller model, is needed.")
        self._take(need)

    def take_batch(self, alias: str, shape: ModelShape, batch_size: int, batch_n_ctx: int
                   ) -> None:
        """A batch context of `batch_size` sequences sharing `batch_n_ctx` KV cells."""
        need = shape.context_bytes(batch_n_ctx, batch_size)
        if self.left is not None and need > self.left:
            fits_n_ctx = (self.left - shape.context_bytes(0, batch_size)) // shape.kv_bytes_per_cell
            fits_batch = (self.left - shape.context_bytes(batch_n_ctx, 0)) // (
                shape.n_vocab * LOGIT_BYTES)
            fits = [f"backend.batch_n_ctx up to {fits_n_ctx} at this batch_size"] if fits_n_ctx > 0 else []
            if fits_batch > 0:
                fits.append(f"backend.batch_size up to {fits_batch} at this batch_n_ctx")
            raise ConfigError(
                f"backend.batch_size={batch_size} with backend.batch_n_ctx={batch_n_ctx} needs "
                f"{need / GIB:.1f} GiB for {alias} ({shape.kv_bytes_per_cell / 1024:.0f} KiB of "
                f"KV cache per cell, {shape.n_vocab * LOGIT_BYTES / 1024 ** 2:.2f} MiB of logits "
                f"per sequence), and {self.left / GIB:.1f} GiB of memory is left. What fits: "
                + (" or ".join(fits) if fits else "no batch context beside the models already "
                   "loaded; use backend.batch_size=1") + ".")
        self._take(need)

    def _take(self, need: int) -> None:
        if self.left is not None:
            self.left -= need
