"Tokenization: the fast path gives the plain path's tokens, workers give the parent's, the cache skips work, memory stays bounded."
import json, os, re, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fitlam.tokenizer as T
import fitlam.workers as W
from fitlam.core import FitlamError
from fitlam.corpus import CSVSource, FileSource, LineSource, tokenize_corpus
from fitlam.tokenizer import (Tokenizer, fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces, replace_all_caps,
                              replace_maj, lowercase, replace_space)
from fitlam.testing import synth_corpus, tricky_texts

DATA = Path(os.environ.get('FITLAM_DATA', Path(__file__).resolve().parent.parent.parent/'shared'/'data'))
IMDB = DATA/'imdb'/'train.csv'
needs_imdb = pytest.mark.skipif(not IMDB.exists(), reason=f'{IMDB} not found (set FITLAM_DATA)')


@pytest.fixture(scope='module')
def imdb_texts():
    return pd.read_csv(IMDB, nrows=3000).text.tolist()


def fastai_rules():
    "fastai's rules exactly as fastai writes them (regexes only, no fast paths)."
    def rep(t): return re.sub(r'(\S)(\1{2,})', lambda m: f' xxrep {len(m.group(2)) + 1} {m.group(1)} ', t)
    def wrep(t): return re.sub(r'(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)',
                               lambda m: f' xxwrep {len(m.group(2).split()) + 2} {m.group(1)} {m.group(3)}', t)
    def spec(t): return re.sub(r'([/#\\])', r' \1 ', t)
    def useless(t): return re.sub(' {2,}', ' ', t)
    return [(replace_rep, rep), (replace_wrep, wrep), (spec_add_spaces, spec), (rm_useless_spaces, useless)]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_rules_give_fastais_text(seed):
    texts = [fix_html(t) for t in tricky_texts(2000, seed=seed)] + ['a a a b', 'x  y', 'Oh oh oh. no no no', 'aaa bbb']
    for ours, theirs in fastai_rules():
        assert [ours(t) for t in texts] == [theirs(t) for t in texts], ours.__name__


@needs_imdb
def test_rules_give_fastais_text_on_imdb(imdb_texts):
    texts = [replace_rep(fix_html(t)) for t in imdb_texts]
    for ours, theirs in fastai_rules():
        assert [ours(t) for t in texts] == [theirs(t) for t in texts], ours.__name__


RULE_SETS = {
    'default': None,
    'no post-rules, no lowercase': ([fix_html, replace_all_caps, replace_maj], []),
    'nothing fused': ([replace_rep, rm_useless_spaces], [replace_space]),
    'caps only': ([fix_html, replace_rep, replace_all_caps, lowercase], None),
}

@pytest.mark.parametrize('rules', list(RULE_SETS))
@pytest.mark.parametrize('seed', [3, 4])
def test_fast_path_is_the_plain_path_on_tricky_text(rules, seed):
    r = RULE_SETS[rules]
    tok = Tokenizer() if r is None else Tokenizer(rules=r[0], post_rules=r[1])
    texts = tricky_texts(1500, seed=seed)
    assert tok.tokenize(texts) == [tok.reference(t) for t in texts]


@needs_imdb
def test_fast_path_is_the_plain_path_on_imdb(imdb_texts):
    tok = Tokenizer()
    fast = tok.tokenize(imdb_texts)
    assert fast == [tok.reference(t) for t in imdb_texts]
    assert sum(map(len, fast)) > 800_000                        # it did tokenize real reviews


def test_workers_give_the_parents_tokens(tmp_path):
    texts = tricky_texts(800, seed=6) + synth_corpus(800, seed=6).text.tolist()
    local = tokenize_corpus(texts, cache_dir=tmp_path/'a', n_workers=0, chunk_chars=20_000)
    par = tokenize_corpus(texts, cache_dir=tmp_path/'b', n_workers=2, chunk_chars=20_000)
    assert [par.doc_tokens(i) for i in range(par.n_docs)] == [local.doc_tokens(i) for i in range(local.n_docs)]
    assert par.counter() == local.counter()
    assert par.n_docs == len(texts) and par.offsets[-1] == par.n_tokens


