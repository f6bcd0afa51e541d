"""How many actors of each labelling stage a run starts, from the cluster's live nodes (torch-free, Ray-free).

With GPUs: one GPU actor per GPU (``GPUScoreSelectPredict`` for the samplers, :mod:`~raycondi.pipeline.gpu`;
``TeacherPredict`` for the teacher-only strategies, or with ``student_gpus``), and CPU actors (``DecodeClips``, or
``ScoreAndSelect``) on the CPUs the GPU actors leave, counted per node -- the CPU-only nodes first, where Ray's
scheduler puts actors that ask for no GPU (it avoids GPU nodes for them while CPU nodes have room), then the GPU
nodes' spare CPUs. Without GPUs: one fused ``ScoreSelectPredict`` actor per ``cpus_per_actor`` CPUs. No pool is
larger than the number of videos to label.
Every number can be overridden through :class:`~raycondi.pipeline.config.LabelConfig`. The plan is logged
(logger ``raycondi.label``) and recorded in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from raycondi.pipeline.config import LabelConfig

__all__ = ["PoolPlan", "plan_pools"]


@dataclass(frozen=True)
class PoolPlan:
    """The actors a run uses, by ``stages``: ``fused``, ``student_actors`` ScoreSelectPredict actors; ``split``,
    ``student_actors`` ScoreAndSelect and ``teacher_actors`` TeacherPredict actors; ``gpu``, ``student_actors``
    DecodeClips and ``teacher_actors`` GPUScoreSelectPredict actors; with their GPUs each."""

    stages: str
    student_actors: int
    teacher_actors: int
    student_gpus: float
    teacher_gpus: float
    cpus_per_actor: float
    basis: str
    decoder: str = "pyav"

    def describe(self) -> str:
        def each(gpus: float) -> str:
            return f"{self.cpus_per_actor:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")

        if self.stages == "fused":
            pools = f"{self.student_actors} ScoreSelectPredict actor(s) x {each(0)} (stages fused)"
        else:
            first, second = ("DecodeClips", "GPUScoreSelectPredict") if self.stages == "gpu" else \
                ("ScoreAndSelect", "TeacherPredict")
            pools = (f"{self.student_actors} {first} actor(s) x {each(self.student_gpus)}, "
                     f"{self.teacher_actors} {second} actor(s) x {each(self.teacher_gpus)}")
        decoding = "; decoder nvdec" if self.decoder == "nvdec" else ""
        return f"{pools}{decoding}; {self.basis}"


def plan_pools(config: LabelConfig, nodes: list[dict[str, float]], videos: int) -> PoolPlan:
    """Size the actor pools from the live nodes' resources (``ray.nodes()[i]["Resources"]``; module docstring)."""
    nodes = [node for node in nodes if node.get("CPU", 0) or node.get("GPU", 0)]  # not a head that only schedules
    gpus = sum(node.get("GPU", 0) for node in nodes)
    cpu_nodes = [node.get("CPU", 0) for node in nodes if not node.get("GPU", 0)]
    gpu_nodes = [node.get("CPU", 0) for node in nodes if node.get("GPU", 0)]
    basis = (f"cluster: {len(cpu_nodes)} CPU node(s) with {sum(cpu_nodes):g} CPUs, "
             f"{len(gpu_nodes)} GPU node(s) with {gpus:g} GPUs and {sum(gpu_nodes):g} CPUs; {videos} video(s)")
    per_actor = config.cpus_per_actor
    stages = config.stages
    if stages == "auto":
        if not (gpus if config.teacher_gpus is None else config.teacher_gpus) and not config.student_gpus:
            stages = "fused"
        else:
            stages = "gpu" if config.uses_student and not config.student_gpus else "split"
    nvdec = stages == "gpu" and gpus > 0 and config.decoder in ("nvdec", "auto")
    # NVDEC decode actors share the GPU with the GPU actor: half of it each by default
    teacher_gpus = config.teacher_gpus if config.teacher_gpus is not None else (0.5 if nvdec else 1.0) * bool(gpus)
    if stages == "fused":
        actors = config.student_actors or int(sum(cpu_nodes + gpu_nodes) // per_actor)
        return PoolPlan("fused", max(1, min(actors, videos)), 0, 0.0, 0.0, per_actor, basis)
    per_gpu = int(gpus) if nvdec else int(gpus // teacher_gpus) if teacher_gpus else 1  # nvdec: 1 per GPU
    teachers = config.teacher_actors or per_gpu
    teachers = max(1, min(teachers, videos))
    if nvdec:  # decode actors on the GPU nodes' spare CPUs, each with an equal share of the GPUs left
        students = config.student_actors or int(max(1.0, sum(gpu_nodes) - teachers * per_actor) // per_actor)
        share = int(max(0.0, gpus - teachers * teacher_gpus) / max(1, students) * 1e4) / 1e4
        return PoolPlan(stages, max(1, min(students, videos)), teachers, share, teacher_gpus, per_actor, basis,
                        "nvdec" if share else "pyav")
    if config.student_actors:
        students = config.student_actors
    elif config.student_gpus:
        students = int(max(0.0, gpus - teachers * teacher_gpus) // config.student_gpus)
    else:  # CPU-only nodes whole; on GPU nodes what the teachers leave (a CPU-only cluster: the teachers' CPUs)
        spare = sum(cpu_nodes) + sum(gpu_nodes) - teachers * per_actor
        students = int(max(0.0, spare) // per_actor)
    return PoolPlan(stages, max(1, min(students, videos)), teachers, config.student_gpus, teacher_gpus, per_actor,
                    basis)
