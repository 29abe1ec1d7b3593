"Subword tokenization (SentencePiece, MultiFiT) end to end: a German + Chinese corpus spaCy's English rules know nothing of, the model in the cache, data bunches, learners, export, encoders, bad input."
import pickle, random, sys

import numpy as np
import pandas as pd
import pytest
import torch

from fitlam.core import FitlamError
from fitlam.tokenizer import Tokenizer
from fitlam.corpus import tokenize_corpus
from fitlam.subword import SentencePieceTokenizer, get_tokenizer
from fitlam.vocab import Vocab
from fitlam.data import TextLMDataBunch, TextClasDataBunch
from fitlam.models.awdlstm import AWDLSTMConfig
from fitlam.models.pretrained import load_encoder, read_checkpoint
from fitlam.tokenizer import detokenize
from fitlam.text_learner import language_model_learner, text_classifier_learner, load_learner
from fitlam.testing import TINY_AWD

DE = ['Der Hund läuft schnell über die grüne Wiese.', 'Die Katze schläft den ganzen Tag auf dem Sofa.',
      'Wir fahren morgen mit dem Zug nach Berlin.', 'Das Wetter ist heute sehr schön und warm.',
      'Ich habe gestern ein spannendes Buch gelesen.', 'Die Kinder spielen im Garten Fußball.',
      'Meine Großmutter backt jeden Sonntag einen Apfelkuchen.', 'Der Bahnhof liegt direkt neben dem Rathaus.',
      'Die Nummer ist 0123456789!']
ZH = ['我喜欢在公园里散步。', '今天的天气非常好。', '他们明天去北京旅行。', '这本书很有意思。',
      '孩子们在花园里踢足球。', '我们一起吃晚饭吧。', '奶奶每个星期天都做蛋糕。', '火车站就在市政府旁边。']


def corpus(n=120, seed=0) -> pd.DataFrame:
    "Documents of 2-4 sentences, all German (label de) or all Chinese (label zh)."
    rng, rows = random.Random(seed), []
    for i in range(n):
        lang = 'de' if i % 2 else 'zh'
        sents = DE if lang == 'de' else ZH
        rows.append((' '.join(rng.choice(sents) for _ in range(rng.randint(2, 4))), lang))
    return pd.DataFrame(rows, columns=['text', 'label'])


def sp(**kw): return SentencePieceTokenizer(**{'lang': 'de', 'vocab_sz': 150, **kw})


@pytest.fixture(scope='module')
def texts(): return corpus().text.tolist()


@pytest.fixture(scope='module')
def trained(texts): return sp().fit(texts)


def test_pieces_and_round_trip(trained, texts):
    toks = trained(texts[1])
    assert toks[0] == 'xxbos' and 'xxmaj' in toks and all(' ' not in t for t in toks)
    assert any(t.startswith('▁') for t in toks) and not any(t.startswith('▁xx') for t in toks)   # specials bare, never split
    for t in texts[:20] + ['Der HUND bellt!!!! 我喜欢 ganz ganz ganz laut.']:
        assert detokenize(trained.words(trained(t))) == t                                         # tokens -> text, exactly
    assert trained.tokenize(texts[:30], n_workers=2) == trained.tokenize(texts[:30])             # workers get the model
    assert trained.reference(texts[3]) == trained(texts[3])


def test_deterministic_and_pickled(trained, texts):
    again = sp().fit(texts)
    assert again.sp_model == trained.sp_model and again == trained and again.subword == trained.subword
    other = sp(vocab_sz=130).fit(texts)
    assert other.subword != trained.subword and other != trained
    back = pickle.loads(pickle.dumps(trained))
    assert back.sp_model == trained.sp_model and back(texts[0]) == trained(texts[0])
    cfg = trained.to_config()
    assert cfg['base'] == 'sentencepiece' and cfg['model'] == trained.subword and 'base' not in Tokenizer().to_config()
    assert Tokenizer.from_config(cfg, sp_model=trained.sp_model) == trained
    with pytest.raises(FitlamError, match='not the one'): Tokenizer.from_config(cfg, sp_model=other.sp_model)
    with pytest.raises(FitlamError, match='no model was given'): Tokenizer.from_config(cfg)


