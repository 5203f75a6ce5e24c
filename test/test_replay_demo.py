"""tracevla-replay on the bag tracevla-demo writes: same traces, same validity ratio as the
demo's summary, same actions (a deterministic policy that also reads the joint states)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]

SUPPORT = Path(__file__).resolve().parent / "support"


def test_replay_reproduces_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(SUPPORT))
    from replay_policy import ReplayTestPolicy

    import tracevla_ros.nodes.policy_node as policy_node
    from tracevla_ros.tools import demo
    from tracevla_ros.tools.replay import main as replay_main

    class TestPolicyNode(policy_node.PolicyNode):  # the demo's policy_node, with the test policy
        def __init__(self, policy: object = None, **kwargs: object) -> None:
            super().__init__(policy=ReplayTestPolicy(), **kwargs)

    monkeypatch.setattr(policy_node, "PolicyNode", TestPolicyNode)
    out = tmp_path / "demo"
    assert demo.main(["--robot", "widowx", "--steps", "25", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    code = replay_main([str(out / "bag"), "--out", str(tmp_path / "replay"),
                        "--policy", "replay_policy:make_policy", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    rep = json.loads((tmp_path / "replay" / "report.json").read_text())
    assert rep["config"]["source"].startswith("bag metadata")  # the demo's own parameters
    assert rep["recorded"]["policy_names"] == ["replay_test_policy"]
    assert rep["recorded"]["actions"] >= 25 and rep["steps"] == rep["recorded"]["traces"]
    assert rep["trace_valid_ratio"] == summary["trace_valid_ratio"]
    assert rep["comparison"]["demo_summary"]["match"] is True
    assert rep["comparison"]["actions"]["compared"] == rep["recorded"]["actions"]
    assert rep["comparison"]["actions"]["max_abs_error"] <= 1e-6
    assert rep["reproduced"] == {"action_tolerance": 1e-5, "trace_valid_ratio": True,
                                 "traces": True, "actions": True,
                                 "demo_summary_trace_valid_ratio": True}, json.dumps(
        rep["comparison"], indent=1)[:3000]
