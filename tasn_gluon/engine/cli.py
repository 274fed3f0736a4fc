"""Flags shared by the command lines that rebuild a network from a checkpoint (eval, export,
visualize): what to build when a ``.params`` file has no run configuration beside it."""

__all__ = ['add_network_flags', 'network_overrides']

NETWORK_FLAGS = ('method', 'net', 'num_classes', 'input_size', 'att_size', 'sample_size',
                 'legacy_sampler')


def add_network_flags(parser, title, with_method=True, net_help=None):
    group = parser.add_argument_group(title)
    if with_method:
        group.add_argument('--method', choices=['tasn', 'baseline'], default=None)
    group.add_argument('--net', choices=['resnet50', 'vgg19', 'resnet18'], default=None,
                       help=net_help)
    group.add_argument('--num-classes', type=int, default=None)
    group.add_argument('--input-size', type=int, default=None)
    group.add_argument('--att-size', type=int, default=None)
    group.add_argument('--sample-size', type=int, default=None)
    group.add_argument('--legacy-sampler', action='store_const', const=True, default=None)
    return group


def network_overrides(args):
    """The network flags given on the command line, as the ``overrides`` dict of the engine."""
    return {name: getattr(args, name) for name in NETWORK_FLAGS if hasattr(args, name)}
