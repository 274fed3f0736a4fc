"""tasn_gluon: Trilinear Attention Sampling Network (Zheng et al., CVPR 2019) on MXNet/Gluon."""
__version__ = '0.1.0'
