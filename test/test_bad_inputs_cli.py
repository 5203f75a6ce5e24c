"""Every bad input to a console script gets one clear line and exit 2 (issue 18).

The table below is what a new user types wrong, command by command: wrong types,
NaN/inf/negative/zero numbers, out-of-range ports, missing files, a directory where a
file is expected and the reverse, ``--out`` naming an existing file, empty strings,
unknown robot/task/backend names, a task of another robot, malformed YAML/JSON/bag
inputs. Each case must end at validation, before any simulator, model or node starts
(the table runs in-process in a few seconds). A handful run as real subprocesses for the
process boundary; the signal tests (SIGTERM mid-run) are in test_cli_signals.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.bad_input import Case, check_in_process, entry_point, run_subprocess

T = "{tmp}"


def inputs(tmp: Path) -> None:
    """The wrong (and a few right) input files the cases point at."""
    import cv2
    import yaml

    from tracevla_ros.sim.dataset import FORMAT

    (tmp / "f.txt").write_text("hello")
    for d in ("d", "empty", "fakebag", "fakeds", "noeps", "notempty", "withbag/bag"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "notempty" / "x").write_text("x")
    (tmp / "bad.yaml").write_text("a: [1, 2\n  b: }")
    (tmp / "notdict.yaml").write_text("- 1\n- 2\n")
    (tmp / "badparam.yaml").write_text(yaml.safe_dump(
        {"tracker_node": {"ros__parameters": {"history": -3}}}))
    (tmp / "bad.json").write_text("{nope")
    (tmp / "fakebag" / "metadata.yaml").write_text("garbage: [")
    (tmp / "junk.mcap").write_bytes(b"\x00" * 100)
    (tmp / "junk.db3").write_bytes(b"not sqlite")
    (tmp / "fakeds" / "info.json").write_text("{nope")
    (tmp / "noeps" / "info.json").write_text(json.dumps({"format": FORMAT, "robot": "widowx250s"}))
    (tmp / "img.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp / "real.png"), np.zeros((16, 16, 3), np.uint8))
    np.save(tmp / "depth.npy", np.ones((16, 16), np.float32))
CHK = f"--checkpoint {T}/d --rgb {T}/img.png --depth {T}/depth.npy"


def _c(cmd: str, phrase: str, rc: int = 2, note: str = "") -> Case:
    return Case(cmd, rc, phrase, setup=inputs, note=note)


CASES = [
    # ---------------------------------------------------------------- tracevla-demo
    _c(f"tracevla-demo --steps abc --out {T}/o", "not an integer", note="type"),
    _c(f"tracevla-demo --steps 0 --out {T}/o", "--steps", note="zero"),
    _c(f"tracevla-demo --steps -5 --out {T}/o", "out of range", note="negative"),
    _c(f"tracevla-demo --rounds 0 --out {T}/o", "--rounds", note="zero"),
    _c(f"tracevla-demo --timeout nan --out {T}/o", "not finite", note="NaN"),
    _c(f"tracevla-demo --timeout inf --out {T}/o", "not finite", note="inf"),
    _c(f"tracevla-demo --timeout -1 --out {T}/o", "--timeout", note="negative"),
    _c(f"tracevla-demo --out {T}/f.txt", "existing file", note="--out is a file"),
    _c("tracevla-demo --out ''", "is empty", note="empty"),
    _c(f"tracevla-demo --robot ur5 --out {T}/o", "invalid choice", note="unknown robot"),
    _c(f"tracevla-demo --task nosuchtask --out {T}/o", "unknown task", note="unknown task"),
    _c(f"tracevla-demo --robot widowx --task put_ball_in_box --out {T}/o",
       "not a task of --robot widowx", note="robot vs task"),
    _c(f"tracevla-demo --robot fr3 --task lift_cube --out {T}/o", "not a task of --robot fr3",
       note="robot vs task"),
    _c(f"tracevla-demo --tracker nosuch --out {T}/o", "--tracker", note="unknown backend"),
    _c(f"tracevla-demo --policy tracegen --out {T}/o", "--robot widowx runs pixelvla or local",
       note="robot vs policy"),
    _c(f"tracevla-demo --prompt arrow --out {T}/o", "--prompt", note="unknown prompt kind"),
    _c(f"tracevla-demo --policy local --checkpoint widowx_pixelvla --out {T}/o",
       "format 'tracevla_pixelvla_small/v1'", note="a PixelVLA checkpoint for the trace policy"),
    _c(f"tracevla-demo --robot fr3 --policy scripted --out {T}/o", "--policy 'scripted'",
       note="robot vs policy"),
    _c(f"tracevla-demo --checkpoint {T}/nonexist --out {T}/o", "not a checkpoint directory",
       note="missing path"),
    _c(f"tracevla-demo --checkpoint {T}/f.txt --out {T}/o", "not a checkpoint directory",
       note="file for a directory"),
    _c(f"tracevla-demo --robot fr3 --checkpoint {T}/nonexist --out {T}/o",
       "--checkpoint", note="missing path"),
    _c(f"tracevla-demo --seed x --out {T}/o", "--seed", note="type"),
    _c(f"tracevla-demo --out {T}/withbag", "already exists", note="bag from an earlier run"),
    _c("tracevla-demo", "required: --out", note="missing argument"),
    # ---------------------------------------------------------------- tracevla-collect
    _c(f"tracevla-collect --robot widowx --task lift_cube --episodes 0 --out {T}/c", "--episodes"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --episodes x --out {T}/c", "not an integer"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --noise-rot nan --out {T}/c",
       "--noise-rot: 'nan' is not finite", note="NaN (was: silently no noise, NaN in info.json)"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --noise-pos inf --out {T}/c", "not finite"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --noise-pos -1 --out {T}/c", "--noise-pos"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --extra-steps -1 --out {T}/c",
       "--extra-steps"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --seed -3 --out {T}/c", "--seed"),
    _c(f"tracevla-collect --robot ur5 --task lift_cube --out {T}/c", "unknown robot 'ur5'"),
    _c(f"tracevla-collect --robot widowx --task nosuch --out {T}/c", "unknown task"),
    _c(f"tracevla-collect --robot widowx --task put_ball_in_box --out {T}/c", "not a task of"),
    _c(f"tracevla-collect --robot fr3 --task lift_cube --out {T}/c", "not a task of"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --out {T}/f.txt", "existing file"),
    _c("tracevla-collect --robot widowx --task lift_cube --out ''", "is empty"),
    _c(f"tracevla-collect --robot '' --task lift_cube --out {T}/c", "--robot: is empty"),
    _c(f"tracevla-collect --robot widowx --task '' --out {T}/c", "--task: is empty"),
    _c(f"tracevla-collect --robot widowx --task lift_cube --out {T}/notempty", "not empty"),
    # ---------------------------------------------------------------- tracevla-annotate
    _c(f"tracevla-annotate --data {T}/nonexist", "does not exist"),
    _c(f"tracevla-annotate --data {T}/f.txt", "is a file"),
    _c(f"tracevla-annotate --data {T}/empty", "info.json not found"),
    _c(f"tracevla-annotate --data {T}/fakeds", "not valid JSON", note="malformed JSON"),
    _c(f"tracevla-annotate --data {T}/noeps", "no episodes", note="zero items"),
    _c(f"tracevla-annotate --data {T}/noeps --params {T}/nonexist.yaml", "does not exist"),
    _c(f"tracevla-annotate --data {T}/noeps --params {T}/bad.yaml", "bad.yaml",
       note="malformed YAML"),
    _c(f"tracevla-annotate --data {T}/noeps --params {T}/notdict.yaml", "notdict.yaml",
       note="YAML of the wrong shape"),
    _c(f"tracevla-annotate --data {T}/noeps --params {T}/badparam.yaml", "history",
       note="out-of-range parameter"),
    _c(f"tracevla-annotate --data {T}/noeps --params {T}/d", "is a directory"),
    _c("tracevla-annotate", "required: --data"),
    # ---------------------------------------------------------------- tracevla-replay
    _c(f"tracevla-replay {T}/nonexist --out {T}/r", "no such bag"),
    _c(f"tracevla-replay {T}/f.txt --out {T}/r", "not a rosbag2 bag"),
    _c(f"tracevla-replay {T}/empty --out {T}/r", "metadata.yaml is missing"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r", "cannot open the bag", note="malformed bag"),
    _c(f"tracevla-replay {T}/junk.mcap --out {T}/r", "junk.mcap", note="malformed bag"),
    _c(f"tracevla-replay {T}/junk.db3 --out {T}/r", "truncated or corrupt", note="malformed bag"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/f.txt", "existing file"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --speed -1", "--speed"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --speed nan", "not finite"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --action-tol nan", "--action-tol"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --action-tol -1", "out of range"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --instruction ''", "--instruction: is empty",
       note="empty (was: policy never called, exit 0 'complete')"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --instruction '   '", "is empty"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --tracker-param nokey", "KEY=VALUE"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --config {T}/nonexist.yaml", "does not exist"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --config {T}/d", "is a directory"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --robot ur5", "invalid choice"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --schedule sometimes", "--schedule"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --policy ''", "--policy: is empty"),
    # ---------------------------------------------------------------- tracevla-serve
    _c("tracevla-serve --backend nosuch --port 99999", "--port: 99999 is out of range"),
    _c("tracevla-serve --backend nosuch --port -1", "out of range"),
    _c("tracevla-serve --backend nosuch --port abc", "not an integer"),
    _c("tracevla-serve --backend nosuch", "unknown policy backend 'nosuch'"),
    _c("tracevla-serve --backend remote", "--backend remote"),
    _c("tracevla-serve --backend ''", "give --backend (a policy) and/or --affordance-backend"),
    _c("tracevla-serve --backend local --max-frame-mb nan", "--max-frame-mb"),
    _c("tracevla-serve --backend local --max-frame-mb -1", "out of range"),
    _c("tracevla-serve --backend local --max-frame-mb 0", "out of range"),
    _c("tracevla-serve --backend local --token-env TVLA_NO_SUCH_VAR_18", "is not set or empty"),
    _c("tracevla-serve --backend local --log-level LOUD", "--log-level"),
    _c("tracevla-serve --backend local --device tpu", "device"),
    _c("tracevla-serve --backend local --host ''", "--host: is empty"),
    # ---------------------------------------------------------------- tracevla-bag
    _c(f"tracevla-bag info {T}/nonexist", "no such bag"),
    _c(f"tracevla-bag info {T}/f.txt", "not a rosbag2 bag"),
    _c(f"tracevla-bag info {T}/empty", "metadata.yaml is missing"),
    _c(f"tracevla-bag info {T}/fakebag", "cannot open the bag"),
    _c(f"tracevla-bag info {T}/junk.mcap", "not an MCAP file"),
    _c(f"tracevla-bag info {T}/junk.db3", "truncated or corrupt"),
    _c(f"tracevla-bag reindex {T}/junk.mcap --dry-run", "not an MCAP file"),
    _c(f"tracevla-bag reindex {T}/empty", "no .mcap or .db3"),
    _c(f"tracevla-bag reindex {T}/f.txt", "not a bag"),
    _c(f"tracevla-bag frob {T}/f.txt", "invalid choice: 'frob'"),
    _c("tracevla-bag", "required: COMMAND"),
    # ---------------------------------------------------------------- tracevla-bench
    _c("tracevla-bench", "required"),
    _c("tracevla-bench nosuch", "unknown benchmark 'nosuch'"),
    _c("tracevla-bench tracker --frames 0", "--frames", note="zero (was: NaN in the JSON)"),
    _c("tracevla-bench tracker --frames -3", "out of range"),
    _c("tracevla-bench tracker --size 0", "--size"),
    _c("tracevla-bench tracker --size abc", "WxH"),
    _c("tracevla-bench tracker --kappa nan", "--kappa: 'nan' is not finite"),
    _c("tracevla-bench tracker --backend nosuch", "invalid choice"),
    _c("tracevla-bench tracker --preset nosuch", "--preset"),
    _c("tracevla-bench ik --n 0", "--n"),
    _c("tracevla-bench ik --near-sigma nan", "not finite"),
    _c("tracevla-bench ik --robot ur5", "unknown robot"),
    _c("tracevla-bench ik --modes foo", "--modes"),
    _c("tracevla-bench sim --frames 0", "--frames"),
    _c("tracevla-bench sim --robot ur5", "unknown robot"),
    _c("tracevla-bench sim --task nosuch", "unknown task"),
    _c("tracevla-bench sim --robot widowx --task put_ball_in_box", "not a task of"),
    _c("tracevla-annotate --data {tmp} --workers 0", "--workers 0: must be >= 1"),
    _c("traceforge --episodes {tmp} --out {tmp}/o --workers -1", "--workers -1: must be >= 1"),
    _c("tracevla-bench annotate --episodes 0", "--episodes"),
    _c("tracevla-bench annotate --workers 0", "--workers"),
    _c("tracevla-bench annotate --task nosuch", "--task 'nosuch'"),
    _c("tracevla-bench annotate --data {tmp}/absent", "does not exist"),
    _c("tracevla-bench experts --episodes 0", "--episodes"),
    _c("tracevla-bench experts --robot ur5", "unknown robot"),
    _c("tracevla-bench experts --tasks nosuch", "--tasks 'nosuch'"),
    _c("tracevla-bench remote --requests 0", "--requests"),
    _c("tracevla-bench remote --size 0", "--size"),
    _c("tracevla-bench replay --frames 0", "--frames"),
    _c("tracevla-bench replay --camera-hz nan", "not finite"),
    _c("tracevla-bench replay --camera-hz 0", "out of range"),
    _c(f"tracevla-bench replay --bag {T}/nonexist", "does not exist"),
    _c(f"tracevla-bench replay --keep {T}/f.txt", "existing file"),
    _c(f"tracevla-bench replay --keep {T}/d", "already exists"),
    _c("tracevla-bench policy --episodes 0", "--episodes"),
    _c(f"tracevla-bench policy --params {T}/nonexist.yaml", "does not exist"),
    _c("tracevla-bench policy --checkpoint nosuch", "not a checkpoint directory"),
    _c("tracevla-bench policy --tasks put_ball_in_box", "not a task of"),
    _c(f"tracevla-bench policy --backend pixelvla --prompt affordance --affordance-checkpoint "
       f"{T}/nonexist --episodes 1", "--affordance-checkpoint", note="missing affordance model"),
    _c("tracevla-bench policy --backend pixelvla --prompt affordance --affordance-points -1",
       "--affordance-points", note="negative point count"),
    _c("tracevla-bench policy --backend pixelvla --controller --k 4", "--controller runs chunks",
       note="--k with the controller's own chunk execution"),
    _c("tracevla-bench loop --seconds 0", "--seconds"),
    _c("tracevla-bench loop --seconds nan", "not finite"),
    _c("tracevla-bench loop --warmup -1", "--warmup"),
    _c(f"tracevla-bench loop --keep {T}/f.txt", "existing file"),
    _c("tracevla-bench loop --robot ur5", "invalid choice"),
    _c("tracevla-bench estop --trials 0", "--trials"),
    _c("tracevla-bench estop --action-rate nan", "not finite"),
    _c("tracevla-bench estop --hog -1", "--hog"),
    _c("tracevla-bench recorder --seconds 0", "--seconds"),
    _c("tracevla-bench recorder --camera-hz nan", "not finite"),
    _c("tracevla-bench recorder --compressions brotli", "--compressions"),
    _c("tracevla-bench recorder --robot ur5", "unknown robot"),
    _c("tracevla-bench action --trials 0", "--trials"),
    _c("tracevla-bench tracegen --repeats 0", "--repeats"),
    _c("tracevla-bench tracegen --steps abc", "--steps"),
    _c("tracevla-bench tracegen --steps 0,10", "--steps"),
    _c(f"tracevla-bench tracegen --checkpoint {T}/nonexist", "does not exist"),
    _c("tracevla-bench tracegen --guidance nan", "not finite"),
    _c("tracevla-bench tracegen-sim --episodes 0", "--episodes"),
    _c("tracevla-bench tracegen-sim --tasks lift_cube", "not a task of --robot fr3"),
    _c("tracevla-bench tracegen-sim --methods nosuch", "invalid choice"),
    _c("tracevla-bench tracegen-sim --flow-steps 0", "--flow-steps"),
    _c("tracevla-bench tracegen-sim --guidance nan", "not finite"),
    _c(f"tracevla-bench tracegen-sim --checkpoint {T}/nonexist", "not a directory"),
    # ---------------------------------------------------------------- traceforge
    _c(f"traceforge --episodes {T}/nonexist --out {T}/tf", "not a directory"),
    _c(f"traceforge --episodes {T}/f.txt --out {T}/tf", "not a directory"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf", "neither a tracevla-collect dataset"),
    _c(f"traceforge --episodes {T}/fakeds --out {T}/tf", "not valid JSON"),
    _c(f"traceforge --episodes {T}/empty --out {T}/f.txt", "existing file"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --ref-stride 0", "--ref-stride"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --lk-window 0", "--lk-window"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --max-horizon -5", "--max-horizon"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --max-horizon 3",
       "shorter than --min-future", note="cross-field"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --min-future abc", "not an integer"),
    _c(f"traceforge --episodes {T}/empty --out {T}/tf --instruction ' '", "--instruction"),
    # ---------------------------------------------------------------- tracegen-predict
    _c(f"tracegen-predict --checkpoint {T}/nonexist --rgb {T}/img.png --depth {T}/depth.npy "
       f"--intrinsics 1,1,1,1 --instruction x --out {T}/p", "--checkpoint"),
    _c(f"tracegen-predict --checkpoint {T}/d --rgb {T}/nonexist.png --depth {T}/depth.npy "
       f"--intrinsics 1,1,1,1 --instruction x --out {T}/p", "--rgb"),
    _c(f"tracegen-predict {CHK} --intrinsics 1,1,1,1 --instruction x --out {T}/f.txt",
       "existing file"),
    _c(f"tracegen-predict {CHK} --intrinsics 1,1,1,1 --instruction '' --out {T}/p",
       "--instruction: is empty"),
    _c(f"tracegen-predict {CHK} --intrinsics 1,1,1,1 --instruction x --out {T}/p --steps 0",
       "--steps"),
    _c(f"tracegen-predict {CHK} --intrinsics 1,1,1,1 --instruction x --out {T}/p "
       "--guidance nan", "not finite"),
    _c(f"tracegen-predict {CHK} --intrinsics a,b --instruction x --out {T}/p", "--rgb"),
    _c(f"tracegen-predict --checkpoint {T}/d --rgb {T}/real.png --depth {T}/depth.npy "
       f"--intrinsics a,b --instruction x --out {T}/p", "--intrinsics 'a,b'"),
    _c(f"tracegen-predict --checkpoint {T}/d --rgb {T}/real.png --depth {T}/depth.npy "
       f"--intrinsics nan,1,1,1 --instruction x --out {T}/p", "finite"),
    _c(f"tracegen-predict --checkpoint {T}/d --rgb {T}/real.png --depth {T}/depth.npy "
       f"--intrinsics {T}/bad.json --instruction x --out {T}/p", "--intrinsics"),
    _c(f"tracegen-predict --checkpoint {T}/d --rgb {T}/real.png --depth {T}/f.txt "
       f"--intrinsics 1,1,1,1 --instruction x --out {T}/p", "--depth"),
]


def test_the_table_is_big_and_covers_every_command() -> None:
    assert len(CASES) >= 80
    tools = {c.cmd.split()[0] for c in CASES}
    assert tools == {"tracevla-demo", "tracevla-collect", "tracevla-annotate", "tracevla-replay",
                     "tracevla-serve", "tracevla-bag", "tracevla-bench", "traceforge",
                     "tracegen-predict"}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_gets_one_line_and_exit_2(case: Case, tmp_path: Path) -> None:
    err = check_in_process(case, tmp_path)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{case.cmd}: more than one line on stderr:\n{err}"
    prog = case.cmd.split()[0]
    assert lines[0].startswith(prog), lines[0]
    # nothing of the failed run is left that could block the rerun or look complete
    for name in ("o", "c", "r", "tf", "p"):
        out = tmp_path / name
        assert not (out / "bag").exists() and not (out / "summary.json").exists()
        assert not (out / "report.json").exists() and not (out / "info.json").exists()


SUBPROCESS_CASES = [
    _c(f"tracevla-demo --timeout nan --out {T}/o", "not finite"),
    _c(f"tracevla-collect --robot widowx --task put_ball_in_box --out {T}/c", "not a task of"),
    _c(f"tracevla-replay {T}/fakebag --out {T}/r --instruction ''", "is empty"),
    _c("tracevla-serve --backend nosuch --port 99999", "out of range"),
    _c("tracevla-bench tracker --frames 0", "--frames"),
    _c(f"traceforge --episodes {T}/empty --out {T}/f.txt", "existing file"),
]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=str)
def test_bad_input_as_a_process(case: Case, tmp_path: Path) -> None:
    err = run_subprocess(case, tmp_path, timeout=120)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


def _option_blocks(text: str) -> dict[str, str]:
    """option -> its help text, from argparse's --help output."""
    blocks: dict[str, str] = {}
    current = ""
    for ln in text.splitlines():
        if ln.startswith("  -"):
            head, _, rest = ln.strip().partition("  ")
            current = head.split(",")[-1].split()[0]
            blocks[current] = rest.strip()
        elif current and ln.startswith("    ") and ln.strip():
            blocks[current] = (blocks[current] + " " + ln.strip()).strip()
        elif not ln.strip() or not ln.startswith(" "):
            current = ""
    return blocks


