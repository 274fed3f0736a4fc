"""Installs tasn_gluon and builds its AttSampler operator library.

Two shared libraries are built into ``tasn_gluon/ops/``:

* ``libtasn_ops.so``: the MXNet extension library (``mx.library.load``): the C++ core, the
  extension-API binding and MXNet's own ``lib_api.cc``, compiled against the installed wheel's
  ``mxnet/include`` (the header must match the MXNet that loads it).
* ``libtasn_sampler.so``: the same core behind a plain C ABI, with no MXNet in it, so the kernels
  can be checked on their own (``tools/check_cuda_sampler.py``).

CUDA sources are compiled with nvcc as well when ``TASN_CUDA`` is ``auto`` (default, when nvcc
is found) or ``on`` (nvcc required); ``off`` skips them. The kernels are built for every
architecture ``nvcc --list-gpu-arch`` lists from sm_70 up, plus PTX of the newest;
``TASN_CUDA_ARCHS`` (e.g. ``"80 90"``) narrows that list for a quicker build. The CUDA runtime is
linked statically, so the libraries still load, and their CPU operators still run, on machines
without the CUDA runtime or a GPU (e.g. the CPU-only ``mxnet`` wheel). MXNet must already be
installed in the environment that runs the build: use ``pip install --no-build-isolation``
(``make setup`` does).
"""
import os
import shutil
import subprocess
import sys
import time

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join('tasn_gluon', 'ops', 'csrc')

# Files of the core (no MXNet) and of each library, relative to CSRC.
CORE_SOURCES = ['sampler_cpu.cc']
MXNET_BINDING_SOURCES = ['mxnet_binding.cc']
C_ABI_SOURCES = ['c_api.cc']
CUDA_SOURCES = ['sampler_cuda.cu']


class BuildError(RuntimeError):
    pass


def _mxnet_paths():
    """Finds the installed wheel's headers and lib_api.cc without importing mxnet (which needs
    a working NumPy and takes seconds)."""
    import importlib.util
    spec = importlib.util.find_spec('mxnet')
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(
            'MXNet is not installed in this Python (%s). Install it first (pip install -c '
            'constraints.txt mxnet==1.9.1, or mxnet-cu112 for GPUs) and build with '
            '`pip install --no-build-isolation`, or simply run `make setup`.' % sys.executable)
    root = list(spec.submodule_search_locations)[0]
    include = os.path.join(root, 'include')
    lib_api_cc = os.path.join(root, 'src', 'lib_api.cc')
    header = os.path.join(include, 'mxnet', 'lib_api.h')
    for path in (header, lib_api_cc):
        if not os.path.isfile(path):
            raise BuildError('The MXNet wheel at %s lacks %s, which the extension library needs. '
                             'Use mxnet>=1.9 from PyPI.' % (root, path))
    return include, lib_api_cc


def _find_tool(name, env_var):
    path = os.environ.get(env_var) or shutil.which(name)
    if path is None and name == 'nvcc' and os.path.isfile('/usr/local/cuda/bin/nvcc'):
        path = '/usr/local/cuda/bin/nvcc'
    return path


def _run(cmd):
    print(' '.join(cmd), flush=True)
    subprocess.check_call(cmd)


def cuda_architectures(nvcc):
    """-gencode flags: every real architecture nvcc lists from sm_70 up (or those named in
    TASN_CUDA_ARCHS), plus PTX of the newest so that GPUs newer than this nvcc still run the
    kernels."""
    out = subprocess.run([nvcc, '--list-gpu-arch'], capture_output=True, text=True)
    listed = sorted({int(a.split('_')[1]) for a in out.stdout.split() if a.startswith('compute_')
                     and a.split('_')[1].isdigit()})
    wanted = os.environ.get('TASN_CUDA_ARCHS', '').replace(',', ' ').split()
    if wanted:
        try:
            archs = sorted({int(a.lower().replace('sm_', '').replace('.', '')) for a in wanted})
        except ValueError:
            raise BuildError('TASN_CUDA_ARCHS must list compute capabilities like "80 90", '
                             'not %r' % os.environ['TASN_CUDA_ARCHS'])
        unknown = [a for a in archs if listed and a not in listed]
        if unknown:
            raise BuildError('TASN_CUDA_ARCHS names %s, which %s does not support (it lists %s)'
                             % (unknown, nvcc, listed))
    else:
        archs = [a for a in listed if a >= 70] or [70]
    flags = []
    for a in archs:
        flags += ['-gencode', 'arch=compute_%d,code=sm_%d' % (a, a)]
    flags += ['-gencode', 'arch=compute_%d,code=compute_%d' % (archs[-1], archs[-1])]
    return flags


