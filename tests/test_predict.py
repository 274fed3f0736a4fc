"""tools/predict.py and engine.prediction: image files predict exactly as their records are
evaluated, through a run directory, its export and a converted official checkpoint; bad files
are listed and skipped; --pictures and --out (JSON, CSV) write what they say.

The reference is the evaluation network on the val iterator's batch (the logits that
``validate`` scores: TASN's master_aux head of the five-head network, the exported graph's
output, the baseline's). The files hold the exact JPEG bytes of val.rec, so the preprocessing
is bit-identical (tests/test_data_preprocess.py) and only the float32 rounding of the network
can differ: the predictor runs TASN's inference view (one backbone pass over the structure half
instead of over both halves), other batch sizes and another process, which reorders float32
sums. Bound: every logit within LOGIT_TOL = 64 float32 eps of the logits' scale max|z|
(measured: up to ~7 eps); then each probability is within a factor exp(+-2 LOGIT_TOL) of the
reference softmax (p_k = e^z_k / sum_j e^z_j, numerator and denominator each move by at most
e^LOGIT_TOL), and the top-1 class is the same wherever the reference's top-1 margin exceeds
2 LOGIT_TOL (asserted: it holds for every image here). The legacy sampler of the converted
official checkpoint makes an image's logits depend on the image before it in its batch (the
official kernel's C[-1]); there the files are predicted in the same batch as the reference, and
the dependence itself is checked (alone, the second image moves far beyond the bound).
"""
import csv
import json
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.data import get_val_iter, read_dataset_info
from tasn_gluon.engine.evaluation import evaluate_checkpoint
from tasn_gluon.engine.models import check_classes, load_model
from tasn_gluon.errors import ModelMismatch
from tasn_gluon.engine.prediction import Predictor, softmax
from conftest import fabricate, official_parameters, val_records

EPS32 = float(np.finfo(np.float32).eps)
LOGIT_EPS = 64


@pytest.fixture(scope='module')
def val_files(tiny_synthetic, tmp_path_factory):
    """The val records' JPEG bytes as files ``NN.jpg`` (record order), and their labels."""
    folder = tmp_path_factory.mktemp('val_files')
    paths, labels = [], []
    for i, (data, label) in enumerate(val_records(tiny_synthetic)):
        path = str(folder / ('%02d.jpg' % i))
        with open(path, 'wb') as f:
            f.write(data)
        paths.append(path)
        labels.append(label)
    return str(folder), paths, labels


@pytest.fixture(scope='module')
def exported(trained_runs, tmp_path_factory):
    from symbols.export import export_checkpoint
    prefix = str(tmp_path_factory.mktemp('export') / 'tasn')
    export_checkpoint(trained_runs['tasn'], prefix)
    return prefix + '-symbol.json'


def eval_logits(checkpoint, data_dir, input_size, count=None):
    """The evaluation network's logits on the val iterator's batches (first ``count`` images)."""
    model = load_model(checkpoint, [mx.cpu()])
    net = model.net.with_attention_stats() if model.kind == 'tasn' else model.net
    out = []
    for b in get_val_iter(data_dir, count or 12, input_size, num_threads=1):
        x = b.data[0].as_in_context(mx.cpu())
        logits = net(x)
        logits = logits[4] if model.kind == 'tasn' else logits   # master_aux
        out.append(logits.asnumpy()[:x.shape[0] - b.pad])
        if count:
            break
    return np.concatenate(out)[:count]


def check_against_reference(classes, probs, ref_logits):
    """``classes``/``probs`` (per image, most probable first) against the reference logits, by
    the bound of the module docstring."""
    tol = LOGIT_EPS * EPS32 * float(np.abs(ref_logits).max())
    ref = softmax(ref_logits)
    for i, (c, p) in enumerate(zip(classes, probs)):
        top2 = np.sort(ref_logits[i])[-2:]
        assert top2[1] - top2[0] > 2 * tol, 'near tie in image %d: the test cannot decide' % i
        assert c[0] == int(np.argmax(ref_logits[i])), i
        expected = ref[i, c]
        np.testing.assert_array_less(np.abs(np.asarray(p) - expected),
                                     np.expm1(2 * tol) * expected + 1e-300)
        assert list(p) == sorted(p, reverse=True)


def read_csv_results(path):
    """{file: (classes, names, probabilities)}, {file: reason} of a --out CSV."""
    preds, skipped = {}, {}
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            if row['reason']:
                skipped[row['file']] = row['reason']
                continue
            c, n, p = preds.setdefault(row['file'], ([], [], []))
            assert int(row['rank']) == len(c) + 1
            c.append(int(row['class']))
            n.append(row['name'])
            p.append(float(row['probability']))
    return preds, skipped


