"""Launch files, parameter files and the pip-only launcher agree with each other and with topology.py.

(a) with launch/launch_ros importable (a real ROS 2 install; not on PyPI): each launch file builds, declares
    the launcher's arguments with the same defaults, and produces the same nodes, parameters and remappings;
(b) always: the launch files, read statically, declare every LaunchConfiguration they use and have no side
    effects;
(c) the colcon install has every executable and every file the launch files and the launcher refer to;
(d) the YAML files parse, are keyed by topology's node names, list the parameters the nodes declare (with
    their defaults), and qos.yaml equals topology.QOS;
(e) the launcher's argument table (intradp_ros.launcher.LAUNCH_ARGS) is what the launch files declare;
and the launcher itself: command lines, argument errors, supervision and signal forwarding (fake nodes).
"""
import ast
import importlib
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

yaml = pytest.importorskip('yaml')

from intradp_ros import launcher  # noqa: E402
from intradp_ros.launcher import HOSTS, LAUNCH_ARGS, Launch, LaunchError, launch_arguments, params_argument  # noqa: E402
from intradp_ros.launching.qos_file import qos_file_for, resolve  # noqa: E402
from intradp_ros.topology import NODES, PACKAGE, QOS, QOS_FILE, TOPICS, NodeSpec, nodes_for  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALL = REPO / '.colcon' / 'install'
SHARE = INSTALL / 'share' / PACKAGE
LAUNCH_FILES = {'robot': 'robot.launch.py', 'edge': 'edge.launch.py', 'all': 'intradp.launch.py'}
PARAMS_FILES = sorted({n.params_file for n in NODES})


def _names(host):
    return [a.name for a in launch_arguments(host)]


# ---------------------------------------------------------------------------------------------- (b) static

def _tree(host):
    return ast.parse((REPO / 'launch' / LAUNCH_FILES[host]).read_text())


def _body_tree():
    """The launch files' shared body (they only pick the host)."""
    return ast.parse((REPO / 'intradp_ros' / 'launch_description.py').read_text())


def _call_name(call):
    return getattr(call.func, 'id', None) or getattr(call.func, 'attr', None)


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == name]


def _table_loop_targets(tree):
    """Names bound by comprehensions over launch_arguments(host) (their .name is a declared argument)."""
    targets = set()
    for comp in ast.walk(tree):
        for gen in getattr(comp, 'generators', ()):
            it = gen.iter
            if (isinstance(it, ast.Call) and _call_name(it) == 'launch_arguments'
                    and [ast.unparse(a) for a in it.args] == ['host'] and isinstance(gen.target, ast.Name)):
                targets.add(gen.target.id)
    return targets


