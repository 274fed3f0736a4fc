"""Our eval JSONs beside the published numbers (``data/published_results.csv``), as Markdown.

Published rows keep their source; a row without a value is an empty slot and stays empty. The
difference is ours minus published, in points, where both exist. A result is put beside a
published dataset's numbers only when its data is that dataset: the classes and the train and
val image counts recorded in the eval JSON must be the published ones (:data:`DATASETS`);
anything else (a subset, a toy set in the same layout) is listed as "custom".
"""
import csv
import dataclasses
import io
import json
import math
import os
from typing import Optional

from ..errors import InputError
from ..files import require_file

__all__ = ['DatasetFacts', 'DATASETS', 'PUBLISHED_COLUMNS', 'default_published_path',
           'read_published', 'read_eval_json', 'variant_of', 'table_dataset', 'compare_table']

PUBLISHED_COLUMNS = ('dataset', 'setting', 'method', 'top1', 'source')


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """What a published dataset is (spec section 8): a run is compared with the published
    numbers only when its data has these counts."""
    title: str
    num_classes: Optional[int] = None
    num_train: Optional[int] = None
    num_val: Optional[int] = None


DATASETS = {
    'cub': DatasetFacts('CUB-200-2011', 200, 5994, 5794),
    'cars': DatasetFacts('Stanford Cars', 196, 8144, 8041),
    'inat': DatasetFacts('iNaturalist 2017', 5089, 579184, 95986),
    'synthetic': DatasetFacts('synthetic (built-in)'),
}


def default_published_path():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, 'data', 'published_results.csv')


def read_published(path=None):
    """Rows of the published table; ``top1`` is a float or None (empty slot). InputError naming
    the file when it is not such a table."""
    path = require_file(path or default_published_path(), '--published')
    with open(path, encoding='utf-8', errors='replace') as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith('#')]
    reader = csv.DictReader(io.StringIO(''.join(lines)))
    missing = [k for k in PUBLISHED_COLUMNS if k not in (reader.fieldnames or ())]
    if missing:
        raise InputError('%s is not a published-results table: it lacks the column(s) %s (a CSV '
                         'with the header %s, as data/published_results.csv)'
                         % (path, ', '.join(missing), ','.join(PUBLISHED_COLUMNS)))
    rows = []
    for i, r in enumerate(reader):
        top1 = (r.get('top1') or '').strip()
        r['top1_text'] = top1
        try:
            r['top1'] = float(top1) if top1 else None
        except ValueError:
            raise InputError('%s, row %d: top1 %r is not a number' % (path, i + 2, top1))
        if r['top1'] is not None and not (r['source'] or '').strip():
            raise InputError('%s, row %d: a value without a source' % (path, i + 2))
        size = (r.get('sample_size') or '').strip()
        if size and not size.isdigit():
            raise InputError('%s, row %d: sample_size %r is not a whole number'
                             % (path, i + 2, size))
        r['sample_size'] = int(size) if size else None
        r['net'] = (r.get('net') or '').strip() or None
        rows.append(r)
    return rows


def variant_of(result):
    """The method as the published table names it: tasn, baseline, tasn-no-kd, tasn-uniform."""
    method = result.get('method') or 'tasn'
    if method == 'tasn':
        if result.get('uniform_sampler'):
            return 'tasn-uniform'
        if result.get('kd_weight') is not None and float(result['kd_weight']) == 0.0:
            return 'tasn-no-kd'
    return method


def read_eval_json(path):
    """An eval JSON of tools/eval.py; InputError naming the file when it is not one."""
    path = require_file(path, 'eval JSON')
    with open(path, encoding='utf-8', errors='replace') as f:
        try:
            r = json.load(f)
        except ValueError as e:
            raise InputError('%s is not an eval JSON: %s' % (path, e))
    if not isinstance(r, dict):
        raise InputError('%s is not an eval JSON of tools/eval.py: it holds a JSON %s, not an '
                         'object' % (path, type(r).__name__))
    if r.get('top1') is None and r.get('master_aux') is None:
        raise InputError('%s has neither top1 nor master_aux: not an eval JSON of '
                         'tools/eval.py' % path)
    for key in ('top1', 'master_aux'):
        v = r.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                              not math.isfinite(v)):
            raise InputError('%s: %s %r is not a number' % (path, key, v))
    r.setdefault('label', os.path.splitext(os.path.basename(path))[0])
    return r


