"""Writes CLIP-format tokenizer files (vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json) whose merges make every word of the scene grammar a single token; any
other text still encodes through the 256 byte symbols."""
import json
import os
import sys

from reverie_pipelines import bytes_to_unicode
import scenes

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bpe(word, ranks):
    while len(word) > 1:
        pairs = [(ranks[p], i) for i, p in enumerate(zip(word, word[1:])) if p in ranks]
        if not pairs:
            break
        r, _ = min(pairs)
        best = [p for p in ranks if ranks[p] == r][0]
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def build_merges(words):
    """Merges, in rank order, that turn each word into one symbol. Each new merge joins the first
    two symbols of a word's current segmentation; merges added later rank higher, so they never
    change how an already finished word is split."""
    ranks = {}
    merges = []
    for w in words:
        while True:
            seg = _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)
            if len(seg) == 1:
                break
            pair = (seg[0], seg[1])
            ranks[pair] = len(merges)
            merges.append(pair)
    return merges


def write(out_dir, words=scenes.WORDS):
    os.makedirs(out_dir, exist_ok=True)
    b2u = bytes_to_unicode()
    symbols = list(b2u.values())
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = build_merges(words)
    vocab += [a + b for a, b in merges]
    vocab += [BOS, EOS]
    enc = {t: i for i, t in enumerate(vocab)}
    assert len(enc) == len(vocab)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    special = {"content": None, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

    def tok(s):
        return dict(special, content=s)
    cfg = {
        "added_tokens_decoder": {str(enc[BOS]): dict(tok(BOS), special=True), str(enc[EOS]): dict(tok(EOS), special=True)},
        "bos_token": BOS, "clean_up_tokenization_spaces": True, "do_lower_case": True, "eos_token": EOS,
        "errors": "replace", "model_max_length": 77, "pad_token": EOS, "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": tok(BOS), "eos_token": tok(EOS), "pad_token": tok(EOS), "unk_token": tok(EOS)}, f, indent=2)
    return len(vocab)


if __name__ == "__main__":
    out = sys.argv[1]
    n = write(out)
    from reverie_pipelines import CLIPTokenizer
    t = CLIPTokenizer(out)
    for w in scenes.WORDS:
        ids = t.encode(w)
        assert len(ids) == 1, (w, ids)
    print("vocab %d, every grammar word one token; example:" % n, t.encode("a small red circle at the left, déjà vu!"))