def _cuda_library_dirs(nvcc):
    """Where this nvcc's toolkit keeps its libraries: the -L directories nvcc itself would
    pass to the linker (right even when nvcc is a wrapper script), then the usual places."""
    dirs = []
    out = subprocess.run([nvcc, '--dryrun', '-c', '-x', 'cu', os.devnull, '-o', os.devnull],
                         capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if 'LIBRARIES=' in line:
            for token in line.split('LIBRARIES=', 1)[1].replace('"', ' ').split():
                if token.startswith('-L') and not token.rstrip('/').endswith('stubs'):
                    dirs.append(os.path.normpath(token[2:]))
    roots = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))]
    roots += [os.environ[v] for v in ('CUDA_HOME', 'CUDA_PATH') if os.environ.get(v)]
    roots.append('/usr/local/cuda')
    for root in roots:
        dirs += [os.path.join(root, sub) for sub in (
            'lib64', 'lib', os.path.join('targets', 'x86_64-linux', 'lib'),
            os.path.join('targets', 'sbsa-linux', 'lib'))]
    return dirs


def cuda_link_flags(nvcc):
    """Links the CUDA runtime statically where the toolkit has libcudart_static.a (the library
    then needs no libcudart.so at load time), else dynamically with an rpath."""
    dirs = _cuda_library_dirs(nvcc)
    for libdir in dirs:
        if os.path.isfile(os.path.join(libdir, 'libcudart_static.a')):
            return ['-L' + libdir, '-lcudart_static', '-ldl', '-lrt', '-lpthread']
    for libdir in dirs:
        if os.path.isfile(os.path.join(libdir, 'libcudart.so')):
            print('warning: no libcudart_static.a for %s; linking libcudart.so from %s'
                  % (nvcc, libdir), flush=True)
            return ['-L' + libdir, '-lcudart', '-Wl,-rpath,' + libdir]
    raise BuildError('nvcc is at %s but no CUDA runtime library (libcudart_static.a or '
                     'libcudart.so) was found in %s; fix the CUDA installation or build '
                     'without CUDA (TASN_CUDA=off).' % (nvcc, ', '.join(dict.fromkeys(dirs))))


def cuda_mode():
    mode = os.environ.get('TASN_CUDA', 'auto').lower()
    if mode not in ('auto', 'on', 'off'):
        raise BuildError('TASN_CUDA must be auto, on or off, not %r' % mode)
    return mode


