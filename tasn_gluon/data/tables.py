"""Readers for the plain-text and .mat split files, with errors that name file and line."""
import os

from ..errors import DatasetError, first_few


def split_file(root, name, what):
    """Path of the split file ``root/name``; DatasetError naming it when it is absent."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise DatasetError('%s: missing %s (expected at %s)' % (what, name, path))
    return path


def find_first(root, candidates, what):
    """The first existing ``root/c`` of candidates; DatasetError naming all of them otherwise."""
    for c in candidates:
        path = os.path.join(root, c)
        if os.path.exists(path):
            return path
    raise DatasetError('%s: none of %s found under %s' % (what, ', '.join(candidates), root))


def read_id_table(path, value_type=str):
    """'<int id> <value>' per line (value may contain spaces) -> dict id -> value, in file order.
    Rejects malformed lines and duplicate ids."""
    table = {}
    dups = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise DatasetError('%s line %d: expected "<id> <value>", got %r' % (path, n, line))
            try:
                key = int(parts[0])
                value = value_type(parts[1].strip())
            except ValueError:
                raise DatasetError('%s line %d: cannot parse %r' % (path, n, line))
            if key in table:
                dups.append(key)
            table[key] = value
    if dups:
        raise DatasetError('%s: duplicate id(s): %s' % (path, first_few(dups)))
    if not table:
        raise DatasetError('%s is empty' % path)
    return table


def load_mat_struct(path, var):
    """A MATLAB struct array (or cell array) variable of a .mat file as a 1-D numpy array.
    For struct arrays each element exposes the fields by name (``item['class']``)."""
    import numpy as np
    import scipy.io
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DatasetError('%s is not a readable .mat file: %s' % (path, exc))
    if var not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise DatasetError('%s has no variable %r (it has: %s)' % (path, var, ', '.join(found)))
    return np.atleast_1d(mat[var])


def mat_field(records, field, path):
    """Column ``field`` of a struct array from load_mat_struct as a Python list."""
    names = records.dtype.names or ()
    if field not in names:
        raise DatasetError('%s: the struct has no field %r (fields: %s)'
                           % (path, field, ', '.join(names)))
    return [records[i][field] for i in range(len(records))]


def as_int(value, path, what):
    """A MATLAB scalar (numpy 0-d array, uint8 ...) as a Python int, or a DatasetError."""
    import numpy as np
    arr = np.asarray(value)
    if arr.size != 1:
        raise DatasetError('%s: %s is %r, expected one integer' % (path, what, value))
    v = arr.reshape(()).item()
    if isinstance(v, float) and v != int(v):
        raise DatasetError('%s: %s is %r, expected an integer' % (path, what, v))
    return int(v)
