"""What ``tools/check_cuda_sampler.py`` runs on a GPU machine, beside it: the CUDA runtime
(``runtime``: the interface and ``open_runtime``; ``cupy_runtime`` and ``cudart`` serve it), the
sampler's test shapes (``cases``, which the test suite shares), the CUDA kernels run beside the
CPU kernels (``comparison``), getting ready and the report (``harness``) and the bandwidth
benchmark (``bandwidth``). Imports without MXNet: GPU machines may have NumPy 2, which MXNet
1.9.1 does not import with."""
