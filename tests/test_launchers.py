"""Multirun launchers beyond joblib: SLURM through submitit, and a Ray cluster."""

import json

from test_cli import SCRIPTED, cope


def hydra_launcher(*overrides):
    """The resolved hydra.launcher node of a composed config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    cfg.hydra.sweep.dir = "sweep"  # normally set when the multirun starts
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_composes_against_submitits_schema(monkeypatch):
    monkeypatch.setenv("COPE_SLURM_PARTITION", "gpu-a100")
    launcher = hydra_launcher("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=2")
    # submitit's launcher, with cope's checks before it submits (cope/launch_checks.py)
    assert launcher["_target_"] == "hydra_plugins.cope_launchers.slurm.CheckedSlurmLauncher"
    assert launcher["partition"] == "gpu-a100" and launcher["gpus_per_node"] == 2
    assert launcher["account"] is None and launcher["submitit_folder"].startswith("sweep/")


def test_a_misspelt_slurm_field_is_refused(tmp_path):
    out = cope("--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.gpus_per_nod=2",
               tmp_path=tmp_path)
    assert out.returncode != 0 and "gpus_per_nod" in out.stderr


def test_ray_launcher_config_has_the_plugins_fields(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    launcher = hydra_launcher("hydra/launcher=ray_cluster")
    # hydra-ray-launcher 1.2.2: RayLauncherConf(ray: RayConf(init: dict, remote: dict))
    # hydra-ray-launcher's, with cope's checks and retries (hydra_plugins/cope_launchers)
    assert launcher["_target_"] == "hydra_plugins.cope_launchers.ray_cluster.CheckedRayLauncher"
    assert set(launcher) == {"_target_", "ray"} and set(launcher["ray"]) == {"init", "remote"}
    assert launcher["ray"]["init"]["address"] == "ray://head:10001"


def test_submitit_runs_a_sweep_as_separate_jobs(tmp_path):
    """submitit's local executor runs each cell as its own job, as SLURM would."""
    cache = tmp_path / "shared.sqlite"
    out = cope("-m", *SCRIPTED, "method.votes=2,4", "hydra/launcher=submitit_local",
               "hydra.launcher.timeout_min=10", f"cache.path={cache}", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "multirun").rglob("metrics.json")]
    assert sorted(m["seed"] for m in metrics) == [0, 0] and len(metrics) == 2
    assert all(m["finished"] and m["n_problems"] == 2 for m in metrics)
    assert list((tmp_path / "runs" / "multirun").rglob(".submitit"))  # submitit's job folders


def test_a_cluster_sweep_without_a_shared_cache_is_refused_before_submitting(tmp_path):
    out = cope("-m", *SCRIPTED, "method.votes=2,4", "hydra/launcher=slurm",
               f"cache.path={tmp_path / 'one.sqlite'}", tmp_path=tmp_path)
    assert out.returncode == 2
    assert "cache.shared_dir is not set" in out.stderr and "cache.path=/tmp/cope-" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "one.sqlite").exists()
