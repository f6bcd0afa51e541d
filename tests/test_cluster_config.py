"""The cluster and job configurations parse, agree with pyproject.toml, and point at entry points that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "jobs"
KUBERAY = REPO / "cluster" / "kuberay"
IMAGE_ROOT = "/home/ray/raycondi"  # where cluster/Dockerfile and cluster/aws.yaml put the checkout

CONFIG_FILES = sorted([*JOBS.glob("*.yaml"), *(REPO / "cluster").rglob("*.yaml"), REPO / "cluster" / "Dockerfile"])
RAYJOBS = sorted(KUBERAY.glob("rayjob-*.yaml"))
RUNTIME_ENVS = sorted(JOBS.glob("*.runtime_env.yaml"))


def _pins() -> tuple[str, str]:
    """(Ray version, project version) from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (ray,) = [re.fullmatch(r"ray\[[^\]]*\]==(\S+)", d).group(1) for d in project["dependencies"] if d.startswith("ray[")]
    return ray, project["version"]


def _ray_versions(text: str) -> set[str]:
    """Every Ray version a file names: image tags, ``rayVersion``, ``ray[...]==`` pins."""
    return set(re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", text)
               + re.findall(r"rayVersion:\s*['\"]?(\d+\.\d+\.\d+)", text)
               + re.findall(r"\bray\[[^\]]*\]==(\d+\.\d+\.\d+)", text))


def _project_versions(text: str) -> set[str]:
    """Every raycondi version a file names: image tags, version labels, ``== 'X'`` checks after version('raycondi')."""
    return set(re.findall(r"/raycondi:(\d+\.\d+\.\d+)", text)
               + re.findall(r"version[\"']?[:=]\s*[\"'](\d+\.\d+\.\d+)[\"']", text)
               + re.findall(r"v == '(\d+\.\d+\.\d+)'", text))


def test_the_pins_are_read_from_pyproject():
    ray, project = _pins()
    assert re.fullmatch(r"\d+\.\d+\.\d+", ray) and re.fullmatch(r"\d+\.\d+\.\d+", project)
    assert _ray_versions("image: rayproject/ray:2.1.0-py311-gpu\nrayVersion: '2.2.0'\nray[default]==2.3.0") == {
        "2.1.0", "2.2.0", "2.3.0"}
    assert _project_versions('image: r.io/raycondi:0.9.1\nversion="0.9.2"\nassert v == \'0.9.3\'') == {
        "0.9.1", "0.9.2", "0.9.3"}


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if p.suffix == ".yaml"], ids=lambda p: p.name)
def test_every_yaml_file_parses(path):
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents and all(isinstance(d, dict) for d in documents)


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if p.parent != JOBS], ids=lambda p: p.name)
def test_cluster_files_name_the_pinned_ray_and_project_versions(path):
    ray, project = _pins()
    text = path.read_text()
    assert _ray_versions(text) == {ray}, f"{path}: Ray versions {_ray_versions(text)}, pyproject pins {ray}"
    assert _project_versions(text) == {project}, f"{path}: {_project_versions(text)}, pyproject has {project}"


def test_every_job_has_an_entry_point_and_a_runtime_env():
    scripts = {p.stem for p in JOBS.glob("*.py")}
    envs = {p.name.removesuffix(".runtime_env.yaml") for p in RUNTIME_ENVS}
    assert scripts == envs
    assert {"label", "train_teacher", "distill", "tune"} <= scripts


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_ships_the_package_and_its_entry_point(path):
    env = yaml.safe_load(path.read_text())
    working_dir = (REPO / env["working_dir"]).resolve()
    assert working_dir == REPO, "run `ray job submit` from the repository root"
    script = JOBS / path.name.replace(".runtime_env.yaml", ".py")
    assert script.is_file() and (working_dir / "raycondi" / "cli.py").is_file()
    assert not {"jobs/", "raycondi/"} & set(env.get("excludes", []))
    assert all(isinstance(v, str) for v in env.get("env_vars", {}).values())  # Ray rejects non-string values
    assert not {k for k in env.get("env_vars", {}) if re.search("SECRET|PASSWORD|TOKEN|ACCESS_KEY", k)}


def _job_command(script: Path) -> str:
    """The ``raycondi`` subcommand a jobs/ script runs."""
    return re.search(r'main\(\["([\w-]+)"', script.read_text()).group(1)


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.py")), ids=lambda p: p.name)
def test_entry_point_runs_an_existing_subcommand(path):
    from raycondi.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert _job_command(path) in commands


@pytest.mark.parametrize("path", RAYJOBS, ids=lambda p: p.name)
def test_rayjob_runs_a_jobs_script_with_options_it_accepts(path):
    from raycondi.cli import build_parser

    job = yaml.safe_load(path.read_text())
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[0] == "python" and re.fullmatch(r"jobs/\w+\.py", entrypoint[1])
    script = REPO / entrypoint[1]
    assert script.is_file()
    build_parser().parse_args([_job_command(script), *entrypoint[2:]])  # exits on an unknown option
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == f"local://{IMAGE_ROOT}"
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["authOptions"]["mode"] == "token"


@pytest.mark.parametrize("path", [*RAYJOBS, KUBERAY / "raycluster.yaml"], ids=lambda p: p.name)
def test_gpu_groups_request_gpus_and_tolerate_the_gpu_taint(path):
    spec = yaml.safe_load(path.read_text())["spec"]
    groups = spec.get("rayClusterSpec", spec)["workerGroupSpecs"]
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        tolerates = any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        assert (group["groupName"].startswith("gpu"), tolerates) == (gpus is not None, gpus is not None), group


def test_image_and_launcher_install_the_checkout_where_the_jobs_expect_it():
    dockerfile = (REPO / "cluster" / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile
    launcher = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    assert launcher["file_mounts"][IMAGE_ROOT] == "."
    assert launcher["available_node_types"][launcher["head_node_type"]]["resources"] == {"CPU": 0}
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--num-cpus=0" in head and "RAY_AUTH_MODE=token" in head
    assert "RAY_AUTH_MODE=token" in " ".join(launcher["worker_start_ray_commands"])
    assert {"cpu_worker", "gpu_worker"} <= set(launcher["available_node_types"])
