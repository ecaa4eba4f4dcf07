"""GPU latency of the flagship's model shapes in PyTorch CUDA (eager FP32, eager FP16).

    python bench/cuda_latency.py [--json OUT.json]

Times the shapes, not the weights: MiniLM-L6 (the original), the 3-layer
student, and the student with a third of its heads and half its FFN pruned,
built from their configs (latency does not depend on the weight values), at
batch 1, 8 and 32 with 64 tokens. CUDA events around each call after warm-up;
p50 of the timed calls. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any


def build(layers: int, pruned: bool) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=layers,
        num_attention_heads=12,
        intermediate_size=768 if pruned else 1536,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    if pruned:  # 12 of 36 heads, spread like the measured Taylor plan (3, 3, 6)
        model.prune_heads({0: [8, 10, 11], 1: [4, 9, 11], 2: [0, 1, 2, 7, 9, 11]})
    return model.eval()


def p50_ms(model: Any, batch: int, seq: int, reps: int, warmup: int) -> float:
    import torch

    ids = torch.randint(1000, 20000, (batch, seq), device="cuda")
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(input_ids=ids, attention_mask=mask)
            end.record()
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 2
    models = {
        "MiniLM-L6 (original)": build(6, False),
        "3-layer student": build(3, False),
        "3-layer student, pruned": build(3, True),
    }
    rows = []
    for name, model in models.items():
        for dtype in (torch.float32, torch.float16):
            m = model.to("cuda", dtype)
            for batch in (1, 8, 32):
                ms = p50_ms(m, batch, 64, args.reps, 50)
                rows.append({"model": name, "dtype": str(dtype)[6:], "batch": batch, "p50_ms": ms})
                print(f"{name:26} {str(dtype)[6:]:8} b{batch:<3} p50 {ms:7.3f} ms", flush=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
