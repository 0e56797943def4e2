"""Oracle: TensorBoard's own EventAccumulator reads luna's event file.

Usage: nn_tensorboard.py <logdir>. Prints JSON {tag: [[step, value], ...]} for every scalar tag.
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
    acc.Reload()
    out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