def _possible_names(expr, host, loop_targets):
    """The launch argument names ``expr`` (the argument of LaunchConfiguration) can take."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    text = ast.unparse(expr)
    if isinstance(expr, ast.Attribute) and expr.attr == 'name' and ast.unparse(expr.value) in loop_targets:
        return set(_names(host))
    if text == 'params_argument(host, spec)':
        return {params_argument(host, s) for s in nodes_for(host)}
    if text == 'spec.optional':
        return {s.optional for s in nodes_for(host) if s.optional}
    pytest.fail(f'{LAUNCH_FILES[host]}: cannot check LaunchConfiguration({text}) statically; '
                'use a literal name or teach this test the expression')


@pytest.mark.parametrize('host', HOSTS)
def test_host_constant(host):
    hosts = [ast.literal_eval(n.value) for n in _tree(host).body
             if isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ['HOST']]
    assert hosts == [host]


@pytest.mark.parametrize('host', HOSTS)
def test_every_launch_configuration_is_declared(host):
    tree = _body_tree()
    loop_targets = _table_loop_targets(tree)
    declared = set()
    for call in _calls(tree, 'DeclareLaunchArgument'):
        declared |= _possible_names(call.args[0], host, loop_targets)
        keywords = {k.arg for k in call.keywords}
        assert {'default_value', 'description'} <= keywords, ast.unparse(call)
    assert declared, f'{LAUNCH_FILES[host]} declares no argument'
    used = set()
    for call in _calls(tree, 'LaunchConfiguration'):
        used |= _possible_names(call.args[0], host, loop_targets)
    assert used, f'{LAUNCH_FILES[host]} uses no LaunchConfiguration'
    assert used <= declared, f'{LAUNCH_FILES[host]} uses undeclared {sorted(used - declared)}'
    assert declared == set(_names(host))


@pytest.mark.parametrize('host', HOSTS)
def test_launch_file_has_no_side_effects(host):
    tree = _tree(host)
    for stmt in tree.body:
        ok = (isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef))
              or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
              or (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)))
        assert ok, f'{LAUNCH_FILES[host]}:{stmt.lineno}: top-level statement with effects: {ast.unparse(stmt)}'
    for call in ast.walk(tree):
        if isinstance(call, ast.Call):
            assert _call_name(call) not in {'eval', 'exec', 'system', 'Popen', 'run', 'check_call', 'check_output'}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions


def test_launch_files_share_one_body():
    """Each launch file only picks its host: a fix in the shared body is a fix in all three."""
    for host in HOSTS:
        fn = next(n for n in _tree(host).body if isinstance(n, ast.FunctionDef))
        assert [ast.unparse(s) for s in fn.body] == ['return generate_for(HOST)'], LAUNCH_FILES[host]


# ----------------------------------------------------------------------------------- (e) the argument table

@pytest.mark.parametrize('host', HOSTS)
def test_argument_table(host):
    args = launch_arguments(host)
    names = [a.name for a in args]
    assert len(names) == len(set(names)), f'{host}: duplicate arguments {names}'
    assert {'namespace', 'qos_file', 'model', 'device', 'dds_profile'} <= set(names)
    assert ('camera_topic' in names) == (host != 'edge')         # the edge has no camera
    for spec in nodes_for(host):
        assert params_argument(host, spec) in names
        if spec.optional:
            assert spec.optional in names
    for a in args:
        assert a.description, f'{a.name} has no description'
        if a.share_path and a.default:
            assert (REPO / a.default).is_file(), f'default of {a.name}: {a.default} is not in the repository'
    assert all(a.default == TOPICS['camera'].name for a in args if a.name == 'camera_topic')
    assert next(a for a in args if a.name == 'qos_file').default == f'config/{QOS_FILE}'


def test_start_camera_defaults():
    assert next(a for a in launch_arguments('robot') if a.name == 'start_camera').default == 'false'
    assert next(a for a in launch_arguments('all') if a.name == 'start_camera').default == 'true'
    assert 'start_camera' not in _names('edge')


def test_params_file_defaults_follow_topology():
    for host in ('robot', 'edge'):
        for spec in nodes_for(host):
            arg = next(a for a in launch_arguments(host) if a.name == params_argument(host, spec))
            assert arg.default == f'config/{spec.params_file}'
            arg = next(a for a in launch_arguments('all') if a.name == params_argument('all', spec))
            assert arg.default == f'config/{spec.params_file}'


# -------------------------------------------------------------------------- (d) YAML parameter files

def _declared_parameters(spec):
    """{name: default} of the declare(self, "name", default, ...) calls of the node's module (static).

    Defaults written as ``d.attr`` with ``d = SomeConfig()`` are read from that config class.
    """
    path = REPO / 'intradp_ros' / 'nodes' / f'{spec.executable}.py'
    if not path.is_file():
        pytest.skip(f'{path.relative_to(REPO)} does not exist yet')
    tree = ast.parse(path.read_text())
    configs = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)       # d = XConfig(k=v)
               for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Call)
               and isinstance(n.value.func, ast.Name) and n.value.func.id.endswith('Config')}
    module = None
    params = {}
    for call in _calls(tree, 'declare'):
        if len(call.args) < 3 or not isinstance(call.args[1], ast.Constant):
            continue
        default = call.args[2]
        try:
            value = ast.literal_eval(default)
        except ValueError:
            value = None
            if isinstance(default, ast.Attribute) and ast.unparse(default.value) in configs:
                try:
                    module = module or importlib.import_module(f'{PACKAGE}.nodes.{spec.executable}')
                except ImportError as e:
                    pytest.skip(f'cannot import {spec.executable}: {e}')
                config = configs[ast.unparse(default.value)]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in config.keywords}
                value = getattr(getattr(module, config.func.id)(**kwargs), default.attr)
        params[call.args[1].value] = value
    # and what run_node declares on every node (common.py's make_executor)
    common = ast.parse((REPO / 'intradp_ros' / 'nodes' / 'common.py').read_text())
    for fn in (n for n in ast.walk(common) if isinstance(n, ast.FunctionDef) and n.name == 'make_executor'):
        for call in _calls(fn, 'declare'):
            params[call.args[1].value] = ast.literal_eval(call.args[2])
    # and what the node modules it imports declare on it (the lifecycle base, robot_node's edge watch)
    for imp in (n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)):
        part = (imp.module or '').rpartition('.')[2]
        if imp.module == f'{PACKAGE}.nodes.{part}' and part != 'common':
            helper = ast.parse((REPO / 'intradp_ros' / 'nodes' / f'{part}.py').read_text())
            for call in _calls(helper, 'declare'):
                params[call.args[1].value] = ast.literal_eval(call.args[2])
    return params


def _yaml(name):
    return _yaml_at(REPO / 'config' / name)


def _yaml_at(path):
    return yaml.safe_load(pathlib.Path(path).read_text())


def _block(blocks, node):
    keys = [k for k in blocks if k in (f'/{node}', f'/**/{node}')]
    assert len(keys) == 1, f'no single /{node} or /**/{node} block in {list(blocks)}'
    return blocks[keys[0]]['ros__parameters']


@pytest.mark.parametrize('file', PARAMS_FILES)
def test_params_file_keys_are_topology_nodes(file):
    blocks = _yaml(file)
    assert isinstance(blocks, dict)
    expected = {n.name for n in NODES if n.params_file == file}
    assert {k.rsplit('/', 1)[-1] for k in blocks} == expected
    for key, block in blocks.items():
        assert key.startswith('/'), key
        assert list(block) == ['ros__parameters'], key
        assert isinstance(block['ros__parameters'], dict) and block['ros__parameters'], key


@pytest.mark.parametrize('spec', NODES, ids=[n.name for n in NODES])
def test_params_file_lists_the_declared_parameters(spec):
    block = _block(_yaml(spec.params_file), spec.name)
    declared = _declared_parameters(spec)
    assert set(block) == set(declared), (
        f'{spec.params_file} /{spec.name}: only in the YAML {sorted(set(block) - set(declared))}, '
        f'only in the node {sorted(set(declared) - set(block))}')
    for name, default in declared.items():
        if default is not None:
            assert block[name] == default and type(block[name]) is type(default), (
                f'{spec.params_file} /{spec.name}: {name} is {block[name]!r}, the node defaults to {default!r}')


def test_qos_yaml_matches_topology():
    """config/qos.yaml is in rclpy's qos_overrides form, both ends of every topic, equal to topology's defaults."""
    blocks = _yaml(QOS_FILE)
    assert list(blocks) == ['/**']
    qos = blocks['/**']['ros__parameters']['qos_overrides']
    assert set(qos) == {resolve(t.name, '') for t in TOPICS.values()}
    for topic in TOPICS.values():
        d = QOS[topic.qos]
        want = {'history': 'keep_last', 'depth': d.depth, 'reliability': d.reliability, 'durability': d.durability}
        if d.lease_s:
            want.update(liveliness='automatic', liveliness_lease_duration=round(d.lease_s * 1e9))
        assert qos[resolve(topic.name, '')] == {'publisher': want, 'subscription': want}, topic.name


def test_qos_file_is_re_keyed_for_the_namespace_and_the_camera_topic(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_HOME', str(tmp_path))
    path = str(REPO / 'config' / QOS_FILE)
    cam = TOPICS['camera'].name
    assert qos_file_for(path, '', {}) == path == qos_file_for(path, '/', {cam: '/camera/image_raw'})
    keyed = _yaml_at(qos_file_for(path, 'robot1', {cam: '/cam/img'}))['/**']['ros__parameters']['qos_overrides']
    plain = _yaml(QOS_FILE)['/**']['ros__parameters']['qos_overrides']
    assert keyed['/robot1/intradp/tiles/to_edge'] == plain['/intradp/tiles/to_edge']
    assert keyed['/cam/img'] == plain['/camera/image_raw'] and keyed['/diagnostics'] == plain['/diagnostics']
    assert len(keyed) == len(plain) and '/intradp/tiles/to_edge' not in keyed
    relative = _yaml_at(qos_file_for(path, 'robot1', {cam: 'camera/image_raw'}))['/**']['ros__parameters']
    assert '/robot1/camera/image_raw' in relative['qos_overrides']


def test_a_robot_in_a_namespace_names_the_edge_facing_topics_in_the_edges(tmp_path, monkeypatch):
    """robot.launch.py namespace:=robot1: robot_node gets edge_namespace (default /, where it names the edge-facing
    topics itself), nothing is remapped but the camera, and the QoS file is keyed as the nodes resolve the topics:
    the robot's own in robot1, the edge-facing ones once per edge namespace."""
    from intradp_ros.launching.qos_file import edge_namespaces, remappings
    from intradp_ros.topology import EDGE_FACING
    monkeypatch.setenv('ROS_HOME', str(tmp_path))
    values = launcher.resolve_arguments('robot', {'namespace': 'robot1'})
    cam = {TOPICS['camera'].name: TOPICS['camera'].name}
    assert remappings('robot', values) == cam
    assert edge_namespaces('robot', values) == ['/'] and edge_namespaces('edge', values) == []
    argv = dict(launcher.node_commands('robot', values))
    robot = next(a for spec, a in argv.items() if spec.name == 'robot_node')
    assert 'edge_namespace:=/' in robot and '__ns:=/robot1' in robot
    assert not [a for a in robot if a.startswith(TOPICS['to_edge'].name + ':=')]
    two = launcher.resolve_arguments('robot', {'namespace': 'r', 'edge_namespace': 'e1, /e2/'})
    keyed = _yaml_at(qos_file_for(str(REPO / 'config' / QOS_FILE), '/r', remappings('robot', two),
                                  edge_namespaces('robot', two)))['/**']['ros__parameters']['qos_overrides']
    for key in EDGE_FACING:
        name = TOPICS[key].name
        if '/' + name in _yaml(QOS_FILE)['/**']['ros__parameters']['qos_overrides']:
            assert f'/e1/{name}' in keyed and f'/e2/{name}' in keyed and f'/r/{name}' not in keyed
    assert '/r/intradp/plan' in keyed
    # every edge on the domain: the value reaches rcl as the string "*" (bare, YAML would read an alias)
    anyone = launcher.resolve_arguments('robot', {'edge_namespace': '*'})
    assert launcher.node_overrides('robot_node', anyone)['edge_namespace'] == '"*"'
    for bad in ('1robot', '*,/e1', ' , '):
        with pytest.raises(launcher.LaunchError, match='edge_namespace'):
            launcher.node_commands('robot', launcher.resolve_arguments('robot', {'edge_namespace': bad}))


