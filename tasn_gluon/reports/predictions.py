"""What ``tools/predict.py`` prints and writes: the table of top-k classes, and the results as
JSON or CSV (chosen by the file's extension).

JSON: ``{"model": {...}, "top_k": k, "predictions": [{"file", "top": [{"rank", "class",
"name", "probability"}], "picture"?}], "skipped": [{"file", "reason"}]}``.
CSV: one row per (image, rank) with columns ``CSV_COLUMNS``; a skipped file is one row with only
``file`` and ``reason`` filled. Probabilities are written in full (``repr`` of the float64).
"""
import csv
import io
import json
import os

from ..errors import InputError
from ..files import atomic_write_text

__all__ = ['OUTPUT_FORMATS', 'CSV_COLUMNS', 'output_format', 'results_dict', 'write_results',
           'format_table']

OUTPUT_FORMATS = {'.json': 'json', '.csv': 'csv'}
CSV_COLUMNS = ('file', 'rank', 'class', 'name', 'probability', 'reason')


def output_format(path):
    """'json' or 'csv' for an output path, by its extension; InputError otherwise (or when the
    path is a folder)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise InputError('--out %s: the file name must end in %s (the format is chosen by the '
                         'extension)' % (path, ' or '.join(sorted(OUTPUT_FORMATS))))
    if os.path.isdir(path):
        raise InputError('--out %s is a folder; give a file name' % path)
    return OUTPUT_FORMATS[ext]


def results_dict(results, model_info, top_k):
    """The JSON document of ``results`` (PredictionResults); ``model_info``: what to record of
    the model (checkpoint, kind, input size ...)."""
    preds = []
    for p in results.predictions:
        top = [{'rank': r + 1, 'class': c, 'name': n, 'probability': prob}
               for r, (c, n, prob) in enumerate(zip(p.classes, p.names, p.probabilities))]
        entry = dict(file=p.source, top=top)
        if p.picture:
            entry['picture'] = p.picture
        preds.append(entry)
    return dict(model=model_info, top_k=int(top_k), predictions=preds,
                skipped=[dict(file=s.source, reason=s.reason) for s in results.skipped])


def _csv_text(results):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator='\n')
    writer.writeheader()
    for p in results.predictions:
        for r, (c, n, prob) in enumerate(zip(p.classes, p.names, p.probabilities)):
            writer.writerow({'file': p.source, 'rank': r + 1, 'class': c,
                             'name': '' if n is None else n, 'probability': repr(prob),
                             'reason': ''})
    for s in results.skipped:
        writer.writerow({'file': s.source, 'reason': s.reason})
    return buf.getvalue()


def write_results(path, results, model_info, top_k):
    """Writes ``results`` to ``path`` (atomically) as JSON or CSV, by its extension."""
    if output_format(path) == 'json':
        text = json.dumps(results_dict(results, model_info, top_k), indent=1) + '\n'
    else:
        text = _csv_text(results)
    return atomic_write_text(path, text)


def format_table(results):
    """The predictions as a text table: the file on its first row, then one row per rank."""
    if not results.predictions:
        return 'no image classified'
    width = max(4, max(len(p.source) for p in results.predictions))
    name_width = max([4] + [len(n) for p in results.predictions for n in p.names if n])
    head = '%-*s  %4s  %5s  %-*s  %11s' % (width, 'file', 'rank', 'class', name_width, 'name',
                                           'probability')
    lines = [head]
    for p in results.predictions:
        for r, (c, n, prob) in enumerate(zip(p.classes, p.names, p.probabilities)):
            lines.append('%-*s  %4d  %5d  %-*s  %10.2f%%' % (
                width, p.source if r == 0 else '', r + 1, c, name_width,
                '-' if n is None else n, 100.0 * prob))
    return '\n'.join(lines)
