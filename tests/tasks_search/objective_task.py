"""A custom objective, objective(hp, report) -> float, with no torch: a smooth score that peaks at
a learning rate of about 3e-3, rises over the epochs, and carries a little seed noise.

ADVISOR_TEST_DELAY (seconds per epoch) slows it down for the kill-and-resume test;
ADVISOR_TEST_CONSTANT makes every configuration score the same (the stop-rule test)."""

import math
import os
import random
import time


def objective(hp, report):
    lr = float(hp["learning_rate"])
    wd = float(hp.get("weight_decay", 0.0))
    epochs = int(hp["epochs"])
    delay = float(os.environ.get("ADVISOR_TEST_DELAY", "0"))
    noise = random.Random(int(hp.get("seed", 0))).gauss(0.0, 0.002)
    score = 0.0
    for epoch in range(epochs):
        if os.environ.get("ADVISOR_TEST_CONSTANT"):
            score = 0.5
        else:
            target = 1.0 - (math.log10(lr) + 2.5) ** 2 / 10.0 - 2.0 * wd + noise
            score = target * (1.0 - 0.5 ** (epoch + 1))
        report(score, epoch)
        if delay:
            time.sleep(delay)
    return score


objective.direction = "maximize"


def unreported(hp, report):
    """An objective that never calls report()."""
    return 1.0 - abs(math.log10(float(hp["learning_rate"])) + 2.5) / 10.0
