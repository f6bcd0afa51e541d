"""The labelling job's output: one Parquet row per input video, every column defined here once.

:data:`OUTPUT_COLUMNS` lists each column's name, Arrow type and meaning; :data:`OUTPUT_SCHEMA` is the
Arrow schema written to every output file, and :func:`columns_markdown` renders the README's table from
the same list, so the documentation cannot drift from the files. :func:`output_files` says which files under an
output folder hold those rows (the labelling job's resume check and ``raycondi report`` read the same ones).

The ``selected_*`` columns are parallel lists describing the clips that decided the label: first the
K_s clips the student labelled alone (lowest student entropy first), then the K_t clips the teacher
labelled (highest score first for the samplers -- z̃ for ``condi_sr`` --, temporal order for ``dense``,
``equidistant`` and ``random``).
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.dataset as pads

from raycondi.video.storage import StorageError, StorageOptions, list_files, resolve

__all__ = ["OUTPUT_COLUMNS", "OUTPUT_SCHEMA", "STATUS_OK", "STATUS_ERROR", "columns_markdown", "output_dataset",
           "output_files"]

STATUS_OK = "ok"
STATUS_ERROR = "error"

# (name, type, meaning). On error rows the prediction and clip columns are null; video_id, uri, status, error,
# strategy, k, k_student, teacher_clips (0), the model columns, decode_s and run_id are filled.
OUTPUT_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("video_id", pa.string(), "the video's id: from the manifest, or its path under the input prefix without "
                              "extension; the resume key (never two rows with one id)"),
    ("uri", pa.string(), "where the video was read from"),
    ("status", pa.string(), '"ok", or "error" when the video could not be read or decoded'),
    ("error", pa.string(), "why the video failed (null when ok)"),
    ("label", pa.string(), "predicted class name (the checkpoint's class_names; the index as text when it has none)"),
    ("label_index", pa.int32(), "predicted class index: argmax of the video probabilities"),
    ("score", pa.float64(), "video probability of the predicted class (mean of the selected clips' softmax "
                            "vectors, selection.aggregate)"),
    ("top5_labels", pa.list_(pa.string()), "the five most probable classes (fewer when there are fewer classes), "
                                           "most probable first"),
    ("top5_scores", pa.list_(pa.float64()), "their video probabilities"),
    ("num_clips", pa.int32(), "N: clips the video was cut into (clip_len frames each, last one looped)"),
    ("duration_s", pa.float64(), "decoded video duration in seconds"),
    ("strategy", pa.string(), "clip selection (raycondi.strategies): condi_sr (Fig. 2b/2c), the other samplers "
                              "(bce_conf, st_conf, st_ent, max_prob), or dense, equidistant, random (teacher alone)"),
    ("k", pa.int32(), "K: clips used per video (all N for dense)"),
    ("k_student", pa.int32(), "K_s: of them, clips labelled by the student alone (Fig. 2c)"),
    ("selected_clips", pa.list_(pa.int32()), "indices of the clips that decided the label (student's first, then "
                                             "the teacher's)"),
    ("selected_start_s", pa.list_(pa.float64()), "start of each selected clip, seconds"),
    ("selected_end_s", pa.list_(pa.float64()), "end of each selected clip, seconds"),
    ("selected_confidence", pa.list_(pa.float32()), "student confidence z~ of each selected clip (null for the "
                                                    "strategies that do not run the student)"),
    ("selected_by", pa.list_(pa.string()), '"student" or "teacher": who labelled each selected clip'),
    ("teacher_clips", pa.int32(), "clips the teacher actually ran on for this video, counted in TeacherPredict: "
                                  "K_t = K - K_s, fewer when the video has fewer clips; 0 on error rows"),
    ("clip_confidence", pa.list_(pa.float32()), "z~ of every clip the student scored, in temporal order (the "
                                                "strategies that run the student; empty otherwise)"),
    ("candidate_clips", pa.list_(pa.int32()), "with keyframe candidates: the indices of the clips the student "
                                              "scored (clip_confidence's clips); null when it scored every clip"),
    ("student_model", pa.string(), "student checkpoint URI (the strategies that run the student; null otherwise)"),
    ("student_architecture", pa.string(), "student architecture name from its config.json"),
    ("teacher_model", pa.string(), "teacher checkpoint URI"),
    ("teacher_architecture", pa.string(), "teacher architecture name from its config.json"),
    ("decode_s", pa.float64(), "seconds spent decoding the video (also filled on error rows)"),
    ("frames_decoded", pa.int64(), "every frame the decoder produced for the video, all passes included (the "
                                   "reference frames a seek decodes to reach a clip too; also on error rows)"),
    ("bytes_read", pa.int64(), "bytes fetched from storage for the video (also on error rows)"),
    ("decode_mode", pa.string(), "how the video was decoded: full (every frame), seek (only the chosen clips, "
                                 "equidistant and random) or keyframes (only the keyframe candidates, see "
                                 "candidate_clips)"),
    ("decode_fallback", pa.string(), "why a seek or keyframes plan decoded the video in full instead (a variable "
                                     "frame rate, an unusable index); null when the plan ran"),
    ("decoder", pa.string(), "what decoded the video's pixels: pyav (FFmpeg on the CPU) or nvdec (the GPU's video "
                             "decoder: the GPU layout's full decodes with --decoder nvdec); null on error rows"),
    ("student_s", pa.float64(), "seconds spent running the student on its clips"),
    ("teacher_s", pa.float64(), "this video's share of the teacher's batch time (by clip count)"),
    ("run_id", pa.string(), "id of the run that wrote the row (also in the output file names)"),
)

OUTPUT_SCHEMA = pa.schema([pa.field(name, kind) for name, kind, _ in OUTPUT_COLUMNS])


def columns_markdown() -> str:
    """The output columns as a Markdown table (name, Arrow type, meaning), for the README."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {str(kind).replace('item: ', '')} | {meaning} |" for name, kind, meaning in OUTPUT_COLUMNS]
    return "\n".join(lines)


def output_files(output: str, storage: StorageOptions | None) -> list[str]:
    """Published Parquet files under ``output`` (names starting with ``.`` or ``_`` are not data)."""
    try:
        files = list_files(output, (".parquet",), storage)
    except StorageError:  # no output yet
        return []
    return [f for f in files if not posixpath.basename(f).startswith((".", "_"))]


def output_dataset(files: list[str], storage: StorageOptions | None) -> pads.Dataset:
    """Labelling output files (:func:`output_files`, all under one output) as one dataset with :data:`OUTPUT_SCHEMA`
    (a column an older file lacks reads as nulls)."""
    filesystem, _ = resolve(files[0], storage)
    return pads.dataset([resolve(f, storage)[1] for f in files], schema=OUTPUT_SCHEMA, filesystem=filesystem,
                        format="parquet")
