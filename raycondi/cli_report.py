"""``raycondi report``: a labelling output as a page to open in a browser (:mod:`raycondi.audit`). No Ray."""

from __future__ import annotations

import argparse
import sys

from raycondi.cli_options import add_storage_options, storage_options


def _report(args: argparse.Namespace) -> int:
    from raycondi.audit import ReportConfig, ReportError, write_report
    from raycondi.video.storage import StorageError

    try:
        config = ReportConfig(labels=args.labels, out=args.out, videos=args.videos, sample=args.sample,
                              storage=storage_options(args))
        summary = write_report(config)
    except (ReportError, StorageError) as error:
        print(f"raycondi report: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.html} ({summary.rows:,} rows, {len(summary.videos)} video(s) shown, "
          f"{len(summary.pngs)} PNG charts beside it)")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add ``report`` to ``raycondi``'s subcommands."""
    report = commands.add_parser(
        "report", help="an HTML page (charts, error reasons, the least sure videos' clips) of a labelling output")
    report.add_argument("labels", metavar="LABELS_URI", help="the labelling output folder (`label --output`)")
    report.add_argument("--videos", type=int, default=8,
                        help="ok videos shown clip by clip, with frames of their selected clips (default 8)")
    report.add_argument("--sample", default="lowest",  # checked by ReportConfig: building the parser imports nothing
                        help="which videos: the lowest-scored (lowest, default) or the highest-scored (highest)")
    report.add_argument("--out", default=None,
                        help="folder for index.html and the PNG charts (default LABELS_URI/_report: readers of the "
                             "Parquet files, and a resumed `label` run, skip folders whose names start with _)")
    add_storage_options(report)
    report.set_defaults(run=_report)