@pytest.mark.parametrize('source', ['run', 'export'])
def test_files_predict_as_eval_scores_them(source, tiny_synthetic, trained_runs, exported,
                                           val_files, tmp_path, tool):
    checkpoint = trained_runs['tasn'] if source == 'run' else exported
    folder, paths, labels = val_files
    out = str(tmp_path / ('results.json' if source == 'run' else 'results.csv'))
    done = tool('predict', '--checkpoint', checkpoint, folder, '--top-k', 10,
                '--batch-size', 5, '--out', out)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ['wrote %s' % out]     # no progress bar: not a tty
    names = read_dataset_info(tiny_synthetic)['class_names']
    if source == 'run':
        doc = json.load(open(out))
        assert doc['model']['kind'] == 'tasn' and doc['top_k'] == 10 and doc['skipped'] == []
        files = [p['file'] for p in doc['predictions']]
        classes = [[t['class'] for t in p['top']] for p in doc['predictions']]
        probs = [[t['probability'] for t in p['top']] for p in doc['predictions']]
        got_names = [[t['name'] for t in p['top']] for p in doc['predictions']]
        assert all([t['rank'] for t in p['top']] == [1, 2, 3, 4] for p in doc['predictions'])
    else:
        preds, skipped = read_csv_results(out)
        assert skipped == {}
        files = list(preds)
        classes, got_names, probs = ([preds[f][j] for f in files] for j in range(3))
    assert files == paths                                   # every file, in order
    assert all(len(c) == 4 and sorted(c) == [0, 1, 2, 3] for c in classes)  # k <= classes
    assert all(n == [names[c] for c in cs] for n, cs in zip(got_names, classes))
    np.testing.assert_allclose([sum(p) for p in probs], 1.0, rtol=1e-12)
    check_against_reference(classes, probs, eval_logits(checkpoint, tiny_synthetic, 64))
    # the evaluation's accuracy is the predictions' accuracy on the files
    res = evaluate_checkpoint(checkpoint, tiny_synthetic, [mx.cpu()], batch_size=12)
    assert res['top1'] == np.mean([c[0] == y for c, y in zip(classes, labels)])
    table = done.stdout.splitlines()
    assert table[0].split() == ['file', 'rank', 'class', 'name', 'probability']
    assert len(table) == 1 + 4 * len(paths) and table[1].startswith(paths[0])


@pytest.mark.slow
def test_converted_official_checkpoint(tiny_synthetic, val_files, tmp_path, tool):
    """A fabricated official-format checkpoint (200 classes, ResNet-50, 512 px), converted into
    a run directory, on two images; --class-names names its classes."""
    from tasn_gluon.convert import convert_official
    from tasn_gluon.data.preprocess import load_val_image
    official = str(tmp_path / 'tasn-0300.params')
    mx.nd.save(official, {k: mx.nd.array(v) for k, v in fabricate(official_parameters()).items()})
    run = str(tmp_path / 'official_run')
    convert_official(official, run)
    os.remove(official)
    names_file = tmp_path / 'names.txt'
    names_file.write_text(''.join('bird %03d\n' % i for i in range(200)))
    _, paths, _ = val_files
    out = str(tmp_path / 'official.json')
    done = tool('predict', '--checkpoint', run, paths[0], paths[1], '--out', out,
                '--class-names', names_file)
    assert done.returncode == 0, done.stderr
    doc = json.load(open(out))
    assert doc['model']['input_size'] == 512 and doc['model']['num_classes'] == 200
    classes = [[t['class'] for t in p['top']] for p in doc['predictions']]
    probs = [[t['probability'] for t in p['top']] for p in doc['predictions']]
    assert [p['file'] for p in doc['predictions']] == paths[:2]
    assert all(len(c) == 5 for c in classes)                # the default top-k
    assert all([t['name'] for t in p['top']] == ['bird %03d' % c for c in cs]
               for p, cs in zip(doc['predictions'], classes))
    ref = eval_logits(run, tiny_synthetic, 512, count=2)
    check_against_reference(classes, probs, ref)
    # the legacy sampler's batch defect, reproduced as eval does and announced: the second
    # image alone (first of its pass) is sampled with another first row and column
    assert 'legacy (official) sampler' in done.stderr
    pred = Predictor.from_checkpoint(run)
    assert pred.legacy_sampler and pred.class_names is None   # the model names no class
    x = np.stack([load_val_image(p, 512) for p in paths[:2]])
    tol = LOGIT_EPS * EPS32 * float(np.abs(ref).max())
    assert np.abs(pred.logits(x) - ref).max() <= tol
    assert np.abs(pred.logits(x[1:]) - ref[1]).max() > 10 * tol
    with pytest.raises(ModelMismatch, match='200 classes'):
        Predictor.from_checkpoint(run, class_names=['a', 'b'])


