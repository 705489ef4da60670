"""Loss spikes found in step-level losses -> spikes.csv; spike counts in the summary."""

from __future__ import annotations

import csv
from pathlib import Path

from testbed.analysis import spike_detector as detector
from testbed.plugin_api.base import plugin
from testbed.plugin_api.probe import Probe
from testbed.rundir import seed_merge

FIELDS = ("seed", "start", "peak", "end", "epoch", "baseline", "peak_loss", "ratio", "diverged")


class Spikes(Probe):
    def __init__(self, params: detector.SpikeParams):
        self.params = params

    def finish(self, out: Path) -> dict[str, list]:
        found = detector.detect(self.info.step_losses.numpy(), self.info.seeds, self.params)
        epoch_of = self.info.epoch_of_steps().numpy()
        with open(out / "spikes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            for s in found:
                w.writerow(s.row() | {"epoch": int(epoch_of[s.peak])})
        counts = {seed: 0 for seed in self.info.seeds}
        worst = {seed: 0.0 for seed in self.info.seeds}
        for s in found:
            counts[s.seed] += 1
            worst[s.seed] = max(worst[s.seed], s.ratio)
        return {"spikes": list(counts.values()), "worst_spike_ratio": list(worst.values())}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_csv(parts, seeds, "spikes.csv", out)  # the detector lists spikes seed by seed
        return True


@plugin("spikes", detector.SpikeParams)
def spikes(params: detector.SpikeParams):
    """Loss spikes per seed from step losses (spikes.csv), with the documented detector of testbed.analysis.spike_detector."""
    return Spikes(params)