class BuildOps(build_ext):
    """Compiles the two libraries with plain g++/nvcc calls: they are not Python modules."""

    def get_ext_filename(self, fullname):
        return os.path.join(*fullname.split('.')) + '.so'

    def build_extensions(self):
        cxx = _find_tool('g++', 'CXX')
        if cxx is None:
            raise BuildError('No C++ compiler: install g++ (e.g. apt-get install g++) or set CXX.')
        mode = cuda_mode()
        nvcc = None if mode == 'off' else _find_tool('nvcc', 'NVCC')
        if mode == 'on' and nvcc is None:
            raise BuildError('TASN_CUDA=on but nvcc was not found (PATH, $NVCC, /usr/local/cuda).')
        if nvcc is not None and not (os.path.isfile(nvcc) or shutil.which(nvcc)):
            raise BuildError('NVCC=%s is not an executable; point NVCC at nvcc or unset it '
                             '(TASN_CUDA=off builds without CUDA).' % nvcc)
        self._cxx, self._nvcc = cxx, nvcc
        self._objdir = os.path.join(self.build_temp, 'tasn_ops')
        os.makedirs(self._objdir, exist_ok=True)
        self._objects = {}  # both libraries share the core's objects: compile each once
        super().build_extensions()

    def _compile(self, src, extra):
        if src in self._objects:
            return self._objects[src]
        src_path = src if os.path.isabs(src) else os.path.join(HERE, CSRC, src)
        obj = os.path.join(self._objdir, os.path.basename(src) + '.o')
        if src.endswith('.cu'):
            # -fmad=false: no contraction into FMAs, so the GPU rounds as the CPU kernels do.
            # --threads 0: one nvcc thread per CPU across the architectures.
            cmd = [self._nvcc, '-O3', '-std=c++17', '-fmad=false', '--threads', '0',
                   '-Xcompiler', '-fPIC', '-DTASN_WITH_CUDA'] \
                + cuda_architectures(self._nvcc) + extra + ['-c', src_path, '-o', obj]
        else:
            cmd = [self._cxx, '-O3', '-std=c++17', '-fPIC', '-fopenmp', '-Wall'] + extra \
                + ['-c', src_path, '-o', obj]
        start = time.time()
        _run(cmd)
        if src.endswith('.cu'):
            print('nvcc took %.1f s' % (time.time() - start), flush=True)
        self._objects[src] = obj
        return obj

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with_cuda = self._nvcc is not None and all(
            os.path.isfile(os.path.join(HERE, CSRC, s)) for s in CUDA_SOURCES)
        defines = ['-DTASN_WITH_CUDA'] if with_cuda else []
        include = ['-I' + os.path.join(HERE, CSRC)]
        objs = [self._compile(s, include + defines) for s in CORE_SOURCES]
        if ext.name.endswith('libtasn_ops'):
            mx_include, lib_api_cc = _mxnet_paths()
            objs += [self._compile(s, include + defines + ['-I' + mx_include])
                     for s in MXNET_BINDING_SOURCES]
            objs.append(self._compile(lib_api_cc, ['-I' + mx_include, '-Wno-all']))
        else:
            objs += [self._compile(s, include + defines) for s in C_ABI_SOURCES]
        libs = []
        if with_cuda:
            objs += [self._compile(s, include) for s in CUDA_SOURCES]
            libs = cuda_link_flags(self._nvcc)
        # -Bsymbolic: our copy of lib_api.cc must bind to itself; libmxnet.so exports the same
        # mxnet::ext symbols, and once it is loaded RTLD_GLOBAL (Horovod does that) they would
        # otherwise replace ours and crash the library's start-up.
        _run([self._cxx, '-shared', '-fopenmp', '-Wl,--no-undefined', '-Wl,-Bsymbolic', '-o',
              target] + objs + libs)


setup(
    name='tasn-gluon',
    version='0.1.0',
    description='Trilinear Attention Sampling Network (CVPR 2019) on MXNet/Gluon 1.9.1',
    # the checkout's top-level symbols/ folder is installed as tasn_gluon.symbols
    packages=find_packages(include=['tasn_gluon', 'tasn_gluon.*']) + ['tasn_gluon.symbols'],
    package_dir={'tasn_gluon.symbols': 'symbols'},
    package_data={'tasn_gluon.ops': ['csrc/*'], 'tasn_gluon.symbols': ['*.tsv']},
    ext_modules=[Extension('tasn_gluon.ops.libtasn_ops', sources=[]),
                 Extension('tasn_gluon.ops.libtasn_sampler', sources=[])],
    cmdclass={'build_ext': BuildOps},
    python_requires='>=3.8',
    # MXNet itself is not listed: its CPU (mxnet) and CUDA (mxnet-cu112, ...) builds are
    # different packages of one module; `make setup MXNET=...` installs the chosen one.
    install_requires=['numpy', 'opencv-python', 'scipy', 'matplotlib', 'tqdm'],
    zip_safe=False,
)
