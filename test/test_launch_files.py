"""Static checks of launch/*.launch.py and config/rviz/*.rviz (launch_ros is not installed
here; where it is, the launch descriptions are also built for real).

Launch files, read with ``ast``:
* every executable is an installed entry point (scripts/nodes.txt) or one of the few
  external ROS executables (tf2_ros, robot_state_publisher, rviz2);
* every file they name (config/urdf/rviz) exists;
* every node name is the node's own name (so its config/<robot>.yaml section applies),
  every parameter in that section and every launch override is declared by the node's
  config class;
* every remapped topic is one the node creates (from the node's source: literal names,
  or config fields resolved with the YAML; a node's values = its section over ``/**``);
* tf2_ros / robot_state_publisher / rviz2 nodes start only under an ``if`` on their
  package being installed (one warning for the missing ones), trace_viz_node gets
  ``publish_static_tf`` for the camera transform without tf2_ros;
* every node names its namespace, so the launch arguments override the config file.
rviz configs: every topic a display subscribes to is published by a node the launch files
start, and every frame is a URDF link or the configured camera/base frame.
The real ``ros2 launch`` runs in test_ros2_launch.py.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib
import importlib.util
import inspect
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tracevla_ros.config import field_specs, load_params_file, node_params

REPO = Path(__file__).resolve().parent.parent
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
EXTERNAL = {"tf2_ros": {"static_transform_publisher"},
            "robot_state_publisher": {"robot_state_publisher"}, "rviz2": {"rviz2"}}
EXTERNAL_PUBLISHES = {"static_transform_publisher": {"/tf_static"},
                      "robot_state_publisher": {"/tf", "/tf_static", "/robot_description",
                                                },
                      # the "Publish Point" tool (trace_viz_node turns clicks into visual prompts)
                      "rviz2": {"/clicked_point"}}
ROS_BUILTIN_PARAMS = {"use_sim_time"}
# launch file -> (parameter files it passes by default, rviz configs it starts)
LAUNCH_CONFIGS = {"widowx.launch.py": (["widowx.yaml"], ["widowx.rviz"]),
                  "franka.launch.py": (["fr3.yaml"], ["franka.rviz"]),
                  "replay.launch.py": (["widowx.yaml", "fr3.yaml"], ["widowx.rviz", "franka.rviz"])}
UNKNOWN = "*"


def _entry_points() -> dict[str, str]:
    out = {}
    for ln in (REPO / "scripts" / "nodes.txt").read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            exe, target = ln.strip().split("=", 1)
            out[exe] = target.split(":")[0]
    return out


# ----------------------------------------------------------------- launch file parsing
@dataclass
class LaunchedNode:
    package: str
    executable: str
    name: str
    overrides: set[str] = field(default_factory=set)  # keys of dict parameters
    uses_config: bool = False  # LaunchConfiguration("config") among its parameters
    remaps: list[tuple[str, str]] = field(default_factory=list)
    robot: str = ""  # condition=LaunchConfigurationEquals("robot", robot); "" = always
    line: int = 0

    def runs_with(self, cfg_name: str) -> bool:
        return not self.robot or f"{self.robot}.yaml" == cfg_name


class _Module:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.assigns: dict[str, ast.expr] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name):
                self.assigns[node.targets[0].id] = node.value

    def resolve(self, expr: ast.expr, depth: int = 0) -> ast.expr:
        if isinstance(expr, ast.Name) and expr.id in self.assigns and depth < 5:
            return self.resolve(self.assigns[expr.id], depth + 1)
        return expr

    def parts(self, expr: ast.expr) -> list[ast.expr]:
        """Flatten list literals, ``a + b`` and names bound to them."""
        expr = self.resolve(expr)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.parts(expr.left) + self.parts(expr.right)
        if isinstance(expr, ast.List):
            return [p for e in expr.elts for p in self.parts(e)]
        return [expr]


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _const(expr: ast.expr | None) -> str:
    return expr.value if isinstance(expr, ast.Constant) and isinstance(expr.value, str) else ""


def _is_launch_config(expr: ast.expr, name: str) -> bool:
    return isinstance(expr, ast.Call) and _call_name(expr) == "LaunchConfiguration" and \
        _const(expr.args[0] if expr.args else None) == name


def _graph_nodes(mod: _Module, call: ast.Call) -> list[LaunchedNode]:
    """The nodes a ``stack_nodes(robot, params, OVERRIDES, skip=...)`` or ``launch_node(robot,
    exe, params)`` call starts (tracevla_ros.launch_graph): names and remappings from
    tracevla_ros.graph, parameters and overrides from the call."""
    from tracevla_ros.graph import GRAPHS

    kw = {k.arg: k.value for k in call.keywords if k.arg}
    robot = _const(call.args[0])
    specs = {s.executable: s for s in GRAPHS[robot]}
    if _call_name(call) == "launch_node":
        params = mod.parts(call.args[2] if len(call.args) > 2 else kw["parameters"])
        chosen = {_const(call.args[1]): [p for p in params if isinstance(mod.resolve(p), ast.Dict)]}
    else:
        params = mod.parts(call.args[1])
        over = mod.resolve(call.args[2] if len(call.args) > 2 else kw["overrides"])
        assert isinstance(over, ast.Dict), "stack_nodes overrides must be a dict literal"
        per_exe = {_const(k): [v] for k, v in zip(over.keys, over.values) if k is not None}
        skip_expr = kw.get("skip")
        skip = {_const(e) for e in skip_expr.elts} if isinstance(skip_expr, ast.Tuple) else set()
        chosen = {exe: per_exe.get(exe, []) for exe in specs if exe not in skip}
    out = []
    for exe, dicts in chosen.items():
        n = LaunchedNode("tracevla_ros", exe, specs[exe].name, line=call.lineno,
                         remaps=list(specs[exe].remappings))
        n.uses_config = any(_is_launch_config(mod.resolve(p), "config") for p in params)
        for d in dicts:
            d = mod.resolve(d)
            if isinstance(d, ast.Dict):
                n.overrides |= {_const(k) for k in d.keys if k is not None}
        out.append(n)
    return out


def _external_nodes(mod: _Module) -> list[LaunchedNode]:
    """What ``OpaqueFunction(function=external_nodes, kwargs=...)`` starts
    (tracevla_ros.launch_graph.external_nodes): trace_viz_node (with publish_static_tf) and
    the external packages' nodes (each only where installed: test_external_packages_are_optional)."""
    from tracevla_ros.graph import GRAPHS

    out: list[LaunchedNode] = []
    for call in ast.walk(mod.tree):
        kw = {k.arg: k.value for k in call.keywords if k.arg} if isinstance(call, ast.Call) else {}
        fn = kw.get("function")
        if not (isinstance(fn, ast.Name) and fn.id == "external_nodes"):
            continue
        args = mod.resolve(kw["kwargs"]) if "kwargs" in kw else ast.Dict(keys=[], values=[])
        assert isinstance(args, ast.Dict)
        given = {_const(k): v for k, v in zip(args.keys, args.values) if k is not None}
        robot = _const(given.get("robot")) or "widowx"
        viz = next(sp for sp in GRAPHS[robot] if sp.executable == "trace_viz_node")
        sim_time = isinstance(given.get("sim_time"), ast.Constant) and given["sim_time"].value is True
        out.append(LaunchedNode("tracevla_ros", "trace_viz_node", viz.name, line=call.lineno,
                                overrides={"publish_static_tf"} | ({"use_sim_time"} if sim_time else set()),
                                uses_config=True, remaps=list(viz.remappings)))
        for package, exes in EXTERNAL.items():
            out += [LaunchedNode(package, exe, exe, line=call.lineno) for exe in exes]
    return out


