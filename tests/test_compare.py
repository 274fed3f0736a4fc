"""tools/compare.py and data/published_results.csv."""
import json

import pytest

from tasn_gluon.reports.compare import compare_table, read_published, table_dataset

CUB = dict(dataset='cub', num_classes=200, num_train=5994, num_val=5794)


def test_published_table_has_spec_values_with_sources():
    rows = read_published()
    vals = {(r['dataset'], r['setting']): r for r in rows}
    got = sorted((r['dataset'], r['top1']) for r in rows if r['top1'] is not None)
    assert got == sorted([('cub', 87.9), ('cub', 87.0), ('cub', 88.0), ('cub', 87.02),
                          ('cars', 93.8), ('inat', 68.2)])
    assert all(r['source'].strip() for r in rows)
    assert any(r['top1'] is None and r['net'] == 'vgg19' for r in rows)  # empty slots
    assert vals[('cub', 'official code, ResNet-50, sampled 336')]['sample_size'] == 336


def test_compare_cli_table(tmp_path, tool):
    ours = dict(CUB, method='tasn', net='resnet50', sample_size=224, top1=0.8654,
                master_aux=0.8654, num_images=5794)
    mine = tmp_path / 'cub_r50.json'
    mine.write_text(json.dumps(ours))
    syn = tmp_path / 'syn.json'
    syn.write_text(json.dumps(dict(method='baseline', net='resnet18', dataset='synthetic',
                                   sample_size=64, top1=0.25, num_images=80)))
    md = tmp_path / 'table.md'
    done = tool('compare', mine, syn, '--out', md)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.strip() == md.read_text().strip()
    lines = out.splitlines()
    row = [l for l in lines if l.startswith('| official code, ResNet-50, sampled 224 |')][0]
    assert '| 87.0 | official README (model cub_224_87) | 86.54 | -0.46 | cub_r50 |' in row
    row336 = [l for l in lines if 'sampled 336' in l][0]
    assert row336.endswith('|  |  |  |')       # no 336 run: ours and the difference empty
    vgg = [l for l in lines if 'VGG-19' in l][0]
    assert vgg.startswith('| TASN, VGG-19 (paper) |  |')    # an empty slot stays empty
    assert '### synthetic (built-in)' in out and '| 25.00 |' in out
    assert 'Stanford Cars' not in out
    done = tool('compare', mine, '--all')
    assert done.returncode == 0 and '| TASN, ResNet-50 (paper) | 93.8 |' in done.stdout


def test_a_toy_set_in_a_published_layout_is_custom(tmp_path):
    """A 4-class CUB-layout toy set is not CUB-200-2011: listed as custom data, not beside
    87.9."""
    toy = dict(dataset='cub', num_classes=4, num_train=24, num_val=12, method='tasn',
               net='resnet50', sample_size=224, top1=0.5, label='toy')
    assert table_dataset(toy) == 'custom' and table_dataset(dict(CUB)) == 'cub'
    assert table_dataset(dict(CUB, num_train=5993)) == 'custom'
    assert table_dataset(dict(dataset='cub')) == 'custom'     # no counts: cannot be told
    table = compare_table([toy], read_published())
    assert '87.9' not in table and '### custom data' in table
    assert '| ours: tasn, resnet50, sampled 224, cub layout, 4 classes, 24 train / 12 val ' \
           'images |  |  | 50.00 |  | toy |' in table


def test_compare_errors(tmp_path, tool):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"foo": 1}')
    done = tool('compare', bad)
    assert done.returncode == 2 and 'not an eval JSON' in done.stderr
    pub = tmp_path / 'pub.csv'
    pub.write_text('dataset,setting,method,net,sample_size,top1,source\ncub,x,tasn,,,86.0,\n')
    with pytest.raises(ValueError, match='without a source'):
        read_published(str(pub))
    table = compare_table([dict(CUB, method='tasn', top1=0.5, label='a')], read_published())
    assert '| 87.9 |' in table
