"""The common form every dataset layout is read into: class names plus a train and a val list of
(relative path, 0-based label), checked once here instead of in each layout reader."""
import collections
import os

from ..errors import DatasetError, first_few

Entry = collections.namedtuple('Entry', ['path', 'label'])
Entry.__doc__ = 'One image of a split: path relative to the split root, 0-based class label.'


class DatasetSplits(object):
    """A dataset as read from its official split files.

    Parameters
    ----------
    name : str
        Short dataset name (``cub``, ``cars``, ``inat2017``, a folder name ...).
    class_names : list of str
        Name of class ``i`` at index ``i``.
    train, val : list of Entry
        The two splits; paths are relative to ``train_root`` / ``val_root``.
    train_root, val_root : str
        Folders the relative paths start from (the same folder for most layouts).
    """

    def __init__(self, name, class_names, train, val, train_root, val_root=None):
        self.name = name
        self.class_names = list(class_names)
        self.train = list(train)
        self.val = list(val)
        self.train_root = os.path.abspath(train_root)
        self.val_root = os.path.abspath(val_root if val_root is not None else train_root)

    @property
    def num_classes(self):
        return len(self.class_names)

    def split(self, which):
        """(entries, root) of 'train' or 'val'."""
        if which == 'train':
            return self.train, self.train_root
        if which == 'val':
            return self.val, self.val_root
        raise ValueError("split must be 'train' or 'val', not %r" % (which,))

    def validate(self, check_files=True):
        """Raises DatasetError on: no classes, duplicate class names, an empty split, a label out
        of range, a path listed twice, an image in both splits, listed images absent on disk."""
        if not self.class_names:
            raise DatasetError('%s: no classes found' % self.name)
        dup_names = [n for n, c in collections.Counter(self.class_names).items() if c > 1]
        if dup_names:
            raise DatasetError('%s: duplicate class names: %s' % (self.name, first_few(dup_names)))
        for which in ('train', 'val'):
            entries, root = self.split(which)
            if not entries:
                raise DatasetError('%s: the %s split is empty' % (self.name, which))
            bad = [e for e in entries if not (0 <= e.label < self.num_classes)]
            if bad:
                raise DatasetError('%s: %d %s label(s) out of range [0, %d): %s' % (
                    self.name, len(bad), which, self.num_classes,
                    first_few('%s -> %s' % (e.path, e.label) for e in bad)))
            dups = [p for p, c in collections.Counter(e.path for e in entries).items() if c > 1]
            if dups:
                raise DatasetError('%s: %d image(s) listed twice in the %s split: %s' % (
                    self.name, len(dups), which, first_few(dups)))
        train_files = {os.path.join(self.train_root, e.path) for e in self.train}
        both = [e.path for e in self.val if os.path.join(self.val_root, e.path) in train_files]
        if both:
            raise DatasetError('%s: %d image(s) are in both train and val: %s' % (
                self.name, len(both), first_few(both)))
        if check_files:
            for which in ('train', 'val'):
                entries, root = self.split(which)
                missing = [e.path for e in entries
                           if not os.path.isfile(os.path.join(root, e.path))]
                if missing:
                    raise DatasetError(
                        '%s: %d of %d %s image(s) listed in the split files are missing under '
                        '%s: %s' % (self.name, len(missing), len(entries), which, root,
                                    first_few(missing)))
        return self


def write_lst(path, entries):
    """MXNet .lst: 'index<TAB>label<TAB>relative path', index = position in the list (written
    to ``path`` as it is: the packer gives a staged name, ``files.StagedFiles``)."""
    with open(path, 'w', encoding='utf-8') as f:
        for i, e in enumerate(entries):
            if '\t' in e.path or '\n' in e.path:
                raise DatasetError('image path contains a tab or newline: %r' % e.path)
            f.write('%d\t%d\t%s\n' % (i, e.label, e.path))


def read_lst(path):
    """Reads a .lst written by write_lst (or MXNet's im2rec, one label) into a list of Entry."""
    entries = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line:
                continue
            parts = line.split('\t')
            if len(parts) != 3:
                raise DatasetError('%s line %d: expected index<TAB>label<TAB>path, got %r'
                                   % (path, n, line))
            try:
                label = float(parts[1])
            except ValueError:
                raise DatasetError('%s line %d: label %r is not a number' % (path, n, parts[1]))
            if label != int(label):
                raise DatasetError('%s line %d: label %r is not an integer' % (path, n, parts[1]))
            entries.append(Entry(parts[2], int(label)))
    return entries
