"""A sample's identity covers every setting that can change an output (cope/identity.py):
each field of the model, backend and sampling config changes the cache key or is on the
one documented list of settings that cannot change an output."""

import copy
import dataclasses
import enum
import shutil
import typing

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from cope import config as config_module
from cope.backends.base import chunk_positions
from cope.backends.scripted import ScriptedBackend
from cope.cache import GenerationCache
from cope.cache_archive import export_archive, import_archive, read_archive
from cope.samples import (BackendRequest, Completion, GenerationRequest, SampleTag,
                          SamplingParams)
from cope.generator import Generator, ModelBinding
from cope.identity import BACKEND_SECTION, OUTPUT_NEUTRAL, settings_digest
from cope.runner import run
from cope.testing import StubServer

from conftest import compose_config

SECTIONS = {"model": config_module.ModelConfig, "model.server": config_module.ServerConfig,
            "backend": config_module.BackendConfig,
            "transformers": config_module.TransformersConfig, "http": config_module.HttpConfig}
HINTS = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}


def changed(value, hint):
    """Another value of the field's type."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    optional = typing.get_origin(hint) is typing.Union
    kind = [k for k in typing.get_args(hint) if k is not type(None)][0] if optional else hint
    kind = typing.get_origin(kind) or kind
    if isinstance(kind, type) and issubclass(kind, enum.Enum):  # a closed set: another member
        return next(member for member in kind if member != value)
    if value is None:
        return {int: 7, float: 1.5, str: "other", bool: True, list: ["x"], dict: {"k": 1}}[kind]
    if kind is bool:
        return not value
    if kind in (int, float):
        return value + 1
    if kind is str:
        return value + "-other"
    if kind is list:
        return [*value, "--other"]
    if kind is dict:
        return {**value, "top_k": 40}
    raise AssertionError(f"no other value for {hint}")


def fields(section):
    return [f.name for f in dataclasses.fields(SECTIONS[section])]


def node(cfg, alias, section):
    if section == "model":
        return cfg.models[alias]
    if section == "model.server":
        return cfg.models[alias].server
    return getattr(cfg, section)


@pytest.fixture(scope="module")
def default_config():
    return compose_config([])


CASES = [(backend, section, name) for backend, own in BACKEND_SECTION.items() if own
         for section in ("model", "model.server", own) for name in fields(section)
         if (section, name) != ("model", "server")]  # walked as a section of its own


@pytest.mark.parametrize("backend,section,name", CASES,
                         ids=[f"{b}-{s}.{n}" for b, s, n in CASES])
def test_every_setting_changes_the_identity_or_is_declared_neutral(backend, section, name,
                                                                   default_config):
    cfg = copy.deepcopy(default_config)
    alias = "smollm2-135m"
    cfg.models[alias].backend = backend
    before = settings_digest(cfg.models[alias], cfg)
    target = node(cfg, alias, section)
    value = changed(target[name], HINTS[section][name])
    target[name] = value
    after = settings_digest(cfg.models[alias], cfg)
    if name in OUTPUT_NEUTRAL[section]:
        assert after == before, f"{section}.{name} is declared neutral but changes the identity"
    else:
        assert after != before, f"{section}.{name} changes no identity and is not declared neutral"


def test_the_neutral_list_names_only_real_fields_with_reasons():
    for section, neutral in OUTPUT_NEUTRAL.items():
        assert set(neutral) <= set(fields(section)), section
        assert all(reason.strip() for reason in neutral.values())
    assert set(BACKEND_SECTION.values()) - {None} <= set(OUTPUT_NEUTRAL)


def test_a_section_other_backends_read_leaves_a_model_alone():
    cfg = compose_config([])
    model = cfg.models["smollm2-135m"]  # llama.cpp: reads `backend`, not `transformers`
    before = settings_digest(model, cfg)
    cfg.transformers.dtype = "bfloat16"
    cfg.http.concurrency = 3
    assert settings_digest(model, cfg) == before
    cfg.backend.n_batch = 256
    assert settings_digest(model, cfg) != before


def request(settings="", **params):
    return BackendRequest("m@openai:m", (("user", "2+2?"),),
                          SamplingParams(**{"temperature": 0.7, "max_tokens": 64, **params}), 0,
                          settings=settings)


def test_every_sampling_parameter_changes_the_key_and_greedy_ignores_seed_and_top_p():
    base = request()
    for name, value in (("temperature", 0.9), ("max_tokens", 65), ("top_p", 0.9), ("seed", 1),
                        ("stop", ("\n",))):
        assert request(**{name: value}).cache_key() != base.cache_key(), name
    assert request(temperature=0.0, seed=1, top_p=0.5).cache_key() == \
        request(temperature=0.0, seed=2).cache_key()
    assert request(settings="a").cache_key() != base.cache_key()
    assert BackendRequest("m@openai:m", (("user", "2+2?"),), SamplingParams(0.7, 64), 0,
                          want_logprobs=True).cache_key() != base.cache_key()


def test_keys_of_the_former_version_stay_readable_but_never_answer(tmp_path):
    """A version-1 row (keyed by what was asked alone) is not replayed, and archives carry
    rows of both versions across."""
    current = request(settings="abc")
    cache = GenerationCache(tmp_path / "c.sqlite")
    cache._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                      (current.content_key(), "m@openai:m", '{"text": "stale", "prompt_tokens": 1, '
                       '"completion_tokens": 1}', 0.0))
    cache._db.commit()
    assert cache.get(current) is None
    cache.put(current, Completion("fresh", 1, 1))
    cache.close()
    assert export_archive(tmp_path / "c.sqlite", tmp_path / "a.jsonl.gz") == 2
    assert import_archive(tmp_path / "a.jsonl.gz", tmp_path / "d.sqlite") == (2, 2)
    assert {key for key, _, _ in read_archive(tmp_path / "a.jsonl.gz")} == {
        current.content_key(), current.cache_key()}
    copy = GenerationCache(tmp_path / "d.sqlite")
    assert copy.get(current).text == "fresh"
    copy.close()


def test_former_rows_answer_only_when_asked_and_are_then_stored_under_the_full_key(tmp_path):
    current = request(settings="abc")
    cache = GenerationCache(tmp_path / "c.sqlite")
    cache._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                      (current.content_key(), "m@openai:m", '{"text": "made before", '
                       '"prompt_tokens": 1, "completion_tokens": 1}', 0.0))
    cache.close()
    reusing = GenerationCache(tmp_path / "c.sqlite", reuse_former_keys=True)
    assert reusing.get(current).text == "made before"
    reusing.close()
    plain = GenerationCache(tmp_path / "c.sqlite")  # the row now answers under its full key
    assert plain.get(current).text == "made before"
    assert plain.get(request(settings="other")) is None
    plain.close()


def test_changing_top_k_of_an_api_model_generates_again(make_config, tmp_path, monkeypatch):
    """The reported defect: extra_body (top_k, min_p, ...) changes the distribution, so a run
    that changes it must not replay the samples made without it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0123456789")

    def stub_run(stub, name, extra_body):
        cfg = make_config("task.limit=2", "pair.roles.large=gpt-4o-mini", "method=large",
                          "backend.name=scripted", f"run_dir={tmp_path / name}")
        cfg.models["gpt-4o-mini"].base_url = stub.base_url
        cfg.models["gpt-4o-mini"].extra_body = extra_body
        before = stub.counts["requests"]
        run(cfg)
        return stub.counts["requests"] - before

    with StubServer() as stub:
        first = stub_run(stub, "plain", {})
        assert first > 0
        assert stub_run(stub, "again", {}) == 0  # the same settings replay from the cache
        assert stub_run(stub, "top_k", {"top_k": 5}) == first
        assert stub_run(stub, "top_k_again", {"top_k": 5}) == 0


