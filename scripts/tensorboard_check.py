#!/usr/bin/env python3
"""Reads a run folder's TensorBoard log with TensorBoard's own reader (EventAccumulator) and
prints what it found as JSON, for the tests and for a look by hand:

    python3 scripts/tensorboard_check.py dump RUN_DIR

{"files": [...], "scalars": {tag: [[step, value], ...]}, "images": {tag: [[step, width, height,
png_bytes], ...]}, "hparams": {name: value}, "metrics": [tag, ...], "status": "STATUS_SUCCESS"}
"""
import argparse
import glob
import json
import os
import sys


def dump(run_dir):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2, api_pb2

    # 0: keep every event (the defaults sample 1,000 scalars and 4 images per tag).
    guidance = {
        event_accumulator.SCALARS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.TENSORS: 0,
    }
    accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance=guidance)
    accumulator.Reload()
    tags = accumulator.Tags()
    out = {
        "files": sorted(os.path.basename(f) for f in glob.glob(os.path.join(run_dir, "*tfevents*"))),
        "scalars": {
            tag: [[e.step, e.value] for e in accumulator.Scalars(tag)] for tag in tags["scalars"]
        },
        "images": {
            tag: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in accumulator.Images(tag)]
            for tag in tags["images"]
        },
        "hparams": {},
        "metrics": [],
        "status": None,
    }
    for tag, content in accumulator.PluginTagToContent("hparams").items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        which = data.WhichOneof("data")
        if which == "session_start_info":
            for name, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                out["hparams"][name] = getattr(value, kind)
        elif which == "experiment":
            out["metrics"] = [m.name.tag for m in data.experiment.metric_infos]
        elif which == "session_end_info":
            out["status"] = api_pb2.Status.Name(data.session_end_info.status)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="print a run folder's TensorBoard log as JSON")
    d.add_argument("run_dir")
    args = parser.parse_args()
    json.dump(dump(args.run_dir), sys.stdout)
    print()


if __name__ == "__main__":
    main()