def parse_launch(path: Path) -> tuple[_Module, list[LaunchedNode]]:
    mod = _Module(path)
    nodes = _external_nodes(mod)
    for call in ast.walk(mod.tree):
        if isinstance(call, ast.Call) and _call_name(call) in ("stack_nodes", "launch_node") \
                and call.args and _const(call.args[0]):
            nodes.extend(_graph_nodes(mod, call))
            continue
        if not (isinstance(call, ast.Call) and _call_name(call) == "Node"):
            continue
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        n = LaunchedNode(_const(kw.get("package")), _const(kw.get("executable")),
                         _const(kw.get("name")), line=call.lineno)
        for part in mod.parts(kw["parameters"]) if "parameters" in kw else []:
            part = mod.resolve(part)
            if isinstance(part, ast.Dict):
                n.overrides |= {_const(k) for k in part.keys if k is not None}
            elif _is_launch_config(part, "config"):
                n.uses_config = True
        cond = kw.get("condition")
        if isinstance(cond, ast.Call) and _call_name(cond) == "LaunchConfigurationEquals":
            n.robot = _const(cond.args[1])
        if "remappings" in kw:
            for pair in mod.parts(kw["remappings"]):
                if isinstance(pair, ast.Tuple) and len(pair.elts) == 2:
                    n.remaps.append((_const(pair.elts[0]), _const(pair.elts[1])))
        nodes.append(n)
    return mod, nodes


