"""The texts a bundle carries: its README and the `trtexec` script that builds its engine."""

from __future__ import annotations

from typing import Any

from compress.deploy.devices import Device


def trtexec_shapes(manifest: dict[str, Any]) -> dict[str, str]:
    """`--minShapes`/`--optShapes`/`--maxShapes` values from the inputs and engine ranges."""
    engine = manifest["engine"]
    shapes = {}
    for which, flag in enumerate(("minShapes", "optShapes", "maxShapes")):
        parts = []
        for name, dims in manifest["model"]["input_shapes"].items():
            ranges = iter((engine["batch"], engine["sequence"]))
            sizes = [str(d) if isinstance(d, int) else str(next(ranges)[which]) for d in dims]
            parts.append(f"{name}:{'x'.join(sizes)}")
        shapes[flag] = ",".join(parts)
    return shapes


def trtexec_script(manifest: dict[str, Any]) -> str:
    """The `trtexec` command that builds the same engine as build_engine.py.

    A bad argument, a missing ONNX file or no trtexec is answered with one line on
    stderr that says what to do, and exit code 2; a failed build with trtexec's status.
    """
    engine = manifest["engine"]
    model = manifest["model"]["file"]
    flags = {"int8": " --int8", "fp16": " --fp16", "fp32": ""}[engine["precision"]]
    shapes = " ".join(f"--{k}={v}" for k, v in trtexec_shapes(manifest).items())
    return (
        "#!/bin/sh\n"
        "# The same engine as build_engine.py, with NVIDIA's trtexec (JetPack:\n"
        "# /usr/src/tensorrt/bin/trtexec). --int8 on Q/DQ: its own scales, no calibrator.\n"
        "# Further trtexec --flags pass on (./build_engine.sh --verbose); TRTEXEC picks one.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'for arg in "$@"; do\n'
        '  case "$arg" in\n'
        "    --*) ;;\n"
        "    *) echo \"error: unexpected argument '$arg': build_engine.sh passes only trtexec "
        '--flags on (e.g. --verbose)" >&2; exit 2 ;;\n'
        "  esac\n"
        "done\n"
        f"if [ ! -f {model} ]; then\n"
        f'  echo "error: $(pwd)/{model}: no such file; unpack the whole bundle and run it '
        'there" >&2\n'
        "  exit 2\n"
        "fi\n"
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        'if [ ! -x "$TRTEXEC" ]; then\n'
        '  echo "error: no trtexec at $TRTEXEC: install TensorRT (JetPack has '
        "/usr/src/tensorrt/bin/trtexec), set TRTEXEC=/path/to/trtexec, or run python3 "
        'build_engine.py" >&2\n'
        "  exit 2\n"
        "fi\n"
        f'if "$TRTEXEC" --onnx={model} --saveEngine=model.engine{flags} \\\n'
        f"  {shapes} \\\n"
        f'  --memPoolSize=workspace:{engine["workspace_mb"]} "$@"; then\n'
        '  echo "model.engine: built with $TRTEXEC"\n'
        "else\n"
        "  status=$?\n"
        '  echo "error: trtexec failed (exit $status): its messages above say why; python3 '
        'build_engine.py builds the same engine" >&2\n'
        '  exit "$status"\n'
        "fi\n"
    )


def device_readme(manifest: dict[str, Any], device: Device) -> str:
    """The README.md of a bundle: what is in it and how to run it on the device."""
    model = manifest["model"]
    expected = manifest["expected"]
    accuracy = expected.get("accuracy")
    measured = (
        f"{accuracy:.2%} on {expected['measured_on']} (the source run's report)"
        if isinstance(accuracy, float)
        else f"not known ({expected.get('why')})"
    )
    example = (
        "python3 infer.py image1.png image2.jpg"
        if "pixel_values" in model["inputs"]
        else 'python3 infer.py "a gripping, funny film" "two dull hours"'
    )
    lines = [
        f"# {manifest['source_run']['recipe']} for {device.name}",
        "",
        f"Target: {device.device}; compute capability {device.compute_capability or '-'}; "
        f"TensorRT: {device.tensorrt}.",
        "",
        f"- `{model['file']}`: {model['variant']} ({model['precision']}, for {model['for']}) "
        f"from `{model['source']}` of the source run; inputs {', '.join(model['inputs'])}",
        f"- labels: {', '.join(manifest['labels'])}",
        f"- expected accuracy: {measured}",
        "- `manifest.json`: sha256 of every file, source run, package versions",
        "",
        "## Run it",
        "",
        "```bash",
        "pip install -r requirements.txt",
        f"{example}        # ONNX Runtime; prints label, probability, input",
        "```",
    ]
    if device.has_gpu:
        engine = manifest["engine"]
        lines += [
            "",
            "## Build the TensorRT engine here (on the device)",
            "",
            "Engines run only on the GPU architecture and TensorRT version that built",
            "them, so they are built on the device, not shipped.",
            "",
            "```bash",
            f"python3 build_engine.py      # {engine['precision']}, batch "
            f"{engine['batch']}, sequence {engine['sequence']}, "
            f"workspace {engine['workspace_mb']} MB",
            "./build_engine.sh             # the same with trtexec",
            f"{example.replace('infer.py', 'infer.py --runtime tensorrt')}",
            "```",
            "",
            "`build_engine.py` needs only Python and TensorRT's Python bindings (JetPack",
            "ships them): `trt_core.py` beside it is a verbatim copy of the builder",
            "compress uses (same sha256 as in compress), so no compress install is needed.",
            "`infer.py --runtime tensorrt` runs the engine with `trt_exec.py`, a copy of",
            "the runner `compress bench` measures engines with; it also needs PyTorch with",
            "CUDA for the GPU buffers.",
        ]
    checked = manifest.get("checked_by")
    if checked:
        lines += [
            "",
            f"The source run built an engine from this same file with {checked['backend_name']} "
            f"{checked['backend_version']} ({checked['network_layers']} layers): NVIDIA's ONNX "
            "parser accepted every node.",
        ]
    lines += [
        "",
        "Check the files: `python3 -c \"import hashlib,json;m=json.load(open('manifest.json'));"
        "print(all(hashlib.sha256(open(f,'rb').read()).hexdigest()==h "
        "for f,h in m['files'].items()))\"`",
        "",
    ]
    return "\n".join(lines)