def test_cache_hit_and_miss(texts, tmp_path):
    c1 = tokenize_corpus(texts, sp(), cache_dir=tmp_path, n_workers=0, progress=False)
    c2 = tokenize_corpus(texts, sp(), cache_dir=tmp_path, n_workers=2, progress=False)
    assert not c1.from_cache and c2.from_cache and c2.sp_model == c1.sp_model == sp().fit(texts).sp_model
    c3 = tokenize_corpus(texts, sp(vocab_sz=130), cache_dir=tmp_path, n_workers=0, progress=False)
    assert not c3.from_cache and c3.sp_model != c1.sp_model and c3.path != c1.path
    assert len(list(tmp_path.glob('spm-*.model'))) == 2                    # a model per setting, kept in the cache


def test_lm_trains_on_training_split_only(texts, tmp_path):
    data = TextLMDataBunch.from_texts(texts, tokenizer=sp(), bs=4, bptt=12, min_freq=1, cache_dir=tmp_path, n_workers=0,
                                      progress=False, valid_pct=0.2, seed=0)
    tok = data.tokenizer
    assert not tok.needs_fit and data.vocab.subword == tok.subword
    valid = set(range(len(texts))) - set(_train_idx(len(texts)))
    assert tok.sp_model == sp().fit([t for i, t in enumerate(texts) if i not in valid]).sp_model   # not the validation texts
    torch.manual_seed(0)
    learn = language_model_learner(data, config=AWDLSTMConfig(**TINY_AWD), progress=False, path=tmp_path)
    before = learn.validate()['valid_loss']
    learn.fit_one_cycle(1, lr=2e-2)
    assert learn.validate()['valid_loss'] < before - 0.3, 'one epoch must lower the validation loss by a wide margin'
    assert isinstance(learn.predict('Der Hund', n_words=6, seed=0), str)
    again = TextLMDataBunch.from_texts(texts, tokenizer=sp(), bs=4, bptt=12, min_freq=1, cache_dir=tmp_path, n_workers=0,
                                       progress=False, valid_pct=0.2, seed=0)
    assert again.tokenizer.sp_model == tok.sp_model and again.vocab == data.vocab


def _train_idx(n):
    from fitlam.data import _split
    return _split(n, 0.2, 0)[0].tolist()


