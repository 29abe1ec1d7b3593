"Downloads over file:// and a local HTTP server, conversion to label/text frames, the cache, $FITLAM_DATA, and the shared split."
import ast, csv, hashlib, http.server, os, re, tarfile, threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from fitlam.core import FitlamError
from fitlam import download as dl
from fitlam.download import (REGISTRY, Remote, convert_dataset, download, get_corpus, get_dataset, make_fake_sources,
                             split_valid)

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get('FITLAM_DATA') or ROOT.parent/'shared'/'data')
needs_shared = pytest.mark.skipif(not (SHARED/'trec6'/'train.csv').exists(), reason=f'no shared data at {SHARED}')
PEER_CHECKS = Path('/tmp/fitlam-peer-venv/lib/python3.11/site-packages/fastai/data/download_checks.py')


def files_in(folder: Path) -> list[str]:
    "Every file under `folder`, relative and sorted, lock files left out."
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file() and not p.name.endswith('.lock'))


@pytest.fixture
def env(tmp_path, monkeypatch):
    "A fresh FITLAM_HOME, no FITLAM_DATA."
    monkeypatch.setenv('FITLAM_HOME', str(tmp_path/'home'))
    monkeypatch.delenv('FITLAM_DATA', raising=False)
    return tmp_path/'home'


@pytest.fixture
def fake(tmp_path, monkeypatch, env):
    "The fake archives as file:// URLs, swapped into the registry."
    entries = make_fake_sources(tmp_path/'src')
    for name, res in entries.items(): monkeypatch.setitem(REGISTRY, name, res)
    return SimpleNamespace(src=tmp_path/'src', entries=entries, home=env)


