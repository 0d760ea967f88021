"""Agent tasks: episodes on real generated TextWorld games with a scripted player, the vote
over commands, invalid moves, the step limit, records and resume."""

import json
import random

import pytest

from cope.agent.actions import choose_command, normalise, read_command, vote
from cope.backends.scripted import ScriptedBackend
from cope.config import validate
from cope.errors import ConfigError, DataError
from cope.runner import run

from conftest import compose_config
from scripted import GARBAGE, WALKTHROUGH, walkthrough_responder

SCRIPTED = ["backend.name=scripted", "pair=qwen-coder-cpu", "task=textworld", "concurrency=1"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- commands and the vote (no game needed) ---

@pytest.mark.parametrize("text, command", [
    ("Action: go north", "go north"),
    ("I should look around first.\nAction: `Open the Chest`.", "open the chest"),
    ("**Action:** take key", "take key"),
    ("> go   south\nbecause the door is there", "go south"),
    ("", None),
    ("Action:", None),
])
def test_a_command_is_read_from_the_action_line_or_the_first_line(text, command):
    assert read_command(text) == command


def test_only_admissible_commands_are_valid_and_keep_the_games_spelling():
    admissible = ["go north", "take red key"]
    assert choose_command("Action: Take  Red Key.", admissible) == "take red key"
    assert choose_command("Action: take the key", admissible) is None  # not a valid command
    assert choose_command("Action: dance", None) == "dance"  # no list: the game decides
    assert normalise(" `Go North.` ") == "go north"


def test_confidence_is_the_top_commands_share_with_abstentions_counted():
    tally = vote(["go north", None, "go north", "look"])
    assert tally.answer == "go north" and tally.confidence == 0.5
    assert tally.support == [0, 2] and tally.answers[1] is None
    assert vote([None, None]).answer is None and vote([None, None]).confidence == 0.0
    picks = {vote(["a", "b"], random.Random(seed)).answer for seed in range(20)}
    assert picks == {"a", "b"}  # a tie is broken at random with the run's generator


def test_the_title_banner_and_prompt_are_cut_from_what_the_game_says():
    from cope.agent.env import clean_feedback

    said = ("\n\n   ________  __\n  |        \\|  \\\n   \\$$$$$$$$| $$\n\nIt's time to explore!"
            "\n\n\n\n-= Spare Room =-\nA mug is here.\n\n>  ")
    assert clean_feedback(said) == "It's time to explore!\n\n-= Spare Room =-\nA mug is here."


def test_agent_settings_are_validated():
    with pytest.raises(ConfigError, match="task.agent.max_steps=0"):
        validate(compose_config(["task=textworld", "task.agent.max_steps=0"]))
    with pytest.raises(ConfigError, match="task.agent.history=-1"):
        validate(compose_config(["task=textworld", "task.agent.history=-1"]))


def test_alfworld_without_package_or_data_names_both_ways(make_config, monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(DataError) as info:
        run(make_config("task=alfworld", "backend.name=scripted"))
    message = str(info.value)
    assert "pip install alfworld" in message and "ALFWORLD_DATA" in message


# --- episodes on generated TextWorld games ---

@pytest.fixture(scope="session")
def games(tmp_path_factory):
    """Two small games, generated once by tw-make into a directory the runs play from."""
    pytest.importorskip("textworld", reason='the agent tests need textworld: pip install -e ".[agent]"')
    from cope.agent.games import GameSettings, generate_games

    directory = tmp_path_factory.mktemp("textworld_games")
    generate_games(directory, GameSettings(world_size=2, nb_objects=4, quest_length=2), [1, 2])
    return directory


@pytest.fixture
def play(make_config, games):
    """Run the textworld task on the generated games with a scripted player."""

    def play_games(*overrides, **policy):
        cfg = make_config(*SCRIPTED, f"task.source={games}", *overrides)
        from cope.tasks import create_task

        problems = create_task(cfg.task).load()
        backend = ScriptedBackend(walkthrough_responder(problems, **policy))
        return run(cfg, backends={"scripted": backend}), problems

    return play_games


def test_generated_games_are_deterministic_and_carry_a_walkthrough(games, tmp_path):
    from cope.agent.games import GameSettings, game_metadata, generate_game

    again = generate_game(tmp_path, GameSettings(world_size=2, nb_objects=4, quest_length=2), 1)
    assert again.read_bytes() == (games / "game-s1.z8").read_bytes()
    meta = game_metadata(again)
    assert len(meta["walkthrough"]) == 2 and meta["objective"]


def test_the_walkthrough_player_wins_every_game_at_stage_one(play):
    result, problems = play("concurrency=2")  # two games in play at once
    rows, m = result.problems, result.metrics
    assert [r["id"] for r in rows] == ["game-s1", "game-s2"]
    for row, problem in zip(rows, problems):
        assert row["won"] and row["correct"] and row["outcome"] == "won"
        assert [step["command"] for step in row["trajectory"]] == problem.meta["walkthrough"]
        assert row["steps"] == len(problem.meta["walkthrough"]) and row["invalid_moves"] == 0
        # unanimous votes (8 of 8 > tau1): every action is chosen by the small model alone
        assert row["steps_resolved_by_stage"] == {"s1": row["steps"], "s2": 0, "s3": 0}
        assert row["resolved_stage"] == "s1" and row["cost_usd"] == 0.0
    assert m["success_rate"] == 1.0 and m["accuracy"] == 1.0
    assert m["mean_steps"] == sum(r["steps"] for r in rows) / 2
    assert m["steps_resolved_by_stage"]["s1"] == m["n_steps"] and m["large_calls"] == 0
    samples = read_jsonl(result.run_dir / "samples.jsonl")
    assert {s["problem_id"] for s in samples} == {"game-s1", "game-s2"}
    # per step: 8 goal plans and 8 executions of stage 1
    assert len(samples) == 16 * m["n_steps"]
    assert all(0 <= s["step"] < 2 for s in samples)


def test_malformed_commands_are_invalid_moves_until_the_step_limit(play):
    result, _ = play("task.agent.max_steps=3", "task.limit=1", small=GARBAGE,
                     small_with_guideline=GARBAGE, large=GARBAGE)
    row, m = result.problems[0], result.metrics
    assert m["finished"] and not row["won"] and row["outcome"] == "step_limit"
    assert row["steps"] == 3 and row["invalid_moves"] == 3 and row["score"] == 0
    assert all(not step["valid"] and step["command"] is None for step in row["trajectory"])
    # no stage found a command: every step went through all three stages to the large model
    assert row["steps_resolved_by_stage"] == {"s1": 0, "s2": 0, "s3": 3}
    assert m["large_calls"] == 3 * 2  # a guideline and a greedy execution per step
    assert m["mean_invalid_moves"] == 3 and m["cost_usd_per_million"] > 0
    samples = read_jsonl(result.run_dir / "samples.jsonl")
    assert sum(s["cost_usd"] for s in samples) == pytest.approx(row["cost_usd"])


def test_a_split_vote_escalates_and_the_next_stage_acts(play):
    half = [WALKTHROUGH] * 4 + [GARBAGE] * 4  # consensus 0.5, not above tau1 = 0.75
    result, problems = play("task.limit=1", small=half, small_with_guideline=WALKTHROUGH)
    row = result.problems[0]
    assert row["won"] and row["steps"] == len(problems[0].meta["walkthrough"])
    assert row["steps_resolved_by_stage"] == {"s1": 0, "s2": row["steps"], "s3": 0}
    first = row["trajectory"][0]["stages"]
    assert [s["stage"] for s in first] == ["s1", "s2"]
    assert first[0]["consensus"] == 0.5 and not first[0]["accepted"]
    assert first[0]["abstained"] == 4 and first[1]["consensus"] == 1.0


def test_the_step_limit_ends_an_unfinished_episode(play):
    result, _ = play("task.agent.max_steps=1", "task.limit=1")
    row = result.problems[0]
    assert row["steps"] == 1 and row["outcome"] == "step_limit" and not row["correct"]
    assert result.metrics["success_rate"] == 0.0


def test_a_rerun_replays_from_the_cache_and_resume_keeps_finished_episodes(play, make_config,
                                                                         tmp_path):
    first, _ = play()
    problems_bytes = (first.run_dir / "problems.jsonl").read_bytes()
    # a run cut off after its first episode
    (first.run_dir / "metrics.json").unlink()
    lines = problems_bytes.decode().splitlines(keepends=True)
    (first.run_dir / "problems.jsonl").write_text(lines[0] + lines[1][:40])
    resumed, _ = play("resume=true")
    assert resumed.metrics["finished"] and resumed.metrics["n_resumed"] == 1
    assert resumed.metrics["backend_calls"] == 0  # the cut-off episode came from the cache
    assert (first.run_dir / "problems.jsonl").read_bytes() == problems_bytes
    samples = read_jsonl(first.run_dir / "samples.jsonl")
    assert len(samples) == 16 * resumed.metrics["n_steps"]
    assert resumed.metrics["success_rate"] == 1.0


@pytest.mark.integration
def test_the_tiny_model_plays_a_few_moves_through_every_stage(make_config, games, tmp_path):
    """SmolLM2-135M on llama.cpp plays and votes for two moves; it will not win, so the
    records are checked, not the outcome. Thresholds of 1.0 send every move through all
    three stages."""
    tiny = ["pair=tiny-cpu", "task=textworld", f"task.source={games}", "task.limit=1",
            "task.agent.max_steps=2", "task.agent.history=2", "method=cope", "method.votes=2",
            "method.tau1=1.0", "method.tau2=1.0", "method.max_tokens=24",
            "method.plan_max_tokens=24", "backend.n_ctx=2048", "concurrency=1"]
    result = run(make_config(*tiny))
    (row,) = read_jsonl(result.run_dir / "problems.jsonl")
    samples = read_jsonl(result.run_dir / "samples.jsonl")
    m = json.loads((result.run_dir / "metrics.json").read_text())
    assert row["id"] == "game-s1" and row["outcome"] in ("won", "lost", "step_limit")
    assert row["steps"] == 2 or row["won"]
    assert row["invalid_moves"] == sum(not step["valid"] for step in row["trajectory"])
    for step in row["trajectory"]:
        assert step["valid"] == (step["command"] is not None)
        assert [s["stage"] for s in step["stages"]] == ["s1", "s2", "s3"]
    # per move: 2 goals + 2 executions, 1 guideline + 2 executions, 1 large execution
    assert len(samples) == 8 * row["steps"]
    assert sorted({s["step"] for s in samples}) == list(range(row["steps"]))
    assert {s["problem_id"] for s in samples} == {"game-s1"}
    assert m["n_steps"] == row["steps"] and m["steps_resolved_by_stage"]["s3"] == row["steps"]
    assert m["success_rate"] == float(row["won"]) and m["cost_usd_per_million"] == 0.0
    # the same run again from the cache alone gives the same episode
    replay = run(make_config(*tiny, f"run_dir={tmp_path / 'replay'}", "cache.mode=readonly"))
    assert replay.metrics["backend_calls"] == 0
    assert (replay.run_dir / "problems.jsonl").read_bytes() == \
        (result.run_dir / "problems.jsonl").read_bytes()


def test_a_directory_source_must_be_a_directory(make_config, tmp_path):
    (tmp_path / "game.z8").write_text("not a directory")
    with pytest.raises(DataError, match="give a directory of TextWorld games"):
        run(make_config("task=textworld", "backend.name=scripted", f"task.source={tmp_path / 'game.z8'}"))


# alfworld itself cannot run here (its data is a download): this stand-in keeps its API
# (get_environment -> AlfredTWEnv(config, train_eval) with game_files and init_env) and, like
# alfworld, serves the games through TextWorld's batch gym environment
ALFWORLD_STAND_IN = '''
import os
import textworld
import textworld.gym

class AlfredTWEnv:
    def __init__(self, config, train_eval="train"):
        key = {"eval_out_of_distribution": "eval_ood_data_path",
               "eval_in_distribution": "eval_id_data_path", "train": "data_path"}[train_eval]
        root = os.path.expandvars(config["dataset"][key])
        self.config = config
        self.game_files = sorted(os.path.join(d, "game.z8") for d, _, files in os.walk(root)
                                 if "game.z8" in files)
        self.num_games = len(self.game_files)

    def init_env(self, batch_size):
        infos = textworld.EnvInfos(won=True, admissible_commands=True)
        steps = self.config["dagger"]["training"]["max_nb_steps_per_episode"]
        env_id = textworld.gym.register_games(self.game_files, infos, batch_size=batch_size,
                                              asynchronous=False, max_episode_steps=steps)
        return textworld.gym.make(env_id)

def get_environment(env_type):
    assert env_type == "AlfredTWEnv"
    return AlfredTWEnv
'''


def test_alfworld_episodes_through_its_batch_environment(make_config, games, tmp_path,
                                                         monkeypatch):
    import shutil
    import sys

    from cope.agent.games import game_metadata
    from cope.tasks.base import Problem

    package = tmp_path / "site" / "alfworld" / "agents" / "environment"
    package.mkdir(parents=True)
    for init in (package.parent.parent, package.parent):
        (init / "__init__.py").write_text("")
    (package / "__init__.py").write_text(ALFWORLD_STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m.startswith("alfworld")]:
        monkeypatch.delitem(sys.modules, name)
    data = tmp_path / "alfworld_data"
    trial = data / "json_2.1.1" / "valid_unseen" / "pick_and_place-1" / "trial_1"
    trial.mkdir(parents=True)
    for suffix in (".z8", ".json"):  # TextWorld lists admissible commands from the .json
        shutil.copy((games / "game-s1").with_suffix(suffix), (trial / "game").with_suffix(suffix))
    monkeypatch.setenv("ALFWORLD_DATA", str(data))

    walkthrough = game_metadata(games / "game-s1.z8")["walkthrough"]
    player = [Problem(id="g", question="", gold="won", meta={"walkthrough": walkthrough})]
    backend = ScriptedBackend(walkthrough_responder(player))
    result = run(make_config("task=alfworld", "backend.name=scripted", "pair=qwen-coder-cpu",
                             "task.agent.max_steps=5"), backends={"scripted": backend})
    (row,) = result.problems
    assert row["id"] == "valid_unseen/pick_and_place-1/trial_1"
    assert row["won"] and row["steps"] == len(walkthrough) and row["invalid_moves"] == 0
    assert [step["command"] for step in row["trajectory"]] == walkthrough
    assert result.metrics["success_rate"] == 1.0
