"""Peak resident memory of one model while it generates, measured in a process of its own.

`python -m compress.llm.peak_memory FOLDER [--file model.onnx] --prompt 1,2,3 --new-tokens 64`
loads the model (PyTorch for a folder, ONNX Runtime for `--file`), generates,
and prints JSON: the process's peak resident set (`VmHWM`) and the
resident set before loading, in MB. An ONNX model's process never imports
torch, so its figure is what a deployment without PyTorch holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (kB there), in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compress.llm.peak_memory")
    parser.add_argument("folder")
    parser.add_argument("--file")
    parser.add_argument("--prompt", required=True, help="comma-separated token ids")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", default="onnxruntime", help="or onnxruntime-genai")
    args = parser.parse_args(argv)
    before = _status_mb("VmRSS")
    from compress.llm.genai import open_lm

    lm = open_lm(Path(args.folder), args.file, args.threads, args.runtime)
    lm.generate([int(t) for t in args.prompt.split(",")], args.new_tokens)
    # VmHWM: this program's own high-water mark (ru_maxrss would carry the parent's across exec)
    peak = _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"peak_rss_mb": peak, "start_rss_mb": before}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
