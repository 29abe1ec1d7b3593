"""How much of each task's text the pretrained LM's vocabulary covers (a diagnostic for the tutorials).

    FITLAM_DATA=../shared/data python bench/diagnostics/vocab_coverage.py [path/to/lm.pth]

Tokenizes the first 3,000 training texts of TREC-6, AG News (the local slice) and IMDb with fitlam's tokenizer and
prints the share of tokens (and of distinct types) that are not in the vocabulary of the LM `tutorial_pretrain`
saved (default: ~/.fitlam/models/lm_gutenberg_quick.pth). Those words start fine-tuning at the mean embedding:
nothing from pretraining reaches them.
"""
import sys
from pathlib import Path
import collections
from fitlam.download import fitlam_home, get_dataset
from fitlam.models.pretrained import read_checkpoint
from fitlam.tokenizer import Tokenizer

lm = Path(sys.argv[1]) if len(sys.argv) > 1 else fitlam_home()/'models'/'lm_gutenberg_quick.pth'
itos = set(read_checkpoint(lm)['itos'])
tok = Tokenizer()
for name in ['trec6', 'ag_news', 'imdb']:
    texts = get_dataset(name)['train'].text.tolist()[:3000]
    c = collections.Counter(t for doc in tok.tokenize(texts) for t in doc)
    n, oov = sum(c.values()), sum(v for k, v in c.items() if k not in itos)
    print(f'{name}: {n:,} tokens of {len(texts)} texts; {oov / n:.1%} of them (and {sum(1 for k in c if k not in itos) / len(c):.1%} '
          f'of {len(c):,} types) not in the {len(itos):,}-token pretrained vocab')
