"""How the operator's native libraries are compiled: the one place for the sources, the compiler
flags, nvcc's architecture list and the CUDA runtime's link flags.

Two users: ``setup.py`` (both libraries, every architecture this nvcc supports; run by
``make setup``) and ``tools/check_cuda_sampler.py --build`` (the C-ABI library, for the GPU at
hand). Standard library only: ``setup.py`` imports it before the package is installed (importing
``tasn_gluon.ops`` does not import MXNet); the check tool runs where MXNet is absent.

Environment: ``CXX`` and ``NVCC`` name the compilers (else ``g++`` and ``nvcc`` on ``PATH``, then
``/usr/local/cuda/bin/nvcc``); ``TASN_CUDA_ARCHS`` (e.g. ``"80 90"``) narrows setup.py's list of
architectures; ``TASN_CUDA`` (``auto``, ``on``, ``off``) says whether setup.py compiles CUDA.
"""
import os
import shutil
import subprocess

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')

# Sources of each part, in CSRC: the framework-free core, the MXNet binding (libtasn_ops.so), the
# plain C ABI (libtasn_sampler.so) and the CUDA kernels (in both libraries when built).
CORE_SOURCES = ['sampler_cpu.cc']
MXNET_BINDING_SOURCES = ['mxnet_binding.cc']
C_ABI_SOURCES = ['c_api.cc']
CUDA_SOURCES = ['sampler_cuda.cu']

CXX_FLAGS = ['-O3', '-std=c++17', '-fPIC', '-fopenmp', '-Wall']
# -fmad=false: no contraction into FMAs, so the GPU rounds as the CPU kernels do.
# --threads 0: one nvcc thread per CPU across the architectures.
NVCC_FLAGS = ['-O3', '-std=c++17', '-fmad=false', '--threads', '0', '-Xcompiler', '-fPIC']
CUDA_DEFINE = '-DTASN_WITH_CUDA'
OLDEST_DEFAULT_ARCH = 70  # Volta: older GPUs are not built for unless TASN_CUDA_ARCHS asks


class BuildError(RuntimeError):
    """The build cannot proceed; the message says what to fix."""


def log_line(msg):
    """The default log: stdout, flushed, so that it interleaves rightly with the compilers'."""
    print(msg, flush=True)


def find_cxx():
    """$CXX or g++ on PATH, else None."""
    return os.environ.get('CXX') or shutil.which('g++')


def find_nvcc():
    """$NVCC, nvcc on PATH or /usr/local/cuda/bin/nvcc, else None (not checked to run)."""
    path = os.environ.get('NVCC') or shutil.which('nvcc')
    if path is None and os.path.isfile('/usr/local/cuda/bin/nvcc'):
        path = '/usr/local/cuda/bin/nvcc'
    return path


def check_nvcc(nvcc):
    """Raises BuildError unless `nvcc` names an executable."""
    if not (os.path.isfile(nvcc) or shutil.which(nvcc)):
        raise BuildError('NVCC=%s is not an executable; point NVCC at nvcc or unset it '
                         '(TASN_CUDA=off builds without CUDA).' % nvcc)


def listed_architectures(nvcc):
    """The compute capabilities (as ints, e.g. 90) that `nvcc --list-gpu-arch` lists, sorted."""
    out = subprocess.run([nvcc, '--list-gpu-arch'], capture_output=True, text=True).stdout
    return sorted({int(a.split('_')[1]) for a in out.split()
                   if a.startswith('compute_') and a.split('_')[1].isdigit()})


def default_architectures(nvcc):
    """What setup.py builds without TASN_CUDA_ARCHS: every listed architecture from sm_70 up."""
    return [a for a in listed_architectures(nvcc) if a >= OLDEST_DEFAULT_ARCH] or \
        [OLDEST_DEFAULT_ARCH]


def requested_architectures(nvcc, spec=None):
    """The architectures of setup.py's build: those of `spec` (default $TASN_CUDA_ARCHS, e.g.
    "80 90" or "sm_80,9.0"), checked against nvcc's list, else default_architectures."""
    spec = os.environ.get('TASN_CUDA_ARCHS', '') if spec is None else spec
    wanted = spec.replace(',', ' ').split()
    if not wanted:
        return default_architectures(nvcc)
    try:
        archs = sorted({int(a.lower().replace('sm_', '').replace('.', '')) for a in wanted})
    except ValueError:
        raise BuildError('TASN_CUDA_ARCHS must list compute capabilities like "80 90", not %r'
                         % spec)
    listed = listed_architectures(nvcc)
    unknown = [a for a in archs if listed and a not in listed]
    if unknown:
        raise BuildError('TASN_CUDA_ARCHS names %s, which %s does not support (it lists %s)'
                         % (unknown, nvcc, listed))
    return archs


def gencode_flags(archs):
    """-gencode flags: real code for each architecture, plus PTX of the newest so that GPUs
    newer than this nvcc JIT-compile the kernels."""
    flags = []
    for a in archs:
        flags += ['-gencode', 'arch=compute_%d,code=sm_%d' % (a, a)]
    return flags + ['-gencode', 'arch=compute_%d,code=compute_%d' % (archs[-1], archs[-1])]