# ------------------------------------------------------------------ node introspection
@dataclass
class NodeInfo:
    own_name: str
    config_cls: type
    topic_exprs: list[tuple[str, ast.expr]]  # (create_subscription|create_publisher, topic)


def _is_config_class(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and isinstance(obj, type) and all(
        "description" in f.metadata for f in dataclasses.fields(obj))


def node_info(module_name: str) -> NodeInfo:
    module = importlib.import_module(module_name)
    leaf = next(c for _, c in inspect.getmembers(module, inspect.isclass)
                if c.__module__ == module_name and c.__name__.endswith("Node"))
    sources = [c for c in inspect.getmro(leaf) if c.__module__.startswith(("tracevla_ros.", "tracegen_ros."))]
    own_name, config_cls = "", None
    topics: list[tuple[str, ast.expr]] = []
    for cls in sources:
        cls_mod = importlib.import_module(cls.__module__)
        tree = ast.parse(inspect.getsource(cls))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = _call_name(call)
            if name in ("create_subscription", "create_publisher") and len(call.args) >= 2:
                topics.append((name, call.args[1]))
            is_super = name == "__init__" and isinstance(call.func, ast.Attribute) and \
                isinstance(call.func.value, ast.Call) and _call_name(call.func.value) == "super"
            if is_super and call.args and not own_name:
                own_name = _const(call.args[0])
            if is_super or name == "declare_config":
                for a in call.args:
                    obj = getattr(cls_mod, a.id, None) if isinstance(a, ast.Name) else None
                    if _is_config_class(obj) and config_cls is None:
                        config_cls = obj
    assert own_name and config_cls is not None, f"{module_name}: node name / config class not found"
    return NodeInfo(own_name, config_cls, topics)


def _field_value(expr: ast.expr, cfg_cls: type, section: dict[str, Any]) -> str | None:
    """``cfg.X`` / ``self.cfg.X`` -> the value of config field X (YAML, else default)."""
    if isinstance(expr, ast.Attribute):
        specs = {s.name: s for s in field_specs(cfg_cls)}
        if expr.attr in specs:
            value = section.get(expr.attr, specs[expr.attr].default)
            return str(value)
    return None


def node_topics(info: NodeInfo, section: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, topic or fnmatch pattern; '*' = not resolvable statically)."""
    out = []
    for kind, expr in info.topic_exprs:
        if (c := _const(expr)):
            out.append((kind, c))
        elif (v := _field_value(expr, info.config_cls, section)) is not None:
            out.append((kind, v))
        elif isinstance(expr, ast.JoinedStr):
            pat = "".join(_const(p) if isinstance(p, ast.Constant) else
                          (_field_value(p.value, info.config_cls, section) or "*")
                          for p in expr.values if isinstance(p, (ast.Constant, ast.FormattedValue)))
            out.append((kind, pat))
        else:
            out.append((kind, UNKNOWN))
    return out


def _resolve(topic: str, remaps: list[tuple[str, str]]) -> str:
    for src, dst in remaps:
        if topic == src:
            return dst
    return topic if topic.startswith(("/", "~")) else "/" + topic


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_executables_are_installed(path: Path) -> None:
    entry = _entry_points()
    _, nodes = parse_launch(path)
    assert nodes
    for n in nodes:
        if n.package == "tracevla_ros":
            assert n.executable in entry, f"{path.name}:{n.line}: '{n.executable}' is not in scripts/nodes.txt"
        else:
            assert n.executable in EXTERNAL.get(n.package, set()), (
                f"{path.name}:{n.line}: {n.package}/{n.executable} is not a known external executable")


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_named_files_exist(path: Path) -> None:
    mod, _ = parse_launch(path)
    trees = [mod.tree]
    if "external_nodes" in path.read_text():  # rviz configs and URDFs are named there
        trees.append(_Module(REPO / "tracevla_ros" / "launch_graph.py").tree)
    named = {n.value for t in trees for n in ast.walk(t) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and n.value.endswith((".yaml", ".rviz", ".urdf"))
             and "/" not in n.value and not n.value.startswith(".")}
    for name in named:
        hits = [p for p in (REPO / "config" / name, REPO / "config" / "rviz" / name, REPO / "urdf" / name)
                if p.is_file()]
        assert hits, f"{path.name} names {name}, which is not in config/, config/rviz/ or urdf/"
    # PathJoinSubstitution([FindPackageShare(...), "a", "b"]) with constant parts
    for call in ast.walk(mod.tree):
        if isinstance(call, ast.Call) and _call_name(call) == "PathJoinSubstitution":
            parts = call.args[0].elts[1:] if isinstance(call.args[0], ast.List) else []
            if parts and all(_const(p) for p in parts):
                rel = Path(*[_const(p) for p in parts])
                assert (REPO / rel).exists(), f"{path.name}: {rel} does not exist"
    configs, rvizs = LAUNCH_CONFIGS[path.name]
    for c in configs:
        assert (REPO / "config" / c).is_file()
    assert set(rvizs) <= named, f"{path.name} should start rviz with {rvizs}"


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_parameters_are_declared_by_their_nodes(path: Path) -> None:
    entry = _entry_points()
    _, nodes = parse_launch(path)
    for cfg_name in LAUNCH_CONFIGS[path.name][0]:
        sections = load_params_file(REPO / "config" / cfg_name)
        for n in (n for n in nodes if n.package == "tracevla_ros" and n.runs_with(cfg_name)):
            info = node_info(entry[n.executable])
            assert n.name == info.own_name, f"{path.name}:{n.line}: name '{n.name}' != node's own " \
                f"'{info.own_name}' (its YAML section would not apply)"
            declared = {s.name for s in field_specs(info.config_cls)}
            unknown = n.overrides - declared - ROS_BUILTIN_PARAMS
            assert not unknown, f"{path.name}:{n.line}: {n.name} does not declare {sorted(unknown)}"
            if n.uses_config:
                assert n.name in sections, f"{cfg_name} has no section for {n.name}"
                extra = set(sections[n.name]) - declared
                assert not extra, f"{cfg_name} [{n.name}]: {sorted(extra)} not declared by the node"


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_remapped_topics_are_used_by_the_node(path: Path) -> None:
    entry = _entry_points()
    _, nodes = parse_launch(path)
    for cfg_name in LAUNCH_CONFIGS[path.name][0]:
        sections = load_params_file(REPO / "config" / cfg_name)
        for n in (n for n in nodes if n.package == "tracevla_ros" and n.remaps
                  and n.runs_with(cfg_name)):
            info = node_info(entry[n.executable])
            topics = [t for _, t in node_topics(info, node_params(sections, n.name)) if t != UNKNOWN]
            for src, dst in n.remaps:
                assert src and dst, f"{path.name}:{n.line}: remap must be two constant names"
                assert any(src == t or fnmatch.fnmatchcase(src, t) for t in topics), (
                    f"{path.name}:{n.line}: {n.name} remaps '{src}', but it uses {sorted(set(topics))}")


def _published(path: Path, cfg_name: str) -> set[str]:
    entry = _entry_points()
    _, nodes = parse_launch(path)
    sections = load_params_file(REPO / "config" / cfg_name)
    out: set[str] = set()
    for n in (n for n in nodes if n.runs_with(cfg_name)):
        if n.executable == "bag_player_node":  # its topics come from lists in its config
            from tracevla_ros.bag.config import BagPlayerConfig
            from tracevla_ros.config import config_from_params

            known = {s.name for s in field_specs(BagPlayerConfig)}
            out |= set(config_from_params(BagPlayerConfig, node_params(sections, n.name, known))
                       .played_topics())
        if n.package == "tracevla_ros":
            info = node_info(entry[n.executable])
            for kind, t in node_topics(info, node_params(sections, n.name)):
                if kind == "create_publisher" and t != UNKNOWN:
                    out.add(_resolve(t, n.remaps))
        else:
            out |= EXTERNAL_PUBLISHES.get(n.executable, set())
    return out


def _rviz_topics_and_frames(rviz: Path) -> tuple[set[str], set[str]]:
    data = yaml.safe_load(rviz.read_text())
    topics: set[str] = set()
    frames: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k.endswith("Topic") and isinstance(v, dict) and "Value" in v:
                    topics.add(v["Value"])
                elif k in ("Fixed Frame", "Reference Frame", "Target Frame") and \
                        isinstance(v, str) and v != "<Fixed Frame>":
                    frames.add(v)
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(data)
    return topics, frames


def _frames_of(cfg_name: str) -> set[str]:
    viz = node_params(load_params_file(REPO / "config" / cfg_name), "trace_viz_node")
    urdf = "fr3.urdf" if cfg_name == "fr3.yaml" else "wx250s.urdf"
    links = {el.get("name") for el in ET.parse(REPO / "urdf" / urdf).getroot().iter("link")}
    return links | {viz["base_frame"], viz["camera_frame"]}


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_rviz_topics_and_frames_are_published(path: Path) -> None:
    configs, rvizs = LAUNCH_CONFIGS[path.name]
    for cfg_name, rviz_name in zip(configs, rvizs):
        rviz = REPO / "config" / "rviz" / rviz_name
        topics, frames = _rviz_topics_and_frames(rviz)
        assert {"/camera/image_raw", "/image_trace", "/robot_description", "/trace_markers"} <= topics
        published = _published(path, cfg_name)
        assert topics <= published, f"{rviz_name} shows {sorted(topics - published)}, which " \
            f"{path.name} does not publish"
        known = _frames_of(cfg_name)
        assert frames and frames <= known, f"{rviz_name}: frames {sorted(frames - known)} unknown"


def test_franka_rviz_shows_tracegen_markers() -> None:
    topics, _ = _rviz_topics_and_frames(REPO / "config" / "rviz" / "franka.rviz")
    assert "/trace3d_markers" in topics


def test_static_transform_args_match_the_config() -> None:
    from tracevla_ros.viz.frames import static_transform_args

    args = static_transform_args(REPO / "config" / "fr3.yaml")
    assert args[args.index("--frame-id") + 1] == "fr3_link0"
    assert args[args.index("--child-frame-id") + 1] == "camera_color_optical_frame"
    assert float(args[args.index("--x") + 1]) == 1.2


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_descriptions_build(path: Path) -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here (ROS machine only)")
    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, LaunchDescription) and ld.entities
    args = [a.name for a in ld.get_launch_arguments()]
    assert "config" in args and len(args) == len(set(args))


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_external_packages_are_optional(path: Path) -> None:
    """Every launch file starts trace_viz_node and the external packages' nodes through
    launch_graph.external_nodes, where each tf2_ros / robot_state_publisher / rviz2 node
    starts only under an ``if`` on its package having been found (missing_packages), the
    missing ones get one warning (degraded_warning), and trace_viz_node publishes the
    camera transform without tf2_ros."""
    _, nodes = parse_launch(path)
    viz = [n for n in nodes if n.executable == "trace_viz_node"]
    assert len(viz) == 1 and "publish_static_tf" in viz[0].overrides, path.name
    mod = _Module(REPO / "tracevla_ros" / "launch_graph.py")
    fn = next(f for f in ast.walk(mod.tree)
              if isinstance(f, ast.FunctionDef) and f.name == "external_nodes")
    parents = {child: parent for parent in ast.walk(fn) for child in ast.iter_child_nodes(parent)}
    calls = [c for c in ast.walk(fn) if isinstance(c, ast.Call)]
    assert any(_call_name(c) == "missing_packages" for c in calls)
    assert any(_call_name(c) == "degraded_warning" for c in calls)
    external = [c for c in calls if _call_name(c) == "Node" and
                _const({k.arg: k.value for k in c.keywords}.get("package")) in EXTERNAL]
    assert {_const({k.arg: k.value for k in c.keywords}["package"]) for c in external} == set(EXTERNAL)
    for call in external:
        package = _const({k.arg: k.value for k in call.keywords}["package"])
        node: ast.AST = call
        guarded = False
        while node in parents and not guarded:
            node = parents[node]
            guarded = isinstance(node, ast.If) and any(
                _const(c) == package for c in ast.walk(node.test) if isinstance(c, ast.expr))
        assert guarded, f"launch_graph.py:{call.lineno}: {package} node is started unconditionally"


def test_missing_packages_reads_the_ament_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracevla_ros.viz.frames import degraded_warning, missing_packages

    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "rviz2").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert missing_packages(["tf2_ros", "rviz2", "robot_state_publisher"]) == \
        ["tf2_ros", "robot_state_publisher"]
    text = degraded_warning(["tf2_ros", "robot_state_publisher"])
    assert text.startswith("not installed: tf2_ros, robot_state_publisher;")
    assert "trace_viz_node publishes it on /tf_static" in text
    assert degraded_warning([]) == ""


def test_static_tf_fallback_matches_static_transform_publisher() -> None:
    """trace_viz_node's /tf_static fallback uses the same extrinsic as the tf2_ros args."""
    from tracevla_ros.config import load_node_config
    from tracevla_ros.viz.config import TraceVizConfig
    from tracevla_ros.viz.frames import static_transform_args

    for cfg_name in ("widowx.yaml", "fr3.yaml"):
        cfg = load_node_config(TraceVizConfig, REPO / "config" / cfg_name, "trace_viz_node")
        args = static_transform_args(REPO / "config" / cfg_name)
        assert not cfg.publish_static_tf  # only the launch files turn it on
        assert args[args.index("--frame-id") + 1] == cfg.base_frame
        assert [float(args[args.index(k) + 1]) for k in ("--x", "--y", "--z")] == \
            list(cfg.camera_xyz)


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_overrides_beat_the_config_file(path: Path) -> None:
    """launch_ros writes a node's dict parameters under /** unless its name AND namespace
    are given, and rcl lets the config file's node section win over /** (bag:=, policy:=
    ... were silently ignored). Every node therefore names its namespace."""
    mod, _ = parse_launch(path)
    for call in ast.walk(mod.tree):
        if isinstance(call, ast.Call) and _call_name(call) == "Node":
            kw = {k.arg for k in call.keywords}
            assert {"name", "namespace"} <= kw, f"{path.name}:{call.lineno}: Node without namespace="


@pytest.mark.parametrize("path,robot", [(REPO / "launch" / "widowx.launch.py", "widowx"),
                                        (REPO / "launch" / "franka.launch.py", "fr3")],
                         ids=["widowx", "franka"])
def test_launch_file_starts_exactly_the_graph(path: Path, robot: str) -> None:
    """The launch file, tracevla-demo and tracevla-bench loop --launch run one description
    (tracevla_ros.graph): the same nodes, each once, with the graph's remappings."""
    from tracevla_ros.graph import GRAPHS

    _, nodes = parse_launch(path)
    ours = [n for n in nodes if n.package == "tracevla_ros"]
    assert sorted(n.executable for n in ours) == sorted(s.executable for s in GRAPHS[robot])
    specs = {s.executable: s for s in GRAPHS[robot]}
    for n in ours:
        assert n.remaps == list(specs[n.executable].remappings), n.executable