def test_classifier_reuses_lm_model_export_and_encoder(tmp_path):
    df = corpus(160, seed=1)
    lm_data = TextLMDataBunch.from_df(df, tokenizer=sp(), bs=4, bptt=12, min_freq=1, cache_dir=tmp_path, n_workers=0, progress=False)
    lm = language_model_learner(lm_data, config=AWDLSTMConfig(**TINY_AWD), progress=False, path=tmp_path)
    enc = lm.save_encoder('enc')
    ck = read_checkpoint(enc)
    assert ck['sp_model'] == lm_data.tokenizer.sp_model and ck['subword'] == lm_data.tokenizer.subword
    with pytest.raises(FitlamError, match='untrained'):          # vocab= needs the tokenizer it was built with
        TextClasDataBunch.from_df(df, vocab=lm_data.vocab, tokenizer=sp(), cache_dir=tmp_path, n_workers=0, progress=False)
    with pytest.raises(FitlamError, match='word tokenizer'):
        TextClasDataBunch.from_df(df, vocab=lm_data.vocab, cache_dir=tmp_path, n_workers=0, progress=False)
    data = TextClasDataBunch.from_df(df, vocab=lm_data.vocab, tokenizer=lm_data.tokenizer, bs=8, cache_dir=tmp_path, n_workers=0,
                                     progress=False)
    torch.manual_seed(0)
    learn = text_classifier_learner(data, config=AWDLSTMConfig(**TINY_AWD), encoder=enc, progress=False, path=tmp_path)
    learn.fit_one_cycle(2, lr=2e-2)
    new = ['Die Katze läuft über die Wiese.', '我们明天去公园散步。']
    probs = learn.predict_proba(new)
    path = learn.export(tmp_path/'export.pth')
    assert not list(tmp_path.glob('*.json'))                      # the model is inside the export, no side file
    back = load_learner(path)
    assert isinstance(back.tokenizer, SentencePieceTokenizer) and back.tokenizer.sp_model == lm_data.tokenizer.sp_model
    assert back.vocab == learn.vocab
    assert torch.allclose(back.predict_proba(new), probs, atol=1e-6)
    assert [p.label for p in back.predict(new)] == [p.label for p in learn.predict(new)]
    # an encoder of another subword model is refused, as one of another vocab is
    other = TextLMDataBunch.from_df(df, tokenizer=sp(vocab_sz=130), bs=4, bptt=12, min_freq=1, cache_dir=tmp_path, n_workers=0,
                                    progress=False)
    clas = TextClasDataBunch.from_df(df, vocab=other.vocab, tokenizer=other.tokenizer, bs=8, cache_dir=tmp_path, n_workers=0, progress=False)
    with pytest.raises(FitlamError, match='another vocab|subword'):
        text_classifier_learner(clas, config=AWDLSTMConfig(**TINY_AWD), encoder=enc, progress=False, path=tmp_path)
    same_pieces = Vocab(lm_data.vocab.itos, subword=other.tokenizer.subword)     # the same pieces, cut by another model
    with pytest.raises(FitlamError, match='subword model'): load_encoder(learn.model, enc, same_pieces)
    with pytest.raises(FitlamError, match='subword model'): load_encoder(learn.model, enc, Vocab(lm_data.vocab.itos))
    # a pretrained LM brings its own subword model: data of another one is refused, get_tokenizer gives the right one
    lm_path = lm.save_lm('lm')
    with pytest.raises(FitlamError, match="LM's own tokenizer"):
        language_model_learner(other, pretrained=lm_path, config=AWDLSTMConfig(**TINY_AWD), progress=False, path=tmp_path)
    own = get_tokenizer(pretrained=lm_path)
    assert own.sp_model == lm_data.tokenizer.sp_model and own == lm_data.tokenizer
    again = TextLMDataBunch.from_df(df, tokenizer=own, bs=4, bptt=12, min_freq=1, cache_dir=tmp_path, n_workers=0, progress=False)
    language_model_learner(again, pretrained=lm_path, progress=False, path=tmp_path)


def test_bad_arguments(texts, monkeypatch):
    with pytest.raises(FitlamError, match='vocab_sz=100000.*too high'): sp(vocab_sz=100_000).fit(texts)
    with pytest.raises(FitlamError, match='vocab_sz=10 .*smaller'): sp(vocab_sz=10).fit(texts)
    for kw, msg in [(dict(vocab_sz=0), 'vocab_sz'), (dict(vocab_sz=1.5), 'vocab_sz'), (dict(model_type='wordpiece'), 'model_type'),
                    (dict(char_coverage=2), 'char_coverage'), (dict(n_threads=0), 'n_threads'), (dict(sp_model=b'junk'), 'sp_model')]:
        with pytest.raises(FitlamError, match=msg): sp(**kw)
    with pytest.raises(FitlamError, match='no model yet'): sp()('Hallo Welt')
    with pytest.raises(FitlamError, match='one string'): sp().fit('Hallo Welt')
    with pytest.raises(FitlamError, match='no text'): sp(rules=[]).fit(['\n', ' \n '])
    monkeypatch.setitem(sys.modules, 'sentencepiece', None)       # the package missing
    with pytest.raises(FitlamError, match='pip install sentencepiece'): sp().fit(texts)