class BatchDependent(ScriptedBackend):
    """Decodes its requests in batches of `size` whose every output depends on the whole
    batch, as llama.cpp's batched samples do in their last bits."""

    def __init__(self, size):
        super().__init__()
        self.size = size
        self.batches = []

    def joint_batches(self, requests):
        return chunk_positions(requests, lambda r: r.model_identity, self.size)

    async def generate(self, requests, on_complete=None):
        out = [None] * len(requests)
        for batch in chunk_positions(requests, lambda r: r.model_identity, self.size):
            self.batches.append([requests[i].params.seed for i in batch])
            beside = "+".join(str(requests[i].params.seed) for i in batch)
            for i in batch:
                out[i] = Completion(f"seed {requests[i].params.seed} beside {beside}", 3, 5)
                if on_complete is not None:
                    on_complete(i, out[i])
        self.requests.extend(requests)
        return out


def generate_seeds(tmp_path, backend, seeds, cache_name="c.sqlite", mode="readwrite",
                   **cache_options):
    import asyncio

    cache = GenerationCache(tmp_path / cache_name, mode, **cache_options)
    generator = Generator({"m": ModelBinding("m", "m@batched", backend, "settings")}, cache)
    requests = [GenerationRequest("m", (("user", "2+2?"),), SamplingParams(0.8, 64, seed=s), s)
                for s in seeds]
    tags = [SampleTag("p", "s1", "executor", "small") for _ in seeds]
    try:
        return [g.completion.text for g in asyncio.run(generator.generate(requests, tags))]
    finally:
        cache.close()


