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
(``make setup`` does). Sources, compiler flags, architectures and link flags come from
``tasn_gluon/ops/build.py``, which ``tools/check_cuda_sampler.py --build`` uses too.

Two packages are installed: ``tasn_gluon`` (the library) and ``symbols`` (the Symbol-API side:
graph export and Module-API scoring, the checkout's top-level ``symbols/`` folder).
"""
import importlib.util
import os
import sys
import time

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# the build rules; importing tasn_gluon.ops does not import MXNet (its MXNet face loads on use)
from tasn_gluon.ops import build as native

BuildError = native.BuildError


def _mxnet_paths():
    """Finds the installed wheel's headers and lib_api.cc without importing mxnet (which needs
    a working NumPy and takes seconds)."""
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
        cxx = native.find_cxx()
        if cxx is None:
            raise BuildError('No C++ compiler: install g++ (e.g. apt-get install g++) or set CXX.')
        mode = cuda_mode()
        nvcc = None if mode == 'off' else native.find_nvcc()
        if mode == 'on' and nvcc is None:
            raise BuildError('TASN_CUDA=on but nvcc was not found (PATH, $NVCC, /usr/local/cuda).')
        if nvcc is not None:
            native.check_nvcc(nvcc)
        self._cxx, self._nvcc = cxx, nvcc
        self._gencode = native.gencode_flags(native.requested_architectures(nvcc)) if nvcc else []
        self._objdir = os.path.join(self.build_temp, 'tasn_ops')
        os.makedirs(self._objdir, exist_ok=True)
        self._objects = {}  # both libraries share the core's objects: compile each once
        super().build_extensions()

    def _compile(self, src, extra):
        if src in self._objects:
            return self._objects[src]
        obj = os.path.join(self._objdir, os.path.basename(src) + '.o')
        if src.endswith('.cu'):
            cmd = native.nvcc_command(self._nvcc, src, obj, self._gencode, extra)
        else:
            cmd = native.cxx_command(self._cxx, src, obj, extra)
        start = time.time()
        native.run(cmd)
        if src.endswith('.cu'):
            print('nvcc took %.1f s' % (time.time() - start), flush=True)
        self._objects[src] = obj
        return obj

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with_cuda = self._nvcc is not None and all(
            os.path.isfile(native.source_path(s)) for s in native.CUDA_SOURCES)
        if ext.name.endswith('libtasn_ops'):
            parts = native.library_parts('mxnet', with_cuda, _mxnet_paths())
        else:
            parts = native.library_parts('c_abi', with_cuda)
        objs = [self._compile(src, flags) for src, flags in parts]
        libs = native.cuda_link_flags(self._nvcc) if with_cuda else []
        native.run(native.link_command(self._cxx, target, objs, libs))


setup(
    name='tasn-gluon',
    version='0.1.0',
    description='Trilinear Attention Sampling Network (CVPR 2019) on MXNet/Gluon 1.9.1',
    packages=find_packages(include=['tasn_gluon', 'tasn_gluon.*', 'symbols']),
    package_data={'tasn_gluon.ops': ['csrc/*'], 'symbols': ['*.tsv']},
    ext_modules=[Extension('tasn_gluon.ops.libtasn_ops', sources=[]),
                 Extension('tasn_gluon.ops.libtasn_sampler', sources=[])],
    cmdclass={'build_ext': BuildOps},
    python_requires='>=3.8',
    # MXNet itself is not listed: its CPU (mxnet) and CUDA (mxnet-cu112, ...) builds are
    # different packages of one module; `make setup MXNET=...` installs the chosen one.
    install_requires=['numpy', 'opencv-python', 'scipy', 'matplotlib', 'tqdm'],
    zip_safe=False,
)