def test_cli_pretrain_finetune_classify_with_subwords(tmp_path, capsys):
    "`--tokenizer sp --vocab-sz N` in stage 1; stages 2 and 3 pick the model up from the LM and the encoder; the export carries it."
    from fitlam.cli import main
    small = ['--bs', '4', '--bptt', '10', '--quiet', '--emb', '16', '--hid', '24', '--layers', '2', '--min-freq', '1']
    (tmp_path/'corpus.txt').write_text('\n\n'.join(corpus(80, seed=2).text), encoding='utf-8')
    corpus(100, seed=3).to_csv(tmp_path/'train.csv', index=False)
    main(['pretrain', '--corpus', str(tmp_path/'corpus.txt'), '--out', str(tmp_path/'pre'), '--tokenizer', 'sp', '--vocab-sz', '150',
          '--lang', 'de', *small])
    pre = read_checkpoint(tmp_path/'pre'/'lm.pth')
    assert len(SentencePieceTokenizer(sp_model=pre['sp_model'], lang='de').pieces()) == 150 and pre['subword']
    with pytest.raises(SystemExit):        # the LM has its own model: another size is refused
        main(['finetune-lm', '--train', str(tmp_path/'train.csv'), '--pretrained', str(tmp_path/'pre'/'lm.pth'), '--out', str(tmp_path/'x'),
              '--tokenizer', 'sp', '--vocab-sz', '140', *small[:4]])
    assert 'leave out vocab_sz (--vocab-sz)' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['train-clas', '--train', str(tmp_path/'train.csv'), '--out', str(tmp_path/'y'), '--vocab-sz', '140', *small[:4]])
    assert '(--tokenizer sp)' in capsys.readouterr().err
    main(['finetune-lm', '--train', str(tmp_path/'train.csv'), '--pretrained', str(tmp_path/'pre'/'lm.pth'), '--out', str(tmp_path/'lm'),
          '--min-freq', '1', *small[:4]])
    assert read_checkpoint(tmp_path/'lm'/'encoder.pth')['sp_model'] == pre['sp_model']
    main(['train-clas', '--train', str(tmp_path/'train.csv'), '--encoder', str(tmp_path/'lm'/'encoder.pth'), '--out', str(tmp_path/'clas'),
          '--epochs', '1', *small[:4]])
    learn = load_learner(tmp_path/'clas'/'export.pth')
    assert learn.tokenizer.sp_model == pre['sp_model'] and learn.vocab.subword == pre['subword']
    assert learn.predict('Der Hund schläft.').label in ('de', 'zh')


def test_callable_base(tmp_path):
    "Any importable function as the base tokenizer: the rules and special tokens around it, workers, the cache, export's trust check."
    import shlex
    tok = Tokenizer(base=shlex.split)
    texts = ['Der Hund "läuft schnell" WEG.', '我喜欢 在公园里 散步。'] * 10
    assert tok.tokenize(texts, n_workers=2) == tok.tokenize(texts) == [tok.reference(t) for t in texts]
    assert tok.tokenize(texts[:1])[0] == ['xxbos', 'xxmaj', 'der', 'xxmaj', 'hund', 'läuft▁schnell', 'xxup', 'weg.']
    c1 = tokenize_corpus(texts, tok, cache_dir=tmp_path, n_workers=0, progress=False)
    c2 = tokenize_corpus(texts, Tokenizer(), cache_dir=tmp_path, n_workers=0, progress=False)
    assert not c2.from_cache and c1.path != c2.path and tokenize_corpus(texts, tok, cache_dir=tmp_path, n_workers=0, progress=False).from_cache
    assert pickle.loads(pickle.dumps(tok)) == tok
    with pytest.raises(FitlamError, match='trust_rules=True'): Tokenizer.from_config(tok.to_config(), trust_rules=False)
    with pytest.raises(FitlamError, match='list of non-empty strings'): Tokenizer(base=shlex.quote)('a b')
    with pytest.raises(FitlamError, match='not a lambda'): Tokenizer(base=lambda t: t.split())


def test_ulmfit_with_subwords(tmp_path, monkeypatch):
    "The whole recipe on subwords: the classifier reuses the LM's model, the export carries it."
    from fitlam.text_learner import ulmfit
    monkeypatch.setenv('FITLAM_CACHE', str(tmp_path/'cache'))
    df = corpus(120, seed=4)
    learn = ulmfit(df[:90], df[90:], tokenizer=sp(), config=AWDLSTMConfig(**TINY_AWD), bs=4, bptt=10, min_freq=1, path=tmp_path,
                   clas_epochs=1, progress=False, verbose=False)
    tok = learn.tokenizer
    assert isinstance(tok, SentencePieceTokenizer) and learn.vocab.subword == tok.subword
    assert load_learner(learn.export(tmp_path/'u.pth')).tokenizer.sp_model == tok.sp_model
