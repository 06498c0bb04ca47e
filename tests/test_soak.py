"""benchmarks/soak.py, briefly: the figures it reports add up (its long run is in benchmarks/RESULTS.md)."""

import json

from fer_engine.benchmarks.soak import main as soak


def test_a_short_soak_accounts_for_every_frame(tmp_path, capsys):
    assert soak(["--minutes", "0.1", "--fps", "10", "--out", str(tmp_path), "--", "--detector", "haar"]) == 0
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["video_frames"] == 60 and result["frames_read"] == 60 and result["frames_lost"] == 0
    assert result["frames_written"] + result["frames_dropped"] == 60
    assert result["json_lines"] == result["frames_written"] > 0
    assert 0 < result["rss_first_mb"] <= result["rss_peak_mb"] and result["rss_samples"] >= 3
    assert "lost 0" in capsys.readouterr().out