def test_bad_files_are_listed_and_skipped(trained_runs, val_files, tmp_path, tool):
    _, paths, _ = val_files
    folder = tmp_path / 'mixed'
    (folder / 'sub').mkdir(parents=True)
    good = [str(folder / 'a.jpg'), str(folder / 'sub' / 'b.jpg')]
    for src, dst in zip(paths, good):
        with open(src, 'rb') as f, open(dst, 'wb') as g:
            g.write(f.read())
    (folder / 'fake.jpg').write_text('not a picture\n')        # found by its extension
    (folder / 'readme.txt').write_text('ignored: not an image extension\n')
    data = open(paths[2], 'rb').read()
    (folder / 'cut.jpg').write_bytes(data[:len(data) // 2])
    notes = tmp_path / 'notes.txt'
    notes.write_text('given explicitly\n')
    missing = str(tmp_path / 'missing.jpg')
    out = str(tmp_path / 'r.json')
    done = tool('predict', '--checkpoint', trained_runs['baseline'], str(folder), str(notes),
                missing, str(tmp_path / 'nothing*.png'), paths[3], '--top-k', 2,
                '--batch-size', 2, '--out', out)
    assert done.returncode == 4, done.stderr             # done in part
    reasons = {str(folder / 'cut.jpg'): 'truncated JPEG',
               str(folder / 'fake.jpg'): 'not a decodable image',
               str(notes): 'not a decodable image',
               missing: 'cannot read: No such file or directory',
               str(tmp_path / 'nothing*.png'): 'no file matches this pattern'}
    for f, why in reasons.items():
        assert 'skipped %s: %s' % (f, why) in done.stderr
    assert 'Traceback' not in done.stderr and '5 input(s) skipped, 3 image(s) classified' \
        in done.stderr
    doc = json.load(open(out))
    assert {s['file']: s['reason'][:len(reasons[s['file']])] for s in doc['skipped']} == reasons
    files = [p['file'] for p in doc['predictions']]
    assert files == [good[0], good[1], paths[3]]           # folder files sorted, then the rest
    for p in doc['predictions']:
        assert len(p['top']) == 2 and p['top'][0]['probability'] >= p['top'][1]['probability']
    assert all(f in done.stdout for f in files) and 'readme' not in done.stdout + done.stderr


def _panels(picture):
    """[(x0, x1, y0, y1)] of the picture's image panels: column runs wider than 20 px where
    most pixels of the middle rows are not white, and their rows."""
    dense = picture.min(axis=2) < 235
    h = dense.shape[0]

    def runs(mask):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
        return [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a > 20]
    out = []
    for x0, x1 in runs(dense[h // 4:3 * h // 4].mean(axis=0) > 0.5):
        (y0, y1), = runs(dense[:, x0:x1].mean(axis=1) > 0.5)
        out.append((x0, x1, y0, y1))
    return out


def test_pictures(trained_runs, exported, val_files, tmp_path, tool):
    _, paths, _ = val_files
    pics = str(tmp_path / 'pics')
    out = str(tmp_path / 'r.json')
    done = tool('predict', '--checkpoint', trained_runs['tasn'], paths[0], paths[4], paths[9],
                '--pictures', pics, '--batch-size', 2, '--out', out)
    assert done.returncode == 0, done.stderr
    names = ['0000_00.png', '0001_04.png', '0002_09.png']
    assert sorted(os.listdir(pics)) == names
    doc = json.load(open(out))
    assert [p['picture'] for p in doc['predictions']] == [os.path.join(pics, n) for n in names]
    for name, src in zip(names, (paths[0], paths[4], paths[9])):
        pic = cv2.imread(os.path.join(pics, name), cv2.IMREAD_COLOR)
        assert pic is not None and 3.5 < pic.shape[1] / pic.shape[0] < 4.5   # one row of 4
        panels = _panels(pic)
        # input, structure map, structure-preserved image: square pictures; the profiles
        # (lines, not a dense picture) between the map and the zoomed image
        assert len(panels) == 3, panels
        assert all(abs((x1 - x0) - (y1 - y0)) <= 3 for x0, x1, y0, y1 in panels)
        assert panels[2][0] - panels[1][1] > 1.5 * (panels[1][0] - panels[0][1])
        assert (pic[:panels[0][2] // 2].min(axis=2) < 100).sum() > 100    # the title text
        # the first panel is this image (the 96 px records are square: the crop is all of it)
        x0, x1, y0, y1 = panels[0]
        shown = cv2.resize(pic[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA)
        image = cv2.resize(cv2.imread(src), (48, 48), interpolation=cv2.INTER_AREA)
        other = cv2.resize(cv2.imread(paths[1 if src != paths[1] else 2]), (48, 48),
                           interpolation=cv2.INTER_AREA)
        same = np.corrcoef(shown.ravel(), image.ravel())[0, 1]
        assert same > 0.8 and same > np.corrcoef(shown.ravel(), other.ravel())[0, 1] + 0.3
    for checkpoint, what in ((trained_runs['baseline'], 'a baseline model'),
                             (exported, 'an exported graph')):
        refused = str(tmp_path / 'refused')
        done = tool('predict', '--checkpoint', checkpoint, paths[0], '--pictures', refused)
        assert done.returncode == 2 and what in done.stderr
        assert 'there is no attention to draw' in done.stderr and 'Traceback' not in done.stderr
        assert not os.path.exists(refused) and done.stdout == ''


def test_api_paths_decoded_images_and_arrays(trained_runs, tiny_synthetic, val_files):
    """One model, three kinds of input, the same predictions; errors are named."""
    _, paths, _ = val_files
    pred = Predictor.from_checkpoint(trained_runs['tasn'])
    assert pred.kind == 'tasn' and pred.input_size == 64 and pred.num_classes == 4
    by_path = pred.predict(paths, top_k=3, batch_size=12)
    decoded = [mx.image.imdecode(open(p, 'rb').read()) for p in paths]
    by_image = pred.predict(decoded, top_k=3, batch_size=12)
    batch = next(iter(get_val_iter(tiny_synthetic, 12, 64, num_threads=1))).data[0]
    by_array = pred.predict(batch, top_k=3, batch_size=12)
    assert [p.source for p in by_path.predictions] == paths
    assert [p.source for p in by_image.predictions] == ['image[%d]' % i for i in range(12)]
    assert [p.source for p in by_array.predictions] == ['array[%d]' % i for i in range(12)]
    for other in (by_image, by_array):   # bit-identical inputs, one batch: identical outputs
        assert [(p.classes, p.probabilities) for p in other.predictions] == \
            [(p.classes, p.probabilities) for p in by_path.predictions]
    assert by_path.skipped == [] and len(by_path.predictions[0].classes) == 3
    seen = []
    pred.predict(paths[:5], batch_size=2, on_batch=lambda x, b: seen.append((x.shape, len(b))))
    assert seen == [((2, 3, 64, 64), 2), ((2, 3, 64, 64), 2), ((1, 3, 64, 64), 1)]
    with pytest.raises(ValueError, match=r'\(N, 3, 64, 64\)'):
        pred.predict(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match='top_k'):
        pred.predict(paths, top_k=0)
    with pytest.raises(ValueError, match='input 0 is a int'):
        pred.predict([3])
    with pytest.raises(ModelMismatch, match='name their classes differently'):
        Predictor.from_checkpoint(trained_runs['tasn'], class_names=['w', 'x', 'y', 'z'])


def test_class_names_that_differ_only_in_length_are_named():
    """Names that agree as far as both go but differ in count (a model whose num_classes is
    not recorded) are refused with both counts, not an IndexError."""
    class Model:
        num_classes, class_names = None, ['w', 'x', 'y']
        source = dict(checkpoint='m.params')
    with pytest.raises(ModelMismatch, match=r'names 3 classes and data/ 4'):
        check_classes(Model(), 4, ['w', 'x', 'y', 'z'], 'data/')
    check_classes(Model(), 3, ['w', 'x', 'y'], 'data/')


def test_bad_arguments_and_help(trained_runs, val_files, tmp_path, tool):
    _, paths, _ = val_files
    done = tool('predict', '--checkpoint', tmp_path / 'nowhere', paths[0])
    assert done.returncode == 2 and 'no such file or folder' in done.stderr
    bad_out = str(tmp_path / 'results.txt')
    done = tool('predict', '--checkpoint', trained_runs['tasn'], paths[0], '--out', bad_out)
    assert done.returncode == 2 and 'must end in .csv or .json' in done.stderr
    assert not os.path.exists(bad_out) and 'Traceback' not in done.stderr
    done = tool('predict', '--checkpoint', trained_runs['tasn'], paths[0], '--top-k', '0')
    assert done.returncode == 2 and '--top-k' in done.stderr
    done = tool('predict', '--help')
    assert done.returncode == 0 and '(default: None)' not in done.stdout
    assert 'Classify image files with a checkpoint: the top-k classes, their names and ' \
        'probabilities.' in done.stdout.splitlines()
    for flag in ('--top-k TOP_K classes listed per image (default 5)',
                 'images per forward pass (default 16)', 'empty (default) for CPU'):
        assert flag in ' '.join(done.stdout.split()), flag
