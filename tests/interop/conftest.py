"""What the interop tests share: Hugging Face's byte-level BPE written out from its files (transformers
is not installed here), and texts that exercise every branch of the pre-tokenizer regexes."""
import math

import pytest
import regex

from minidpo.interop.hf_tokenizer import BYTE_TO_CHAR

TEXTS = ["Human: it's 12 o'clock, isn't it?  Assistant: I'd say 2024 -- maybe.\n\n",
         "The acting was very brilliant. I hated this movie!", "naïve café 🙂 ∑x  \t tabs\n  and   spaces ",
         "'ll 've 're 'S 123456789 x1y2", ""]


def _hf_encode(text, vocab, merges, pattern, specials=()):
    """Hugging Face's byte-level BPE on its own files: added tokens split off first, the rest cut by
    the pre-tokenizer regex, each piece's bytes as GPT-2's characters, then merges by their order
    in merges.txt until no listed pair is left; ids from vocab.json."""
    priority = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    pieces = regex.split("(" + "|".join(map(regex.escape, specials)) + ")", text) if specials else [text]
    ids = []
    for piece in pieces:
        if piece in specials:
            ids.append(vocab[piece])
            continue
        for chunk in regex.findall(pattern, piece):
            word = [BYTE_TO_CHAR[b] for b in chunk.encode("utf-8")]
            while len(word) > 1:
                rank, i = min((priority.get(pair, math.inf), i) for i, pair in enumerate(zip(word, word[1:])))
                if rank == math.inf:
                    break
                word[i:i + 2] = [word[i] + word[i + 1]]
            ids += [vocab[w] for w in word]
    return ids


@pytest.fixture(scope="session")
def texts():
    return TEXTS


@pytest.fixture(scope="session")
def hf_encode():
    return _hf_encode