def test_cache_hit_starts_no_worker(tmp_path, monkeypatch):
    df = synth_corpus(2000, seed=1)
    df.to_csv(tmp_path/'c.csv', index=False)
    first = tokenize_corpus(CSVSource(tmp_path/'c.csv'), cache_dir=tmp_path/'cache', n_workers=2, chunk_chars=30_000)
    assert not first.from_cache
    def no_workers(*a, **k): raise AssertionError('tokenized again')
    monkeypatch.setattr(W, '_Workers', no_workers)
    monkeypatch.setattr(T._Encoder, 'encode', no_workers)
    again = tokenize_corpus(CSVSource(tmp_path/'c.csv'), cache_dir=tmp_path/'cache', n_workers=2, chunk_chars=30_000)
    assert again.from_cache and again.path == first.path
    assert np.array_equal(np.asarray(again.tokens), np.asarray(first.tokens))
    # a copy of the file elsewhere is the same content: still a hit
    (tmp_path/'copy').mkdir(); (tmp_path/'copy'/'c.csv').write_bytes((tmp_path/'c.csv').read_bytes())
    assert tokenize_corpus(CSVSource(tmp_path/'copy'/'c.csv'), cache_dir=tmp_path/'cache').from_cache


def test_memory_does_not_grow_with_the_corpus(tmp_path):
    "The source is read lazily: when chunk i is written, at most 2 chunks per worker beyond it have been read."
    read, worst = [0], [0]
    def texts():
        for i in range(60):
            read[0] += 1
            yield ('texts', [f'Document {i} says hello {j} times.' for j in range(50)], 1500)
    written = [0]
    def on_chunk(ids, lens, itos):
        written[0] += 1
        worst[0] = max(worst[0], read[0] - written[0])
    W._run(texts(), Tokenizer(), 2, on_chunk, progress=False)
    assert written[0] == 60
    assert worst[0] <= 2 * 2 + 1, worst[0]


def test_a_bad_file_fails_cleanly(tmp_path):
    files = []
    for i in range(30):
        f = tmp_path/f'{i:02d}.txt'
        f.write_bytes('caf\xe9'.encode('latin-1') if i == 17 else f'Review number {i}. Fine.'.encode())
        files.append(f)
    with pytest.raises(FitlamError, match='17.txt: not a UTF-8 text file'):
        tokenize_corpus(FileSource(files), cache_dir=tmp_path/'cache', n_workers=2, chunk_chars=50)
    assert not any((tmp_path/'cache').iterdir())                 # no entry, no temporary folder
    children = subprocess.run(['ps', '--ppid', str(os.getpid()), '-o', 'cmd='], capture_output=True, text=True).stdout
    assert '_worker_main' not in children and 'fitlam.workers' not in children


def test_a_crashed_worker_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(W, '_WORKER_BOOT', 'import sys; sys.stderr.write("boom at start"); sys.exit(3)')
    with pytest.raises(FitlamError, match=r'(?s)tokenizer worker \d died \(exit status 3\).*boom at start'):
        W._run(iter([('texts', ['a'], 1), ('texts', ['b'], 1)]), Tokenizer(), 2, lambda *a: None, progress=False)


def test_line_source_streams_a_corpus(tmp_path):
    lines = synth_corpus(500, seed=2).text.tolist()
    (tmp_path/'a.txt').write_text('\n\n'.join(lines[:250]) + '\n')
    (tmp_path/'b.txt').write_text('\n'.join(lines[250:]))
    c = tokenize_corpus(LineSource([tmp_path/'a.txt', tmp_path/'b.txt']), cache_dir=tmp_path/'cache', chunk_chars=5000)
    assert c.n_docs == 500
    assert c.doc_tokens(300) == Tokenizer()(lines[300])


def test_config_rebuilds_the_tokenizer_without_data(tmp_path):
    "An exported model stores `to_config()`; a fresh process rebuilds the same tokenizer from the JSON alone."
    tok = Tokenizer(rules=[fix_html, replace_rep, lowercase])
    (tmp_path/'tok.json').write_text(json.dumps(tok.to_config()))
    code = textwrap.dedent(f'''
        import json
        from fitlam.tokenizer import Tokenizer
        tok = Tokenizer.from_config(json.load(open({str(tmp_path/'tok.json')!r})))
        print(json.dumps(tok('Sooooo GOOD <br />!')))
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == tok('Sooooo GOOD <br />!')
