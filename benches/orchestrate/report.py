"""Helpers of benches/orchestrate/run (run with the salt lab's venv python: it has msgpack).

  report.py jobs CACHE_JOBS_DIR          every job in the master's job cache: "<jid> <fun> <targets>" lines
  report.py pushguide LOG_JSON JOBS CACHE_JOBS_DIR
                                         floors of one pushguide deployment (`pushguide log ID --json`;
                                         JOBS: a `jobs` listing made after it, naming each call's hosts;
                                         the cache holds the returns of its `pushguide.steps` jobs)
  report.py orchestrate OUT_JSON         floors of one `salt-run --out=json state.orchestrate` run
  report.py summary RESULTS_TSV          the table, medians, ratios and overheads

Floors (milliseconds) are printed as "<window floor> <staging floor> <detail>":
  window floor  = sum over batches of the slowest host's durations in the rolling window
                  (pushguide: stages pre-deploy, deploy, post-deploy; orchestrate: steps switch-N)
  staging floor = the slowest host's staging durations (pushguide: stage "staging"; orchestrate:
                  step "stage"), for information: both tools stage every host before the first batch.
"""

import glob
import json
import os
import statistics
import sys

WINDOW = ("pre-deploy", "deploy", "post-deploy")


def jobs(cache):
    import msgpack  # the salt venv's

    for load in glob.glob(os.path.join(cache, "*", "*", ".load.p")):
        try:
            with open(load, "rb") as f:
                d = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
        except (OSError, ValueError) as e:  # a job being written: count it, name unknown
            d = {"jid": os.path.basename(os.path.dirname(load)), "fun": f"?({e.__class__.__name__})"}
        tgt = d.get("tgt", "")
        tgt = ",".join(tgt) if isinstance(tgt, list) else str(tgt)
        print(d.get("jid"), d.get("fun"), tgt or "-")


def steps_ms(cache, jid):
    """Each minion's steps of a `pushguide.steps` job, summed: their durations as the pushguide module
    measured them on the minion (`ms`), read from the master's job cache."""
    import msgpack  # the salt venv's

    for jid_file in glob.glob(os.path.join(cache, "*", "*", "jid")):
        with open(jid_file) as f:
            if f.read().strip() != jid:
                continue
        out = {}
        for ret in glob.glob(os.path.join(os.path.dirname(jid_file), "*", "return.p")):
            with open(ret, "rb") as f:
                v = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
            if isinstance(v, dict) and "steps" not in v and isinstance(v.get("return"), dict):
                v = v["return"]
            steps = v.get("steps", []) if isinstance(v, dict) else []
            out[os.path.basename(os.path.dirname(ret))] = sum(float(s.get("ms") or 0) for s in steps)
        return out
    sys.exit(f"job {jid} is not in the job cache {cache}")


def pushguide(path, jobs_listing, cache):
    """Per call: `millis` is the call's wall time as pushguide measured it (request to the last host's
    return); its hosts are the targets of its jid in the master's job cache (pushguide targets
    minion lists). Calls of one batch that differ per host run concurrently, so a host's time in the
    window is the sum of the calls that went to it, and the batch's floor is its slowest host.
    The steps of a `pushguide.steps` job (one job per batch) are counted from the job's returns in
    the cache instead: each minion's step durations measured on the minion, as orchestrate's."""
    with open(path) as f:
        d = json.load(f)
    targets, funs = {}, {}
    with open(jobs_listing) as f:
        for line in f:
            jid, fun, tgt = line.split()
            targets[jid] = tgt.split(",")
            funs[jid] = fun
    per = {}  # (stage-kind, batch) -> host -> ms
    counted = set()
    for c in d["calls"]:
        kind = "window" if c["stage"] in WINDOW else ("staging" if c["stage"] == "staging" else None)
        if kind is None:
            continue
        jid = c.get("jid") or ""
        if funs.get(jid) == "pushguide.steps":
            if jid not in counted:
                counted.add(jid)
                key = (kind, c["batch"] if kind == "window" else 0)
                for h, ms in steps_ms(cache, jid).items():
                    per.setdefault(key, {}).setdefault(h, 0)
                    per[key][h] += ms
            continue
        hosts = targets.get(c.get("jid") or "")
        if not hosts:
            sys.exit(f"{path}: call {c['fun']} ({c['stage']}) has jid {c.get('jid')!r}, not in {jobs_listing}")
        for h in hosts:
            key = (kind, c["batch"] if kind == "window" else 0)
            per.setdefault(key, {}).setdefault(h, 0)
            per[key][h] += c["millis"]
    window = sum(max(v.values()) for (k, _), v in per.items() if k == "window")
    staging = sum(max(v.values()) for (k, _), v in per.items() if k == "staging")
    detail = ";".join(
        f"{k}{b}:" + ",".join(f"{h}={ms:.0f}" for h, ms in sorted(v.items()))
        for (k, b), v in sorted(per.items(), key=lambda kv: (kv[0][0] != "staging", str(kv[0][1])))
    )
    print(f"{window:.0f} {staging:.0f} {detail}")


