"""The command line runs an experiment, prints its summary and saves a result that loads back."""

import json
import subprocess
import sys

from bilevel_lib import experiments, training


def test_reproduce_bars_smoke(tmp_path):
    out = tmp_path / "bars.npz"
    completed = subprocess.run([sys.executable, "-m", "bilevel_lib", "reproduce", "bars", "--steps", "20",
                                "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout[: completed.stdout.rindex("}") + 1])
    assert summary["steps"] == 20 and summary["snr_learned_db"] > summary["snr_noisy_db"]
    loaded = training.load_result(out)
    assert len(loaded.history.loss) == 20
    assert "reproduce bars --steps 20" in loaded.settings["command"]


def test_bars_case_learns_a_better_denoiser_than_the_grid_alone():
    outcome = experiments.vertical_bars_case(n_steps=300)
    history = outcome["result"].history
    assert outcome["search"].best.beta0 in outcome["search"].candidates
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert outcome["snr_learned"] > outcome["snr_noisy"] + 4    # 12.69 → 17.48 dB after 300 steps
