r"""The supernet benchmark table: medians of repeated runs, ours beside the port's.

Reads ``tools/benchmark.py search`` records (ours) and records of the PyTorch port's
timing (``bench/port_search_step.py``, run alternately with ours in one session, SPEC
§6), groups them by configuration and prints one Markdown row per configuration of
ours: the number of runs, the medians of the weight step, the architecture step, the
first calls and the peak resident memory, and the port's medians at the same crop, F
and L with the ratios ours / port::

    python bench/search_table.py RECORD.json ... [--record=bench/search_table.json]

A record is ours when it has ``"benchmark": "search"``, the port's when it has
``"impl"``; anything else is an error naming the file. Runs of one configuration
are all the records with the same crop, batch, F, L and levers (``remat``,
``partial_channels``, ``atrous_op``, ``loop_layers``, ``fused_sgd``; records from before
``fused_sgd`` existed used Keras' SGD); their medians are taken per field, so the row's
figures may come from different runs.
"""

import argparse
import glob
import json
import statistics
import sys

OURS_LEVERS = ("remat", "partial_channels", "atrous_op", "loop_layers", "fused_sgd")
#: A lever's value in records written before it existed.
LEVER_DEFAULTS = {"fused_sgd": False}


def _ours_key(record):
    return (tuple(record["crop_size"]), record["batch_size"], record["filter_multiplier"],
            record["num_layers"]) + tuple(record.get(k, LEVER_DEFAULTS.get(k))
                                          for k in OURS_LEVERS)


def _port_key(record):
    config = record["config"]
    return ((config["crop"], config["crop"]), config["batch"],
            config["filter_multiplier"], config["num_layers"])


def _port_rss(record):
    return record.get("peak_rss_time_v_gib", record.get("peak_rss_getrusage_gib"))


def load(paths):
    """``(ours, port)``: dicts from configuration key to the list of its records."""
    ours, port = {}, {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable JSON record ({error})") from None
        if record.get("benchmark") == "search":
            ours.setdefault(_ours_key(record), []).append(record)
        elif "impl" in record:
            port.setdefault(_port_key(record), []).append(record)
        else:
            raise ValueError(f"{path}: neither a search benchmark record nor a port record")
    return ours, port


def _median(records, field):
    values = [field(r) if callable(field) else r[field] for r in records]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(ours, port):
    """One row per configuration of ours (medians; the port's at the same size)."""
    rows = []
    def order(key):  # larger crops first; within a size the exact supernet first
        levers = dict(zip(OURS_LEVERS, key[4:]))
        changed = (bool(levers["remat"]), levers["partial_channels"] != 1,
                   levers["atrous_op"] != "regular", not levers["loop_layers"],
                   not levers["fused_sgd"])
        return (-key[0][0], sum(changed), str(key))

    for key in sorted(ours, key=order):
        runs = ours[key]
        row = {"crop": list(key[0]), "batch": key[1], "filter_multiplier": key[2],
               "num_layers": key[3], **dict(zip(OURS_LEVERS, key[4:])), "runs": len(runs)}
        for name, field in (("weight_step_s", "weights_step_seconds_median"),
                            ("arch_step_s", "arch_step_seconds_median"),
                            ("weight_first_call_s", "weights_first_call_seconds"),
                            ("arch_first_call_s", "arch_first_call_seconds"),
                            ("peak_rss_gib", "peak_rss_gib")):
            row[name] = _median(runs, field)
        peers = port.get(key[:4], [])
        row["port_runs"] = len(peers)
        if peers:
            row["port_weight_step_s"] = _median(peers, "weight_step_s_median")
            row["port_arch_step_s"] = _median(peers, "arch_step_s_median")
            row["port_peak_rss_gib"] = _median(peers, _port_rss)
            for name in ("weight_step_s", "arch_step_s", "peak_rss_gib"):
                row[f"ratio_{name}"] = row[name] / row[f"port_{name}"]
        rows.append(row)
    return rows


def _levers(row):
    parts = []
    if row["remat"]:
        parts.append("remat")
    if row["partial_channels"] != 1:
        parts.append(f"K = {row['partial_channels']}")
    if row["atrous_op"] != "regular":
        parts.append(row["atrous_op"].replace("_", "-"))
    if not row["loop_layers"]:
        parts.append("unrolled")
    if not row["fused_sgd"]:
        parts.append("Keras SGD")
    return ", ".join(parts) or "exact"


def markdown(rows):
    lines = ["| crop, F, L | levers | runs | weight / arch step s | first call s "
             "(weight / arch) | peak RSS GiB | port: weight / arch s, RSS GiB (runs) | "
             "ratio: weight / arch / RSS |", "|" + "---|" * 8]
    for row in rows:
        size = f"{row['crop'][0]}², {row['filter_multiplier']}, {row['num_layers']}"
        port = ratio = "–"
        if row["port_runs"]:
            port = (f"{row['port_weight_step_s']:.2f} / {row['port_arch_step_s']:.2f}, "
                    f"{row['port_peak_rss_gib']:.2f} ({row['port_runs']})")
            ratio = (f"{row['ratio_weight_step_s']:.2f} / {row['ratio_arch_step_s']:.2f} / "
                     f"{row['ratio_peak_rss_gib']:.2f}")
        lines.append(
            f"| {size} | {_levers(row)} | {row['runs']} | {row['weight_step_s']:.2f} / "
            f"{row['arch_step_s']:.2f} | {row['weight_first_call_s']:.0f} / "
            f"{row['arch_first_call_s']:.0f} | {row['peak_rss_gib']:.2f} | {port} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", help="record files (globs are expanded)")
    parser.add_argument("--record", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    paths = [p for pattern in args.records for p in (sorted(glob.glob(pattern)) or [pattern])]
    try:
        rows = summarise(*load(paths))
    except ValueError as error:
        print(f"search_table: {error}", file=sys.stderr)
        return 2
    print(markdown(rows))
    if args.record:
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "records": paths}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