@pytest.mark.parametrize("cmd", ["tracevla-demo", "tracevla-collect", "tracevla-annotate",
                                 "tracevla-replay", "tracevla-serve", "tracevla-bag info",
                                 "traceforge", "tracegen-predict", "tracevla-bench tracker",
                                 "tracevla-bench tracegen-sim", "tracevla-bench loop",
                                 "tracevla-bench replay", "tracevla-bench tracegen",
                                 "tracevla-bench annotate", "tracevla-bench affordance",
                                 "tracevla-bench policy", "tracevla-train", "tracegen-train",
                                 "tracevla-train-pixelvla-small", "tracevla-train-pixelvla",
                                 "tracevla-finetune-vla", "tracevla-dataset", "tracevla-prompt"])
def test_help_explains_every_option(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = cmd.split()
    assert entry_point(argv[0])([*argv[1:], "--help"]) == 0
    text = capsys.readouterr().out
    blocks = _option_blocks(text)
    assert len(blocks) >= 2, text
    undocumented = [opt for opt, doc in blocks.items() if not doc]
    assert not undocumented, f"{cmd}: options without help: {undocumented}\n{text}"
    no_default = [opt for opt, doc in blocks.items()
                  if opt not in ("--help", "-h") and "(default:" not in doc]
    assert not no_default, f"{cmd}: options whose default --help does not show: {no_default}"


def test_bench_help_lists_every_benchmark_with_one_line() -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "tracevla-bench"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from tracevla_ros.bench import BENCHMARKS

    listed = {ln.split()[0]: ln for ln in r.stdout.split("benchmarks (", 1)[1].splitlines()[1:]
              if ln.startswith("  ")}
    assert set(BENCHMARKS) | {"tracegen", "tracegen-sim"} <= set(listed)
    assert all(len(ln.split()) > 3 for ln in listed.values())  # a description, not just a name


def test_bench_json_is_strict_and_says_what_was_not_computed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A statistic over zero items is null in the JSON, with a note; never NaN."""
    import types

    from tracevla_ros import bench as bench_pkg
    from tracevla_ros.tools import bench

    fake = types.ModuleType("tracevla_ros.bench.fake_zero")
    fake.main = lambda argv: {"benchmark": "fake", "mean_ms": float("nan"),  # type: ignore[attr-defined]
                              "per_task": {"a": {"max": float("inf")}}, "count": 0}
    monkeypatch.setitem(sys.modules, "tracevla_ros.bench.fake_zero", fake)
    monkeypatch.setitem(bench_pkg.BENCHMARKS, "fake-zero", "fake_zero")
    assert bench.main(["fake-zero"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    data = json.loads(out)
    assert data["mean_ms"] is None and data["per_task"]["a"]["max"] is None
    assert any("2 value(s) were not finite" in n for n in data["notes"])