def test_camera_launch_arguments_are_typed_as_the_parameters():
    values = launcher.resolve_arguments('robot', {'loop': 'TRUE', 'rate_hz': '2'})
    assert launcher.node_overrides('camera_player', values) == {'loop': 'true', 'rate_hz': '2.0'}
    assert launcher.node_overrides('robot_node', values) == {'autostart': 'true', 'edge_namespace': '/'}
    with pytest.raises(launcher.LaunchError, match='rate_hz.*not a number'):
        launcher.resolve_arguments('robot', {'rate_hz': 'fast'})
    with pytest.raises(launcher.LaunchError, match='unknown launch argument'):
        launcher.resolve_arguments('edge', {'camera_topic': '/cam'})


def test_launch_overrides_go_to_nodes_that_declare_them():
    for arg in LAUNCH_ARGS:
        for spec in NODES:
            if arg.parameter_of or arg.name in ('model', 'device'):
                declares = arg.name in _declared_parameters(spec)
                assert (spec.name in arg.parameter_of) == declares, f'{arg.name} -> {spec.name}'


# -------------------------------------------------------------------------------- (c) the install tree

needs_install = pytest.mark.skipif(not (INSTALL / 'local_setup.bash').is_file(),
                                   reason='no colcon build in .colcon/install: run ./intradp setup')


