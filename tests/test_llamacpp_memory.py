"""The embedded backend prices its llama.cpp contexts before it makes them, and refuses a
batch or context size that cannot fit with the values that would; with the tiny packaged
model."""

import llama_cpp
import pytest

from cope.backends.llamacpp import LlamaCppBackend
from cope.backends.llamacpp_memory import GIB, MemoryLedger, ModelShape
from cope.errors import ConfigError
from cope.models.packaged import ensure_packaged_model
from cope.runner import run

pytestmark = pytest.mark.integration

TINY = ["pair=tiny-cpu", "task=gsm8k", "backend.n_ctx=1024", "backend.n_threads=1"]


@pytest.fixture(scope="module")
def tiny():
    llm = llama_cpp.Llama(model_path=str(ensure_packaged_model("smollm2-135m")), n_ctx=256,
                          n_threads=1, verbose=False)
    yield llm
    llm.close()


def _sequence_state_bytes(llm, tokens: list[int]) -> int:
    llm.reset()
    llm.eval(tokens)
    return llama_cpp.llama_state_seq_get_size(llm.ctx, 0)


def test_kv_bytes_per_cell_is_what_llama_cpp_stores_per_token(tiny):
    """A sequence's saved state grows, per token evaluated, by that token's keys and values
    in every layer (the size the ledger prices a cell at) and the cell's position and
    sequence id (three 32-bit numbers)."""
    shape = ModelShape.from_metadata(tiny.metadata, tiny.n_vocab())
    tokens = tiny.tokenize(b"The quick brown fox jumps over the lazy dog. " * 20)
    assert len(tokens) >= 160
    grown = _sequence_state_bytes(tiny, tokens[:160]) - _sequence_state_bytes(tiny, tokens[:32])
    assert grown == 128 * (shape.kv_bytes_per_cell + 12)
    assert shape.n_vocab == tiny.n_vocab() > 0


def test_the_values_named_as_fitting_fit_and_one_more_does_not(tiny):
    shape = ModelShape.from_metadata(tiny.metadata, tiny.n_vocab())
    left = 3 * GIB
    with pytest.raises(ConfigError) as refused:
        MemoryLedger(left).take_batch("smollm2-135m", shape, 8, 10 ** 7)
    message = str(refused.value)
    fits = int(message.split("backend.batch_n_ctx up to ")[1].split()[0])
    assert "backend.batch_size up to" not in message  # no batch size makes 10**7 cells fit
    MemoryLedger(left).take_batch("smollm2-135m", shape, 8, fits)
    with pytest.raises(ConfigError):
        MemoryLedger(left).take_batch("smollm2-135m", shape, 8, fits + 1)
    # a batch too wide for its logits: the width that fits is named, and fits
    with pytest.raises(ConfigError) as wide:
        MemoryLedger(left).take_batch("smollm2-135m", shape, 100_000, 4096)
    width = int(str(wide.value).split("backend.batch_size up to ")[1].split()[0])
    MemoryLedger(left).take_batch("smollm2-135m", shape, width, 4096)


def test_models_and_contexts_are_counted_together(tiny):
    shape = ModelShape.from_metadata(tiny.metadata, tiny.n_vocab())
    one = shape.context_bytes(4096, 8)
    ledger = MemoryLedger(2 * one + one // 2)
    ledger.take_batch("a", shape, 8, 4096)
    ledger.take_batch("b", shape, 8, 4096)
    with pytest.raises(ConfigError, match="memory is left"):
        ledger.take_batch("c", shape, 8, 4096)


@pytest.mark.parametrize("batching", ["fixed", "continuous"])
def test_a_batch_context_no_machine_holds_is_refused_before_any_generation(
        make_config, tmp_path, batching):
    """2**31 cells of this model's KV cache are about 46 TiB."""
    cfg = make_config(*TINY, f"backend.batching={batching}", "backend.batch_size=4",
                      f"backend.batch_n_ctx={2 ** 31}", "task.limit=1", "method=cope",
                      "method.votes=2", "method.max_tokens=8", "method.plan_max_tokens=8")
    with pytest.raises(ConfigError, match="What fits: backend.batch_n_ctx up to"):
        run(cfg)
    assert not (tmp_path / "run" / "problems.jsonl").exists()
    assert not (tmp_path / "cache.sqlite").exists() or _rows(tmp_path / "cache.sqlite") == 0


def _rows(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type='table'")]
        return sum(db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables)


def test_the_backend_refuses_before_making_the_context(make_config):
    cfg = make_config(*TINY, "backend.batch_size=4", f"backend.batch_n_ctx={2 ** 31}")
    backend = LlamaCppBackend(cfg.backend)
    try:
        with pytest.raises(ConfigError, match="KiB of KV cache per cell"):
            backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
        assert backend._decoders == {}
    finally:
        backend.close()
