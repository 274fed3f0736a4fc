"""The package's layers import only downwards, without cycles, and every module imports on its
own. Layers, bottom to top: the package's errors, files and logs; ops; data; attention, maps
and losses; model_zoo (every weight loader included); engine; reports, the official-checkpoint
conversion and the Symbol side (the top-level ``symbols`` package); the command-line helpers.
Every import statement counts, function-level ones included."""
import ast
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, 'tasn_gluon')
LAYERS = [
    ('tasn_gluon.errors', 'tasn_gluon.files', 'tasn_gluon.logs'),
    ('tasn_gluon.ops',),
    ('tasn_gluon.data',),
    ('tasn_gluon.attention', 'tasn_gluon.maps', 'tasn_gluon.losses'),
    ('tasn_gluon.model_zoo',),
    ('tasn_gluon.engine',),
    ('tasn_gluon.reports', 'tasn_gluon.convert', 'symbols'),
    ('tasn_gluon.cli', 'tasn_gluon.launch'),
]


def modules():
    """{module name: file} of the package and of the symbols/ package."""
    found = {}
    for base, name in ((PACKAGE, 'tasn_gluon'), (os.path.join(ROOT, 'symbols'), 'symbols')):
        for folder, _, files in os.walk(base):
            for f in files:
                if f.endswith('.py'):
                    rel = os.path.relpath(os.path.join(folder, f), base)[:-3].split(os.sep)
                    if rel[-1] == '__init__':
                        rel = rel[:-1]
                    found['.'.join([name] + rel)] = os.path.join(folder, f)
    return found


def layer_of(module):
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + '.') for n in names):
            return i
    return None  # the package itself


def imports_of(module, path):
    """The package modules that ``module`` imports anywhere in its file."""
    package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
    tree = ast.parse(open(path).read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(('tasn_gluon', 'symbols')))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            if target.startswith(('tasn_gluon', 'symbols')):
                out.add(target)
                out.update('%s.%s' % (target, a.name) for a in node.names)
    return out


def graph():
    """{module: the package modules it imports}; the package root (``from tasn_gluon import
    ops`` names it) imports nothing itself, so it is left out as a target."""
    mods = modules()
    return {m: {i for i in imports_of(m, p) if i in mods and i not in (m, 'tasn_gluon')}
            for m, p in mods.items()}


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == ['tasn_gluon']


def test_imports_go_downwards():
    upward = ['%s (layer %d) imports %s (layer %d)' % (m, layer_of(m), i, layer_of(i))
              for m, targets in graph().items() if layer_of(m) is not None
              for i in targets if layer_of(i) is None or layer_of(i) > layer_of(m)]
    assert upward == []


def test_no_import_cycles():
    g = graph()
    cycles = []

    def visit(node, path):
        if node in path:
            cycles.append(' -> '.join(path[path.index(node):] + [node]))
            return
        for nxt in sorted(g[node]):
            if not nxt.startswith(node + '.'):  # a package's own submodules are not a cycle
                visit(nxt, path + [node])
    for m in sorted(g):
        visit(m, [])
    assert cycles == []


_IMPORT_EACH = """
import importlib, json, sys
import mxnet  # imported once: what is checked is the order of the package's own imports
failed = []
for name in sys.argv[1:]:
    for loaded in [k for k in sys.modules if k.split('.')[0] in ('tasn_gluon', 'symbols')]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append('%s: %s: %s' % (name, type(e).__name__, e))
print(json.dumps(failed))
"""


@pytest.mark.multiprocess
def test_every_module_imports_on_its_own():
    """Each module imported into a process where no other module of the package is loaded
    (every one removed from sys.modules before the next): none relies on another having been
    imported first. MXNet itself is imported once, in one process (a fresh interpreter per
    module costs ~2 s each)."""
    done = subprocess.run([sys.executable, '-c', _IMPORT_EACH] + sorted(modules()),
                          capture_output=True, text=True, timeout=600, cwd='/')
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