@needs_install
@pytest.mark.parametrize('spec', NODES, ids=[n.name for n in NODES])
def test_node_installed(spec):
    exe = INSTALL / 'lib' / PACKAGE / spec.executable
    assert os.access(exe, os.X_OK), f'{exe} missing: ./intradp setup'
    assert (SHARE / 'config' / spec.params_file).is_file()


@needs_install
def test_launch_and_config_installed():
    for name in LAUNCH_FILES.values():
        assert (SHARE / 'launch' / name).is_file(), f'{name} not installed: ./intradp setup'
    for arg in LAUNCH_ARGS:
        if arg.share_path and arg.default:
            assert (SHARE / arg.default).is_file(), f'{arg.name} default {arg.default} not installed'


# ------------------------------------------------------------------------------- (a) with launch_ros

def _launch_available():
    try:
        import launch
        import launch_ros  # noqa: F401
    except ImportError:
        return False
    return hasattr(launch, 'LaunchDescription')   # not the checkout's launch/ folder as a namespace package


needs_launch = pytest.mark.skipif(not _launch_available(),
                                  reason='launch/launch_ros not importable (not on PyPI; needs a ROS 2 install)')


def _load(host):
    path = REPO / 'launch' / LAUNCH_FILES[host]
    spec = importlib.util.spec_from_file_location(f'intradp_{host}_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_launch
@needs_install
@pytest.mark.parametrize('host', HOSTS)
def test_launch_description_builds(host):
    from launch import LaunchContext, LaunchDescription
    from launch.utilities import perform_substitutions

    ld = _load(host).generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    declared = ld.get_launch_arguments()
    assert [a.name for a in declared] == _names(host)
    context = LaunchContext()
    defaults = {a.name: perform_substitutions(context, a.default_value) for a in declared}
    assert defaults == launcher.resolve_arguments(host, {})


@needs_launch
@needs_install
@pytest.mark.parametrize('host,args', [
    ('robot', {}), ('robot', {'start_camera': 'true', 'namespace': 'r1', 'device': 'cuda', 'dds_profile': ''}),
    ('edge', {'model': 'resnet18', 'namespace': 'r2'}), ('all', {}),
    ('all', {'start_camera': 'False', 'camera_topic': '/cam/img', 'namespace': 'r3', 'rate_hz': '5'}),
])
def test_launch_nodes_match_launcher(host, args):
    """The launch file's Node actions carry what the launcher puts on its command lines."""
    from launch import LaunchContext
    from launch.actions import SetEnvironmentVariable
    from launch_ros.actions import Node

    values = launcher.resolve_arguments(host, args)
    context = LaunchContext()
    context.launch_configurations.update(values)
    from intradp_ros.launch_description import _launch_nodes
    actions = _launch_nodes(context, _load(host).HOST)
    env = [a for a in actions if isinstance(a, SetEnvironmentVariable)]
    assert len(env) == (1 if values['dds_profile'] else 0)
    nodes = [a for a in actions if isinstance(a, Node) and (a.condition is None or a.condition.evaluate(context))]
    expected = launcher.node_commands(host, values)
    assert [n.node_executable for n in nodes] == [spec.executable for spec, _ in expected]
    for node, (spec, argv) in zip(nodes, expected):
        node._perform_substitutions(context)
        assert node.node_package == PACKAGE
        assert node.node_name.rsplit('/', 1)[-1] == spec.name
        namespace = values['namespace']
        assert node.expanded_node_namespace.strip('/') == namespace.strip('/')
        assert (node.expanded_remapping_rules or []) == ([(TOPICS['camera'].name, values['camera_topic'])]
                                                         if host != 'edge' else [])
        files = [p for p, is_file in node._Node__expanded_parameter_arguments if is_file]
        qos = argv[[i for i, a in enumerate(argv) if a == '--params-file'][1] + 1]
        assert files[:2] == [values[params_argument(host, spec)], qos]
        overrides = {}
        for extra in files[2:]:
            for block in yaml.safe_load(pathlib.Path(extra).read_text()).values():
                overrides.update(block['ros__parameters'])
        launched = dict(argv[i + 1].split(':=', 1) for i in range(len(argv) - 1) if argv[i] == '-p')
        # the same values, and of the parameters' types (a str "true" would not set a boolean parameter)
        assert overrides == {k: yaml.safe_load(v) for k, v in launched.items()}


# ------------------------------------------------------------------------------------- the launcher itself

def test_launcher_commands_default_robot():
    values = launcher.resolve_arguments('robot', {})
    commands = launcher.node_commands('robot', values)
    assert [s.name for s, _ in commands] == ['robot_node', 'aggregator_node']     # no camera by default
    for spec, argv in commands:
        ros = argv[argv.index('--ros-args'):]
        assert ros[:3] == ['--ros-args', '-r', f'__node:={spec.name}']
        assert '__ns:=' not in ' '.join(ros)
        files = [ros[i + 1] for i, a in enumerate(ros) if a == '--params-file']
        assert [pathlib.Path(f).name for f in files] == ['robot.yaml', QOS_FILE]
        assert all(pathlib.Path(f).is_file() for f in files)
        overrides = [ros[i + 1] for i, a in enumerate(ros) if a == '-p']
        # model/device empty: the params file decides; the edge in the root namespace
        assert overrides == (['autostart:=true', 'edge_namespace:=/'] if spec.name == 'robot_node' else [])
        assert ros[-2:] == ['-r', f"{TOPICS['camera'].name}:={TOPICS['camera'].name}"]


def test_launcher_commands_all_with_overrides():
    values = launcher.resolve_arguments('all', {'namespace': 'robot1', 'model': 'resnet18', 'device': 'cpu',
                                                'camera_topic': '/cam/img', 'start_camera': 'TRUE'})
    commands = {s.name: argv for s, argv in launcher.node_commands('all', values)}
    assert list(commands) == [n.name for n in nodes_for('all')]
    for name, argv in commands.items():
        text = ' '.join(argv)
        assert '-r __ns:=/robot1' in text
        assert ('-p model:=resnet18' in text) == (name != 'camera_player')
        assert ('-p device:=cpu' in text) == (name in ('robot_node', 'edge_node'))
        assert text.endswith(f"-r {TOPICS['camera'].name}:=/cam/img")
        params = argv[argv.index('--params-file') + 1]
        assert pathlib.Path(params).name == next(n.params_file for n in NODES if n.name == name)


@pytest.mark.parametrize('args,message', [
    ({'bogus': '1'}, 'unknown launch argument'),
    ({'start_camera': 'yes please'}, 'not a boolean'),
    ({'params_file': '/nonexistent.yaml'}, 'does not exist'),
    ({'robot_params_file': 'x'}, 'unknown launch argument'),        # an 'all' argument
])
def test_launcher_argument_errors(args, message):
    with pytest.raises(LaunchError, match=message):
        launcher.resolve_arguments('robot', args)


def test_launcher_cli(capsys):
    assert launcher.main(['edge', 'model:=vgg16', '--dry-run']) == 0
    out = capsys.readouterr().out
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE=' in out and '[edge_node]' in out and 'model:=vgg16' in out
    assert launcher.main(['edge', 'dds_profile:=', '--dry-run']) == 0
    assert 'FASTRTPS' not in capsys.readouterr().out
    assert launcher.main(['robot', '--show-args']) == 0
    assert 'start_camera:=' in capsys.readouterr().out
    assert launcher.main(['robot', 'nope:=1']) == 2
    assert launcher.main(['moon']) == 2
    assert launcher.main(['robot', 'start_camera']) == 2
    assert 'name:=value' in capsys.readouterr().err


FAKE_NODE = textwrap.dedent('''
    import os, signal, sys
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGUSR1})
    print("ready", os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE", "-"), flush=True)
    sig = signal.sigwait({signal.SIGINT, signal.SIGUSR1})
    print("got", signal.Signals(sig).name, flush=True)
    sys.exit(int(sys.argv[1]) if sig == signal.SIGUSR1 else 0)
''')


def _fake(name, status_on_usr1=0):
    return NodeSpec(name, name, 'robot', 'robot.yaml'), [sys.executable, '-c', FAKE_NODE, str(status_on_usr1)]


def test_launch_supervision_failure_stops_the_others():
    with Launch('robot', [_fake('fake_a', 3), _fake('fake_b')], dict(os.environ)) as launch:
        for name in ('fake_a', 'fake_b'):
            launch.wait_for_output('^ready', node=name, timeout=30)
        assert launch.poll() is None
        launch.processes['fake_a'].send_signal(signal.SIGUSR1)       # fake_a "crashes" with status 3
        assert launch.wait(timeout=60) == 3
        assert launch.returncodes() == {'fake_a': 3, 'fake_b': 0}
        assert 'got SIGINT' in launch.output['fake_b']                  # stopped with SIGINT, like ros2 launch
        assert '[fake_b] got SIGINT' in launch.lines


def test_launch_child_exiting_zero_is_fine():
    with Launch('robot', [_fake('fake_a', 0), _fake('fake_b')], dict(os.environ)) as launch:
        for name in ('fake_a', 'fake_b'):
            launch.wait_for_output('^ready', node=name, timeout=30)
        launch.processes['fake_a'].send_signal(signal.SIGUSR1)
        assert launch.processes['fake_a'].wait(timeout=30) == 0
        assert launch.wait(timeout=0.5) is None                          # fake_b goes on
        assert launch.stop(timeout=10) == {'fake_a': 0, 'fake_b': 0}
        assert launch.wait(timeout=5) == 0


def test_start_sets_dds_profile_and_writes_logs(monkeypatch, tmp_path):
    monkeypatch.setattr(launcher, 'node_commands', lambda host, values: [_fake('fake_a')])
    with launcher.start('edge', {}, env={'INTRADP_TEST': '1'}, log_dir=tmp_path) as launch:
        line = launch.wait_for_output('^ready', timeout=30)
        assert line.endswith(str(SHARE / 'config' / 'fastdds.xml')) or line.endswith('config/fastdds.xml')
    assert (tmp_path / 'fake_a.log').read_text().splitlines()[:2] == [line, 'got SIGINT']
    with launcher.start('edge', {'dds_profile': ''}, env={'FASTRTPS_DEFAULT_PROFILES_FILE': '/mine.xml'}) as launch:
        assert launch.wait_for_output('^ready', timeout=30) == 'ready /mine.xml'   # the user's profile kept


def test_launcher_forwards_sigint(tmp_path):
    """`python -m intradp_ros.launcher` (fake nodes): Ctrl-C reaches every node, output is prefixed, exit 0."""
    script = tmp_path / 'run_launcher.py'
    script.write_text(textwrap.dedent(f'''
        import sys
        from intradp_ros import launcher
        from intradp_ros.topology import NodeSpec
        code = {FAKE_NODE!r}
        launcher.node_commands = lambda host, values: [
            (NodeSpec(n, n, 'robot', 'robot.yaml'), [sys.executable, '-c', code, '0']) for n in ('fake_a', 'fake_b')]
        sys.exit(launcher.main(sys.argv[1:]))
    '''))
    proc = subprocess.Popen([sys.executable, str(script), 'edge'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        seen = []
        for line in proc.stdout:                    # blocks until each line: no sleeping
            seen.append(line.rstrip('\n'))
            if sum(s.startswith(('[fake_a] ready', '[fake_b] ready')) for s in seen) == 2:
                break
        proc.send_signal(signal.SIGINT)             # to the launcher only: the nodes are in their own sessions
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    seen += rest.splitlines()
    assert proc.returncode == 0, seen
    assert '[fake_a] got SIGINT' in seen and '[fake_b] got SIGINT' in seen