@pytest.fixture
def server(tmp_path, monkeypatch, env):
    "The fake archives served by an HTTP server on localhost that records each GET, swapped into the registry."
    src, requests = tmp_path/'served', []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs): super().__init__(*args, directory=str(src), **kwargs)
        def log_message(self, *args): pass
        def do_GET(self):
            requests.append(self.path)
            if self.path.startswith('/truncated/'):  # announce more bytes than are sent, then hang up
                data = (src/self.path.split('/')[-1]).read_bytes()
                self.send_response(200); self.send_header('Content-Length', str(len(data))); self.end_headers()
                self.wfile.write(data[:len(data) // 2]); self.close_connection = True
            else: super().do_GET()

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    base = f'http://127.0.0.1:{httpd.server_address[1]}'
    entries = make_fake_sources(src, base_url=base)
    for name, res in entries.items(): monkeypatch.setitem(REGISTRY, name, res)
    yield SimpleNamespace(base=base, src=src, requests=requests, entries=entries, home=env)
    httpd.shutdown(); httpd.server_close(); thread.join()


# --- the registry -------------------------------------------------------------------------------

def test_registry_has_the_ulmfit_datasets_and_weights():
    assert {'imdb', 'trec6', 'ag_news', 'dbpedia', 'yelp_polarity', 'yelp_full', 'wt103_fwd', 'wt103_bwd'} <= set(REGISTRY)
    assert REGISTRY['trec6'].remotes[0] == Remote('https://cogcomp.seas.upenn.edu/Data/QA/QC/train_5500.label',
                                                  335_858, '073462e3fcefaae31e00edb1f18d2d02',
                                                  sha256='9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3')
    assert REGISTRY['wt103_fwd'].remotes[0].url == 'https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz'
    assert REGISTRY['wt103_bwd'].remotes[0].url == 'https://s3.amazonaws.com/fast-ai-modelzoo/wt103-bwd.tgz'


@pytest.mark.skipif(not PEER_CHECKS.exists(), reason='fastai (the peer) is not installed')
def test_registry_checksums_are_fastais():
    "Every fastai-hosted file has the size and first-MiB md5 that fastai 2.8.12 records for it."
    checks = ast.literal_eval(PEER_CHECKS.read_text())
    fastai_hosted = [m for r in REGISTRY.values() for m in r.remotes if m.url in checks]
    assert len(fastai_hosted) == 5  # imdb, ag_news, dbpedia, yelp x2 (the WT103 weights are not in fastai's checks)
    for m in fastai_hosted:
        assert (m.size, m.md5, m.md5_bytes) == (*checks[m.url], 2**20), m.url


def test_first_mib_md5_matches_fastais_definition(tmp_path):
    "fastai's check is (size, md5 of the first MiB): a file that differs after its first MiB still matches."
    import hashlib
    a, b = tmp_path/'a.bin', tmp_path/'b.bin'
    a.write_bytes(b'x' * (2**20 + 10)); b.write_bytes(b'x' * 2**20 + b'y' * 10)
    remote = Remote('file:///a.bin', a.stat().st_size, hashlib.md5(b'x' * 2**20).hexdigest(), md5_bytes=2**20)
    assert dl._file_matches(remote, a) and dl._file_matches(remote, b)
    assert not dl._file_matches(replace(remote, md5_bytes=None), a)


# --- download ---------------------------------------------------------------------------------

def test_file_url_download_extracts_the_archive(fake, tmp_path):
    path = download('imdb', progress=False)
    assert path == fake.home/'data'/'imdb'
    with tarfile.open(fake.src/'imdb.tgz') as t:
        members = {m.name.removeprefix('aclImdb/'): t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    assert files_in(path) == sorted(members)          # unwrapped: no aclImdb/ level
    assert all((path/name).read_bytes() == data for name, data in members.items())
    assert files_in(path.parent) == [f'imdb/{m}' for m in sorted(members)]  # no archive or temp folder left


def test_http_download_and_cache_hit(server):
    path = download('ag_news', progress=False)
    assert server.requests == ['/ag_news_csv.tgz']
    assert sorted(p.name for p in path.iterdir()) == ['classes.txt', 'readme.txt', 'test.csv', 'train.csv']
    assert download('ag_news', progress=False) == path
    assert len(server.requests) == 1                  # the second call does not download
    download('ag_news', progress=False, force=True)
    assert len(server.requests) == 2                  # force does


def test_http_progress_bar_and_kept_archive(server):
    path = download('trec6', keep_archive=True)       # with the progress bar (plain files: nothing to keep)
    assert (path/'train_5500.label').read_bytes() == (server.src/'train_5500.label').read_bytes()
    download('yelp_polarity', progress=False, keep_archive=True)
    assert (server.home/'data'/'yelp_review_polarity_csv.tgz').read_bytes() == (server.src/'yelp_review_polarity_csv.tgz').read_bytes()
    import shutil; shutil.rmtree(server.home/'data'/'yelp_polarity')
    n = len(server.requests)
    download('yelp_polarity', progress=False)          # re-extracted from the verified kept archive
    assert len(server.requests) == n and not (server.home/'data'/'yelp_review_polarity_csv.tgz').exists()


def test_concurrent_downloads_fetch_once(server):
    results, errors = [], []
    def get():
        try: results.append(download('imdb', progress=False))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and len(set(results)) == 1
    assert server.requests == ['/imdb.tgz']


@pytest.mark.parametrize('field,value,message', [
    ('md5', '0' * 32, 'md5 {md5}, expected 00000000000000000000000000000000'),
    ('size', 12345, 'size {size:,} bytes, expected 12,345'),
])
def test_checksum_mismatch_names_url_and_values_and_leaves_nothing(server, monkeypatch, field, value, message):
    good = server.entries['imdb'].remotes[0]
    monkeypatch.setitem(REGISTRY, 'imdb', replace(server.entries['imdb'], remotes=(replace(good, **{field: value}),)))
    with pytest.raises(FitlamError) as e: download('imdb', progress=False)
    msg = str(e.value)
    assert msg.startswith(f'{server.base}/imdb.tgz: checksum mismatch')
    assert message.format(md5=good.md5, size=good.size) in msg and 'deleted' in msg
    assert files_in(server.home/'data') == []


def test_truncated_transfer_is_an_error_and_leaves_nothing(server, tmp_path):
    (server.src/'truncated').mkdir()
    with pytest.raises(FitlamError, match=r'truncated/imdb.tgz: download truncated: got [\d,]+ of the [\d,]+ bytes'):
        download(f'{server.base}/truncated/imdb.tgz', dest=tmp_path/'d', progress=False)
    assert files_in(tmp_path/'d') == []


def test_http_404_and_missing_file_name_the_url(server, tmp_path):
    with pytest.raises(FitlamError, match=re.escape(f'{server.base}/nope.tgz: download failed (HTTP Error 404')):
        download(f'{server.base}/nope.tgz', dest=tmp_path/'d', progress=False)
    with pytest.raises(FitlamError, match='nope.label: download failed'):
        download((tmp_path/'nope.label').as_uri(), dest=tmp_path/'d', progress=False)
    assert files_in(tmp_path/'d') == []


def test_corrupt_archive_is_deleted_and_reported(fake, tmp_path):
    good = (fake.src/'imdb.tgz').read_bytes()
    (fake.src/'cut.tgz').write_bytes(good[:len(good) // 2])   # a truncated gzip stream
    with pytest.raises(FitlamError, match=r'cut.tgz \(from file://.*\): a corrupt archive'):
        download((fake.src/'cut.tgz').as_uri(), dest=tmp_path/'d', progress=False)
    assert files_in(tmp_path/'d') == []


def test_unsafe_tar_member_is_refused(fake, tmp_path):
    import io
    with tarfile.open(fake.src/'evil.tgz', 'w:gz') as t:
        info = tarfile.TarInfo('../escaped.txt'); info.size = 3
        t.addfile(info, io.BytesIO(b'bad'))
    with pytest.raises(FitlamError, match='corrupt or unsafe archive'):
        download((fake.src/'evil.tgz').as_uri(), dest=tmp_path/'d'/'e', progress=False)
    assert not (tmp_path/'d'/'escaped.txt').exists() and files_in(tmp_path/'d') == []


def test_zip_archives_work(fake, tmp_path):
    import zipfile
    with zipfile.ZipFile(fake.src/'notes.zip', 'w') as z: z.writestr('notes/a.txt', 'hello'); z.writestr('notes/b/c.txt', 'x')
    path = download((fake.src/'notes.zip').as_uri(), dest=tmp_path/'d', progress=False)
    assert path == tmp_path/'d'/'notes' and files_in(path) == ['a.txt', 'b/c.txt']


def test_unknown_names_list_the_known_ones(env):
    with pytest.raises(FitlamError, match=r"unknown dataset or weights 'imbd'; known: \['ag_news', 'dbpedia', 'imdb'"): download('imbd')
    with pytest.raises(FitlamError, match=r"dataset 'imbd' unknown; known: \['ag_news', 'dbpedia', 'imdb', 'trec6', 'yelp_full'"):
        get_dataset('imbd')
    with pytest.raises(FitlamError, match="'wt103_fwd' is model weights"): get_dataset('wt103_fwd')


def test_registered_url_uses_the_registry_checksums(server, monkeypatch):
    url = server.entries['imdb'].remotes[0].url
    monkeypatch.setitem(REGISTRY, 'imdb', replace(server.entries['imdb'], remotes=(replace(server.entries['imdb'].remotes[0], md5='f' * 32),)))
    with pytest.raises(FitlamError, match='checksum mismatch'): download(url, progress=False)


# --- conversion -------------------------------------------------------------------------------

def test_get_dataset_downloads_converts_and_caches(server):
    ag = get_dataset('ag_news', progress=False)
    assert sorted(ag) == ['test', 'train', 'valid']
    assert [len(ag[s]) for s in ('train', 'valid', 'test')] == [72, 8, 8]
    assert ag['train'].label.value_counts().to_dict() == {'World': 18, 'Sports': 18, 'Business': 18, 'Sci/Tech': 18}
    assert ag['test'].text[0] == 'Title 0 Desc 0, "quoted" \\ end'      # title + " " + description, stripped
    cached = server.home/'datasets'/'ag_news'
    assert sorted(p.name for p in cached.iterdir()) == ['test.csv', 'train.csv', 'valid.csv']
    n = len(server.requests)
    again = get_dataset('ag_news', progress=False)
    assert len(server.requests) == n                  # read from the converted cache
    for s in ag: pd.testing.assert_frame_equal(again[s], ag[s])


def test_imdb_conversion(fake):
    imdb = get_dataset('imdb', progress=False)
    with tarfile.open(fake.src/'imdb.tgz') as t:
        raw = {m.name: t.extractfile(m).read().decode() for m in t.getmembers() if m.isfile()}
    def reviews(split, label):
        names = sorted((n for n in raw if n.startswith(f'aclImdb/{split}/{label}/')), key=lambda n: int(n.split('/')[-1].split('_')[0]))
        return [raw[n] for n in names]
    source = [('neg', t) for t in reviews('train', 'neg')] + [('pos', t) for t in reviews('train', 'pos')]
    train_idx, valid_idx = split_valid([l for l, _ in source])
    assert list(imdb['train'].itertuples(index=False, name=None)) == [source[i] for i in train_idx]
    assert list(imdb['valid'].itertuples(index=False, name=None)) == [source[i] for i in valid_idx]
    assert imdb['test'].text.tolist() == reviews('test', 'neg') + reviews('test', 'pos')
    unsup = [raw[f'aclImdb/train/unsup/{i}_0.txt'] for i in range(5)]
    assert imdb['unsup'].text.tolist() == unsup[:4]    # the 5th equals a test review up to case and spaces
    assert list(imdb['unsup'].columns) == ['text']


def test_trec_conversion_decodes_latin1(fake):
    trec = get_dataset('trec6', progress=False)
    assert [len(trec[s]) for s in ('train', 'valid', 'test')] == [108, 12, 12]
    texts = set(trec['train'].text) | set(trec['valid'].text)
    assert 'What is the sister\u00f0city of   Paris ?' in texts
    assert set(trec['test'].label) == {'ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM'}


def test_malformed_raw_files_name_the_file_and_line(fake, tmp_path):
    raw = tmp_path/'raw'; raw.mkdir()
    (raw/'train_5500.label').write_bytes(b'DESC:def What is it ?\nno label here\n')
    with pytest.raises(FitlamError, match=r'train_5500.label, line 2: expected "COARSE:fine question"'): convert_dataset('trec6', raw)
    (raw/'train.csv').write_text('"1","a","b"\n"9","c","d"\n')
    (raw/'classes.txt').write_text('World\nSports\n')
    with pytest.raises(FitlamError, match=r'train.csv, line 2: expected a class index 1..2'): convert_dataset('ag_news', raw)
    (raw/'train.csv').write_bytes(b'"1","caf\xe9"\n')
    with pytest.raises(FitlamError, match=r'train.csv: not utf-8 text: byte 8 \(line 1\)'): convert_dataset('ag_news', raw)
    with pytest.raises(FitlamError, match=r'empty/train.csv: missing; expected the official train.csv'):
        convert_dataset('dbpedia', tmp_path/'empty')


def test_official_row_counts_are_checked(fake, monkeypatch):
    "With the official row counts, files that are not the official ones are refused."
    monkeypatch.setitem(REGISTRY, 'trec6', replace(fake.entries['trec6'], rows=dict(train=5_452, test=500)))
    with pytest.raises(FitlamError, match='120 train rows, expected the official 5,452: not the official trec6 files'):
        get_dataset('trec6', progress=False)


def test_split_valid_is_stratified_and_in_source_order():
    labels = ['pos', 'neg'] * 50 + ['neg'] * 11
    train, valid = split_valid(labels)
    assert sorted(train + valid) == list(range(len(labels))) and not set(train) & set(valid)
    assert sum(labels[i] == 'neg' for i in valid) == 6 and sum(labels[i] == 'pos' for i in valid) == 5
    assert train == sorted(train) and valid == sorted(valid)
    assert split_valid(labels) == (train, valid) and split_valid(labels, seed=1) != (train, valid)


# --- $FITLAM_DATA and path= -------------------------------------------------------------------

def write_split(folder: Path, rows: dict):
    folder.mkdir(parents=True)
    for split, data in rows.items():
        pd.DataFrame(data, columns=['label', 'text']).to_csv(folder/f'{split}.csv', index=False)


def test_fitlam_data_is_read_without_downloading(tmp_path, monkeypatch, env):
    write_split(tmp_path/'data'/'trec6', {'train': [('NUM', 'How many ?'), ('HUM', 'NA')], 'valid': [('LOC', 'Where ?')]})
    monkeypatch.setenv('FITLAM_DATA', str(tmp_path/'data'))
    monkeypatch.setitem(REGISTRY, 'trec6', replace(REGISTRY['trec6'], remotes=(Remote('http://127.0.0.1:9/never'),)))
    d = get_dataset('trec6')
    assert d['train'].values.tolist() == [['NUM', 'How many ?'], ['HUM', 'NA']]   # "NA" stays text
    assert d['valid'].values.tolist() == [['LOC', 'Where ?']] and 'test' not in d
    with pytest.raises(FitlamError, match=re.escape(f"no folder {tmp_path/'data'/'imdb'} for dataset 'imdb' (found ['trec6'])")):
        get_dataset('imdb')
    (tmp_path/'data'/'trec6'/'valid.csv').unlink()
    with pytest.raises(FitlamError, match=re.escape(f"{tmp_path/'data'/'trec6'/'valid.csv'}: missing")): get_dataset('trec6')
    pd.DataFrame({'label': ['x'], 'review': ['y']}).to_csv(tmp_path/'data'/'trec6'/'valid.csv', index=False)
    with pytest.raises(FitlamError, match=r"valid.csv: column 'text' missing; found \['label', 'review'\]"): get_dataset('trec6')
    assert not env.exists()                            # nothing was cached or downloaded


def test_path_argument_wins_over_fitlam_data(tmp_path, monkeypatch, env):
    write_split(tmp_path/'a'/'imdb', {'train': [('pos', 'good')], 'valid': [('neg', 'bad')]})
    write_split(tmp_path/'b', {'train': [('pos', 'other')], 'valid': [('neg', 'other')], 'test': [('pos', 't')]})
    pd.DataFrame({'text': ['u1']}).to_csv(tmp_path/'b'/'unsup_1.csv', index=False)
    pd.DataFrame({'text': ['u0']}).to_csv(tmp_path/'b'/'unsup_0.csv', index=False)
    monkeypatch.setenv('FITLAM_DATA', str(tmp_path/'a'))
    assert get_dataset('imdb')['train'].text.tolist() == ['good']
    d = get_dataset('imdb', path=tmp_path/'b')
    assert d['train'].text.tolist() == ['other'] and d['test'].text.tolist() == ['t']
    assert d['unsup'].text.tolist() == ['u0', 'u1']


# --- the shared data --------------------------------------------------------------------------

@pytest.mark.shared_data
@needs_shared
def test_trec_registry_checksums_are_the_original_files():
    "The registry's size, md5 and SHA-256 of TREC's train_5500.label are those of the shared, byte-for-byte original copy."
    remote = REGISTRY['trec6'].remotes[0]
    data = (SHARED/'trec6'/'raw'/'train_5500.label').read_bytes()
    assert (len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()) == (remote.size, remote.md5, remote.sha256)


@pytest.mark.shared_data
@needs_shared
def test_trec_split_matches_the_shared_copy(tmp_path):
    "Converting the raw TREC training file gives exactly the shared train.csv and valid.csv."
    d = convert_dataset('trec6', SHARED/'trec6'/'raw', dest=tmp_path/'trec6')
    for split in ('train', 'valid'):
        assert (tmp_path/'trec6'/f'{split}.csv').read_bytes() == (SHARED/'trec6'/f'{split}.csv').read_bytes()
        shared = pd.read_csv(SHARED/'trec6'/f'{split}.csv', dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(d[split], shared)
    assert (len(d['train']), len(d['valid'])) == (4906, 546)
    assert get_dataset('trec6', path=SHARED/'trec6'/'raw')['valid'].equals(d['valid'])


@pytest.mark.shared_data
@needs_shared
def test_fitlam_data_reads_the_shared_datasets(monkeypatch):
    monkeypatch.setenv('FITLAM_DATA', str(SHARED))
    sizes = {name: {s: len(df) for s, df in get_dataset(name).items()} for name in ('trec6', 'ag_news', 'imdb')}
    assert sizes == {'trec6': {'train': 4906, 'valid': 546}, 'ag_news': {'train': 5472, 'valid': 608},
                     'imdb': {'train': 22500, 'valid': 2500, 'unsup': 49730}}
    imdb = get_dataset('imdb')
    assert set(imdb['train'].label) == {'neg', 'pos'} and imdb['train'].text.str.contains('<br />').any()
    for name in ('trec6', 'ag_news', 'imdb'):  # the same rows as Python's csv module reads
        with open(SHARED/name/'valid.csv', newline='', encoding='utf-8') as f: rows = list(csv.reader(f))[1:]
        assert get_dataset(name)['valid'].values.tolist() == rows


# --- corpora ----------------------------------------------------------------------------------

@pytest.mark.shared_data
@needs_shared
def test_shared_corpora(monkeypatch):
    monkeypatch.setenv('FITLAM_DATA', str(SHARED))
    wiki = get_corpus('wikitext2')
    paras = list(wiki.paragraphs())
    lines = [l for f in wiki.files for l in f.read_text(encoding='utf-8').split('\n') if l.strip()]
    assert len(paras) == len(lines)                    # one paragraph per non-empty line
    assert not any('@-@' in p or '@,@' in p or '@.@' in p or '<unk>' in p for p in paras)
    assert 'xxunk' in ' '.join(paras[:200])
    docs = list(wiki.documents())
    titles = [l for l in lines if re.fullmatch(r' = [^=].* = ', l)]       # top-level headings: one per article
    assert len(docs) == len(titles) and docs[0].startswith('Robert xxunk\nRobert xxunk is an English film')
    assert any(d.startswith('Homarus gammarus\n') for d in docs)
    books = get_corpus('gutenberg')
    assert len(books) == 69 and all(f.suffix == '.txt' for f in books)
    first = books.files[0]
    n_blocks = len([b for b in re.split(r'\n\s*\n', first.read_text(encoding='utf-8')) if b.strip()])
    assert sum(1 for _ in get_corpus(first).paragraphs()) == n_blocks


def test_corpus_errors(tmp_path, monkeypatch):
    (tmp_path/'empty').mkdir()
    with pytest.raises(FitlamError, match='empty: no .txt or .tokens files'): get_corpus(tmp_path/'empty')
    monkeypatch.delenv('FITLAM_DATA', raising=False)
    with pytest.raises(FitlamError, match=r"corpus 'gutenberg' is read from \$FITLAM_DATA/gutenberg/books"): get_corpus('gutenberg')


def test_registry_checksums_tool_reports_each_file(fake, monkeypatch, capsys):
    "tools/registry_checksums.py (run where there is internet) prints size, md5 and SHA-256 and compares them with the registry."
    import importlib.util
    spec = importlib.util.spec_from_file_location('registry_checksums', ROOT/'tools'/'registry_checksums.py')
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, 'REGISTRY', {**fake.entries, 'imdb': replace(fake.entries['imdb'], remotes=(
        replace(fake.entries['imdb'].remotes[0], sha256='0' * 64),))})
    assert tool.main(['trec6', 'imdb']) == 0
    out = capsys.readouterr().out
    data = (fake.src/'imdb.tgz').read_bytes()
    assert f"sha256='{hashlib.sha256(data).hexdigest()}'" in out and f'sha256 DIFFERS (registry {"0" * 64})' in out
    assert out.count('size ok') == 3
