"""Speed of advisor's TensorBoard reader against TensorBoard's own event-file loader alone.

    python bench/bench_tensorboard.py [--scalars 100000] [--repeats 5]

Writes one event file of N scalars (4 tags: loss, val_loss, accuracy, lr) with TensorBoard's
event-file writer, then times, in one process and in alternation (a shared machine is noisy:
read the ratio, not the seconds):
    library: every event of the file through TensorBoard's LegacyEventFileLoader (its loader
             without the migration to tensors, the one advisor uses), each scalar's tag, step
             and value taken out (the least any reader of the file does);
    advisor: advisor.ingest.load_runs(FILE), the table and the RunLog included.
Goal: advisor within 2x of the library alone (the import of TensorBoard, paid once by both, is
left out of both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_events(folder: Path, scalars: int) -> Path:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    tags = ("loss", "val_loss", "accuracy", "lr")
    writer = EventFileWriter(str(folder))
    for step in range(scalars // len(tags)):
        values = [summary_pb2.Summary.Value(tag=tag, simple_value=1.0 / (step + 1) + i) for i, tag in enumerate(tags)]
        writer.add_event(Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    (path,) = folder.glob("events.out.tfevents*")
    return path


def library(path: Path) -> int:
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    n = 0
    for event in LegacyEventFileLoader(str(path)).Load():
        if event.HasField("summary"):
            for value in event.summary.value:
                _ = (value.tag, event.step, value.simple_value)
                n += 1
    return n


def advisor(path: Path) -> int:
    from advisor.ingest import load_runs

    runs = load_runs(path)
    return sum(len(r.epochs) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_events(Path(tmp), args.scalars)
        library(path), advisor(path)  # imports and caches warm for both
        times: dict[str, list[float]] = {"library": [], "advisor": []}
        for _ in range(args.repeats):
            for name, fn in (("library", library), ("advisor", advisor)):
                start = time.perf_counter()
                fn(path)
                times[name].append(time.perf_counter() - start)
        lib, adv = statistics.median(times["library"]), statistics.median(times["advisor"])
        print(f"{args.scalars} scalars ({path.stat().st_size / 1e6:.1f} MB): library {lib:.3f} s, "
              f"advisor {adv:.3f} s, ratio {adv / lib:.2f} (goal <= 2.0)")


if __name__ == "__main__":
    main()
