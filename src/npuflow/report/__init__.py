"""The fixed-point report (``model_fx_report``): one owner for its data, schema, text and HTML.

``evaluate()`` fills the placement/cost part; ``analysis()`` adds the ``quantization`` section
(``npuflow.report.precision``: per-node formats, ranges, cumulative and isolated SNR, the ranked
nodes that cost the most precision with measured suggestions) under the same versioned schema.
Files written into ``output_dir``: ``model_fx_report.json`` (the data), ``model_fx_report.html``
(self-contained, readable in a text browser) and ``model_fx_report.csv`` (the node table). They
are written atomically and replaced on each run: these three names in ``output_dir`` belong to
npuflow. How to read the report: docs/report.md.
"""
from npuflow.report.document import (
    REPORT_SCHEMA,
    REPORT_SCHEMA_VERSION,
    build_analysis_report,
    build_evaluation_report,
    summary_text,
    validate_report,
    write_report,
)

__all__ = [
    "REPORT_SCHEMA",
    "REPORT_SCHEMA_VERSION",
    "build_analysis_report",
    "build_evaluation_report",
    "summary_text",
    "validate_report",
    "write_report",
]
