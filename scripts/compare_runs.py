#!/usr/bin/env python3
"""Compares two folders of runs made by scripts/bit_identity.sh: every model.ot and best.ot tensor
byte for byte (the archive's folder name aside), config.json without times, versions and paths, and
metrics.jsonl without timings. Usage: scripts/compare_runs.py BEFORE AFTER."""
import sys, zipfile, json, os
a, b = sys.argv[1], sys.argv[2]
def tensors(p):
    z = zipfile.ZipFile(p)
    return sorted((n.split('/',1)[1], z.read(n)) for n in z.namelist())
IGN = {"started_at","finished_at","mnist_cnn_version","final_metrics","parent"}
bad = 0
for run in sorted(os.listdir(a)):
    pa = os.path.join(a, run)
    if not os.path.isdir(pa): continue
    for f in ["model.ot", "best.ot"]:
        fa, fb = os.path.join(pa, f), os.path.join(b, run, f)
        if os.path.exists(fa):
            same = tensors(fa) == tensors(fb)
            print(run, f, "identical" if same else "DIFFERENT"); bad += not same
    ca = json.load(open(os.path.join(pa, "config.json"))); cb = json.load(open(os.path.join(b, run, "config.json")))
    for k in IGN: ca.pop(k, None); cb.pop(k, None)
    for c in (ca, cb): c.get("data", {}).pop("source", None)  # where MNIST was, not what ran
    if ca != cb:
        print(run, "config differs:", {k:(ca.get(k),cb.get(k)) for k in set(ca)|set(cb) if ca.get(k)!=cb.get(k)}); bad += 1
    ma = [json.loads(l) for l in open(os.path.join(pa,"metrics.jsonl"))]; mb = [json.loads(l) for l in open(os.path.join(b,run,"metrics.jsonl"))]
    strip = lambda ms: [{k:v for k,v in m.items() if k not in ("seconds","images_per_second","epoch_seconds","wall_seconds","time")} for m in ms]
    if strip(ma) != strip(mb): print(run, "metrics differ"); bad += 1
print("differences:", bad)