def test_a_batched_sample_is_keyed_by_its_batch(tmp_path):
    backend = BatchDependent(8)
    eight = generate_seeds(tmp_path, backend, range(8))
    four = generate_seeds(tmp_path, backend, range(4))  # not samples 0..3 of the batch of 8
    assert four == generate_seeds(tmp_path, BatchDependent(8), range(4), "fresh.sqlite")
    assert four != eight[:4] and backend.batches == [list(range(8)), list(range(4))]
    assert generate_seeds(tmp_path, backend, range(8)) == eight  # replayed, not decoded
    assert len(backend.batches) == 2


def test_a_batch_with_a_sample_missing_is_decoded_whole_again(tmp_path):
    backend = BatchDependent(4)
    first = generate_seeds(tmp_path, backend, range(6))  # batches 0..3 and 4..5
    cache = GenerationCache(tmp_path / "c.sqlite")
    (key,) = [k for (k,) in cache._db.execute("SELECT key FROM generations")][:1]
    cache._db.execute("DELETE FROM generations WHERE key = ?", (key,))
    cache._db.commit()
    cache.close()
    assert generate_seeds(tmp_path, backend, range(6)) == first
    assert len(backend.batches) == 3 and backend.batches[2] in ([0, 1, 2, 3], [4, 5])


def test_batched_rows_keyed_before_keys_named_the_batch_answer_only_when_asked(tmp_path):
    backend = BatchDependent(8)
    made = generate_seeds(tmp_path, backend, range(4))
    cache = GenerationCache(tmp_path / "c.sqlite")  # rekey every row as before batches had names
    rows = list(cache._db.execute("SELECT key, model, completion, created FROM generations"))
    cache._db.execute("DELETE FROM generations")
    for (key, model, completion, created), seed in zip(rows, range(4)):
        plain = BackendRequest("m@batched", (("user", "2+2?"),), SamplingParams(0.8, 64, seed=seed),
                               seed, settings="settings")
        cache._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                          (plain.cache_key(), model, completion, created))
    cache._db.commit()
    cache.close()
    shutil.copy(tmp_path / "c.sqlite", tmp_path / "copy.sqlite")
    fresh = BatchDependent(8)
    assert generate_seeds(tmp_path, fresh, range(4), "copy.sqlite") == made
    assert fresh.batches == [[0, 1, 2, 3]]  # decoded again: the old rows did not answer
    again = BatchDependent(8)
    assert generate_seeds(tmp_path, again, range(4), reuse_former_keys=True) == made
    assert again.batches == []


def test_former_rows_of_part_of_a_batch_give_way_to_the_batch_decoded_whole(tmp_path):
    """Rows of seeds 0..3 made before keys named batches, then a run of seeds 0..7 in one
    batch: the batch is decoded whole and its fresh samples are what the cache keeps."""
    old = BatchDependent(8)
    generate_seeds(tmp_path, old, range(4))
    cache = GenerationCache(tmp_path / "c.sqlite")
    rows = list(cache._db.execute("SELECT completion FROM generations"))
    cache._db.execute("DELETE FROM generations")
    for (completion,), seed in zip(rows, range(4)):
        plain = BackendRequest("m@batched", (("user", "2+2?"),), SamplingParams(0.8, 64, seed=seed),
                               seed, settings="settings")
        cache._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                          (plain.cache_key(), "m@batched", completion, 0.0))
    cache._db.commit()
    cache.close()
    eight = generate_seeds(tmp_path, BatchDependent(8), range(8), reuse_former_keys=True)
    assert all(text.endswith("beside 0+1+2+3+4+5+6+7") for text in eight)
    replay = BatchDependent(8)
    assert generate_seeds(tmp_path, replay, range(8), mode="readonly") == eight
    assert replay.batches == []