def _find_steps(node):
    """The orchestrate return's step dicts: keys 'salt_|-<id>_|-<name>_|-state'."""
    if isinstance(node, dict):
        steps = {k: v for k, v in node.items() if isinstance(k, str) and k.startswith("salt_|-")}
        if steps:
            return steps
        for v in node.values():
            found = _find_steps(v)
            if found:
                return found
    return {}


def orchestrate(path):
    """Per step, per minion: the sum of the `duration` (ms, measured by the minion's state system) of
    every state the minion ran; a step's floor is its slowest minion. Fails unless every step and every
    state succeeded."""
    with open(path) as f:
        d = json.load(f)
    steps = _find_steps(d)
    if not steps:
        sys.exit(f"{path}: no orchestrate steps in the output")
    window = staging = 0.0
    parts = []
    for key, step in sorted(steps.items(), key=lambda kv: kv[1].get("__run_num__", 0)):
        sid = key.split("_|-")[1]
        if step.get("result") is not True:
            sys.exit(f"{path}: step {sid} failed: {step.get('comment')}")
        rets = (step.get("changes") or {}).get("ret") or {}
        if not rets:
            sys.exit(f"{path}: step {sid} returned no per-minion states")
        per = {}
        for minion, states in rets.items():
            if not isinstance(states, dict):
                sys.exit(f"{path}: step {sid}, {minion}: {states!r}")
            for skey, s in states.items():
                if s.get("result") is not True:
                    sys.exit(f"{path}: step {sid}, {minion}: {skey} failed: {s.get('comment')}")
                per[minion] = per.get(minion, 0.0) + float(s.get("duration", 0.0))
        slowest = max(per.values())
        if sid == "stage":
            staging += slowest
        elif sid.startswith("switch-"):
            window += slowest
        parts.append(f"{sid}:" + ",".join(f"{m}={ms:.0f}" for m, ms in sorted(per.items())))
    print(f"{window:.0f} {staging:.0f} {';'.join(parts)}")


def summary(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    print(f"{'tool':<12} {'batch':>5} {'run':>3} {'wall s':>8} {'salt jobs':>9} {'window floor s':>14} "
          f"{'overhead s':>10} {'staging s':>9}")
    for r in rows:
        wall, floor = int(r["wall_ms"]) / 1000, int(r["window_ms"]) / 1000
        print(f"{r['tool']:<12} {r['batch']:>5} {r['run']:>3} {wall:>8.2f} {r['jobs']:>9} {floor:>14.2f} "
              f"{wall - floor:>10.2f} {int(r['staging_ms']) / 1000:>9.2f}")
    print()
    print("medians (overhead = wall - window floor, per run, then the median):")
    batches = sorted({r["batch"] for r in rows}, key=int)
    for b in batches:
        med = {}
        for tool in ("pushguide", "orchestrate"):
            rs = [r for r in rows if r["batch"] == b and r["tool"] == tool]
            if not rs:
                continue
            wall = statistics.median(int(r["wall_ms"]) / 1000 for r in rs)
            floor = statistics.median(int(r["window_ms"]) / 1000 for r in rs)
            over = statistics.median((int(r["wall_ms"]) - int(r["window_ms"])) / 1000 for r in rs)
            jobs_ = sorted({r["jobs"] for r in rs}, key=int)
            med[tool] = wall
            print(f"  batch {b} {tool:<12} n={len(rs)} wall {wall:.2f} s, window floor {floor:.2f} s, "
                  f"overhead {over:.2f} s, salt jobs/deployment {'/'.join(jobs_)}")
        if "pushguide" in med and "orchestrate" in med:
            print(f"  batch {b} ratio pushguide/orchestrate (median wall): "
                  f"{med['pushguide'] / med['orchestrate']:.3f}")


if __name__ == "__main__":
    {"jobs": jobs, "pushguide": pushguide, "orchestrate": orchestrate, "summary": summary}[sys.argv[1]](*sys.argv[2:])