def _ours_top1(r):
    v = r.get('top1') if r.get('top1') is not None else r.get('master_aux')
    return None if v is None else 100.0 * float(v)


def _matches(pub, ours):
    if pub['dataset'] != ours.get('dataset'):
        return False
    if pub['method'] != variant_of(ours):
        return False
    if pub['net'] and ours.get('net') and pub['net'] != ours['net']:
        return False
    if pub['sample_size'] and ours.get('sample_size') and \
            int(pub['sample_size']) != int(ours['sample_size']):
        return False
    return True


def _f(v, signed=False):
    if v is None:
        return ''
    return ('%+.2f' if signed else '%.2f') % v


def _describe(r):
    parts = [variant_of(r), r.get('net') or '?']
    if r.get('sample_size'):
        parts.append('sampled %s' % r['sample_size'])
    if table_dataset(r) == 'custom':
        parts.append('%s layout, %s classes, %s train / %s val images' % (
            r.get('dataset') or '?', r.get('num_classes', '?'), r.get('num_train', '?'),
            r.get('num_val', r.get('num_images', '?'))))
    return ', '.join(str(p) for p in parts)


def table_dataset(result):
    """The table a result belongs in: its dataset key when the data it was evaluated on is that
    dataset (classes and image counts as published), else 'custom'."""
    key = result.get('dataset') or 'unknown'
    facts = DATASETS.get(key)
    if facts is None:
        return 'custom'
    counts = (('num_classes', facts.num_classes), ('num_train', facts.num_train),
              ('num_val', facts.num_val))
    if any(want is not None and result.get(k) != want for k, want in counts):
        return 'custom'
    return key


def _title(key):
    if key != 'custom':
        return DATASETS[key].title if key in DATASETS else key
    return 'custom data (not a published dataset: classes or image counts differ)'


def compare_table(results, published=None, all_datasets=False):
    """Markdown: one table per dataset with ours beside every published row of it; results on
    other data in a table of their own ("custom")."""
    published = published if published is not None else read_published()
    tables = [table_dataset(r) for r in results]
    datasets = []
    for d in tables:
        if d not in datasets:
            datasets.append(d)
    if all_datasets:
        for p in published:
            if p['dataset'] not in datasets:
                datasets.append(p['dataset'])
    out = []
    for d in datasets:
        out.append('### %s' % _title(d))
        out.append('')
        out.append('| setting | published top-1 (%) | source | ours top-1 (%) | ours - published '
                   '| our run |')
        out.append('|---|---|---|---|---|---|')
        used = set()
        for p in [p for p in published if p['dataset'] == d]:
            mine = [(i, r) for i, r in enumerate(results)
                    if tables[i] == d and _matches(p, r)]
            if mine:
                for i, r in mine:
                    used.add(i)
                    ours = _ours_top1(r)
                    diff = ours - p['top1'] if (ours is not None and p['top1'] is not None) \
                        else None
                    out.append('| %s | %s | %s | %s | %s | %s |' % (
                        p['setting'], p['top1_text'], p['source'], _f(ours), _f(diff, True),
                        r['label']))
            else:
                out.append('| %s | %s | %s |  |  |  |' % (p['setting'], p['top1_text'],
                                                          p['source']))
        for i, r in enumerate(results):
            if tables[i] == d and i not in used:
                out.append('| ours: %s |  |  | %s |  | %s |' % (_describe(r), _f(_ours_top1(r)),
                                                               r['label']))
        out.append('')
    return '\n'.join(out)