def device_gencode_flags(nvcc, capability):
    """-gencode flags for one GPU of compute capability `capability` (e.g. 90): its real code
    when nvcc lists it, else (a GPU newer than this nvcc) PTX of the newest older architecture
    nvcc knows, JIT-compiled by the driver."""
    listed = listed_architectures(nvcc)
    if not listed or capability in listed:
        return ['-gencode', 'arch=compute_%d,code=sm_%d' % (capability, capability)]
    older = [a for a in listed if a < capability] or listed
    return ['-gencode', 'arch=compute_%d,code=compute_%d' % (older[-1], older[-1])]


def cuda_library_dirs(nvcc):
    """Where this nvcc's toolkit keeps its libraries: the -L directories nvcc itself would pass
    to the linker (right even when nvcc is a wrapper script), then the usual places."""
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
    return list(dict.fromkeys(dirs))


def cuda_link_flags(nvcc, log=log_line):
    """Links the CUDA runtime statically where the toolkit has libcudart_static.a (the library
    then needs no libcudart.so at load time), else dynamically with an rpath."""
    dirs = cuda_library_dirs(nvcc)
    for libdir in dirs:
        if os.path.isfile(os.path.join(libdir, 'libcudart_static.a')):
            return ['-L' + libdir, '-lcudart_static', '-ldl', '-lrt', '-lpthread']
    for libdir in dirs:
        if os.path.isfile(os.path.join(libdir, 'libcudart.so')):  # what -lcudart links
            log('warning: no libcudart_static.a for %s; linking libcudart.so from %s'
                % (nvcc, libdir))
            return ['-L' + libdir, '-lcudart', '-Wl,-rpath,' + libdir]
    raise BuildError('nvcc is at %s but no CUDA runtime library (libcudart_static.a or '
                     'libcudart.so) was found in %s; fix the CUDA installation or build '
                     'without CUDA (TASN_CUDA=off).' % (nvcc, ', '.join(dirs)))


def source_path(src):
    return src if os.path.isabs(src) else os.path.join(CSRC, src)


def cxx_command(cxx, src, obj, extra=()):
    return [cxx] + CXX_FLAGS + list(extra) + ['-c', source_path(src), '-o', obj]


def nvcc_command(nvcc, src, obj, gencode, extra=()):
    return [nvcc] + NVCC_FLAGS + [CUDA_DEFINE] + list(gencode) + list(extra) + \
        ['-c', source_path(src), '-o', obj]


def link_command(cxx, target, objects, libs=()):
    # -Bsymbolic: a library's copy of MXNet's lib_api.cc must bind to itself; libmxnet.so
    # exports the same mxnet::ext symbols, and once it is loaded RTLD_GLOBAL (Horovod does
    # that) they would otherwise replace ours and crash the library's start-up.
    return [cxx, '-shared', '-fopenmp', '-Wl,--no-undefined', '-Wl,-Bsymbolic', '-o', target] + \
        list(objects) + list(libs)


def run(cmd, log=log_line):
    """Runs a build command, logging it first; raises BuildError when it fails."""
    log(' '.join(cmd))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise BuildError('this command failed with exit status %d: %s'
                         % (result.returncode, ' '.join(cmd)))


def library_parts(kind, with_cuda, mxnet_paths=None):
    """What a library is compiled from, in link order: ``(source, extra compiler flags)``.
    ``kind`` 'mxnet' (libtasn_ops.so: ``mxnet_paths`` = (MXNet's include folder, lib_api.cc))
    or 'c_abi' (libtasn_sampler.so); ``with_cuda``: the CUDA kernels too. The core's flags are
    the same in both, so a build may compile it once for the two."""
    include = ['-I' + CSRC]
    defines = [CUDA_DEFINE] if with_cuda else []
    parts = [(s, include + defines) for s in CORE_SOURCES]
    if kind == 'mxnet':
        mx_include, lib_api_cc = mxnet_paths
        parts += [(s, include + defines + ['-I' + mx_include]) for s in MXNET_BINDING_SOURCES]
        parts.append((lib_api_cc, ['-I' + mx_include, '-Wno-all']))
    else:
        parts += [(s, include + defines) for s in C_ABI_SOURCES]
    if with_cuda:
        parts += [(s, include) for s in CUDA_SOURCES]
    return parts


def build_c_abi_library(out_dir, gencode, log=log_line, nvcc=None):
    """Compiles libtasn_sampler.so (core, C ABI, CUDA kernels for the -gencode flags `gencode`)
    into out_dir with setup.py's flags; returns its path. nvcc: default find_nvcc()."""
    cxx, nvcc = find_cxx(), nvcc or find_nvcc()
    if cxx is None:
        raise BuildError('no C++ compiler: install g++ or set CXX')
    if nvcc is None:
        raise BuildError('nvcc not found (PATH, $NVCC, /usr/local/cuda/bin/nvcc)')
    check_nvcc(nvcc)
    objects = []
    for src, flags in library_parts('c_abi', with_cuda=True):
        objects.append(os.path.join(out_dir, src + '.o'))
        run(nvcc_command(nvcc, src, objects[-1], gencode, flags) if src.endswith('.cu') else
            cxx_command(cxx, src, objects[-1], flags), log)
    target = os.path.join(out_dir, 'libtasn_sampler.so')
    run(link_command(cxx, target, objects, cuda_link_flags(nvcc, log)), log)
    return target
