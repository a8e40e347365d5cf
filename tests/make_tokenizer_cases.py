#!/usr/bin/env python3
"""make_tokenizer_cases.py -- small, real-structured tokenizer.json files and their reference ids
(from the `tokenizers` package) for the postnas C BPE tokenizer.

Usage:
    python tests/make_tokenizer_cases.py [--shared DIR] [--out tests/tokenizers]

    --shared DIR   the shared folder (default: ../shared next to the repository root); the
                   training text is DIR/data/corpora/tinyshakespeare.txt and the long test texts
                   are the first 20000 bytes of tinyshakespeare.txt and of
                   paul_graham_essays/worked.txt.
    --out DIR      where the files go (default: tests/tokenizers).

Needs only the `tokenizers` package (written against 0.23.3).  RAYON_NUM_THREADS=1 is set before
it is imported, so training is deterministic: a rerun rewrites identical files.

Writes, in OUT:
  llama3.json, qwen25.json, gpt2.json, smollm2_like.json, roberta_like.json, added_flags.json
      tokenizer.json files (the format `tokenizers.Tokenizer.save` writes), each a byte-level BPE
      trained here on tinyshakespeare with the pipeline of the model family it imitates (see
      CASES below and README.md).
  ids.json
      for every tokenizer and every case (the hard strings HARD_CASES below, and the two long
      texts): ids with add_special_tokens=True and =False, and decode round trips.

The list HARD_CASES is also used by make_smollm2_goldens.py.
"""

import argparse
import hashlib
import json
import os
import sys

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (name, text).  Kept ASCII-escaped here so that the source file shows exactly which code points
# are used.  A Python str cannot hold the bytes 0xc0 0xc1 0xf5..0xff (never valid in UTF-8); the
# lead bytes 0xf1 / 0xf2 / 0xf3 / 0xf4 are reached through code points U+40000.. / U+80000.. /
# U+C0000.. / U+100000...
HARD_CASES = [
    # digits
    ("digits_12345", "12345"),
    ("pi", "3.14159"),
    ("year_2024", "year 2024"),
    ("thousands", "1,000,000 and 1.000.000"),
    ("hex_exp", "-42 and 1e-10 and 0x1F"),
    ("two_spaces_digit", "x  12"),
    ("space_digit_start", " 7 days"),
    ("vulgar_fraction", "4 \u00bd months, x\u00b2 and \u2155"),
    ("arabic_indic_digits", "\u0661\u0662\u0663 and \u0967\u0968"),
    ("fullwidth_digits", "\uff11\uff12\uff13\uff14"),
    ("long_digit_run", "1234567890123456789012345"),
    # emoji / ZWJ
    ("emoji_thumbs", "\U0001F44D"),
    ("emoji_family_zwj", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"),
    ("emoji_rainbow_flag", "\U0001F3F3\uFE0F\u200D\U0001F308"),
    ("emoji_heart_vs16", "I \u2764\uFE0F NY"),
    ("emoji_run", "\U0001F600\U0001F603\U0001F604 ok"),
    ("emoji_skin_tone", "\U0001F44B\U0001F3FD hi"),
    # CJK / other scripts
    ("cjk_tokyo", "\u6771\u4eac"),
    ("chinese_hello", "\u4f60\u597d\uff0c\u4e16\u754c\uff01"),
    ("japanese_mixed", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8"),
    ("korean", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("ideographic_space", "\u6771\u4eac\u3000\u5927\u962a"),
    ("greek_cyrillic", "\u03b1\u03b2\u03b3 \u0434\u043e\u0431\u0440\u044b\u0439"),
    ("arabic_rtl", "\u0645\u0631\u062d\u0628\u0627 world"),
    # accents / combining marks / normalization
    ("cafe_precomposed", "caf\u00e9"),
    ("cafe_combining", "cafe\u0301"),
    ("naive_resume", "na\u00efve r\u00e9sum\u00e9"),
    ("angstrom_sign", "\u212b vs \u00c5 vs A\u030a"),
    ("double_combining", "e\u0301\u0301x"),
    ("ohm_sign", "\u2126 vs \u03a9"),
    ("fi_ligature", "\ufb01nance"),
    ("hangul_jamo", "\u1100\u1161\u11a8"),
    ("turkish_i", "\u0130stanbul \u0131"),
    ("titlecase_dz", "\u01c5ungla"),
    ("sharp_s", "Stra\u00dfe \u1e9e"),
    # whitespace
    ("crlf", "\r\n"),
    ("crlf_lines", "line one\r\nline two\r\n"),
    ("tab", "\tindented\t\ttabs\t"),
    ("two_spaces", "a  b"),
    ("three_spaces", "a   b"),
    ("four_leading", "    four leading"),
    ("trailing_spaces", "trailing   "),
    ("single_space", " "),
    ("empty", ""),
    ("newlines", "\n\n\n"),
    ("space_nl_space", " \n "),
    ("nbsp", "100\u00a0km"),
    ("line_separator", "x\u2028y\u2029z"),
    ("vtab_formfeed", "a\u000bb\u000cc"),
    ("zero_width_space", "a\u200bb"),
    ("bom", "\ufeffHello"),
    # contractions
    ("im", "I'm"),
    ("dont_upper", "DON'T"),
    ("wellve", "we'll've they'd"),
    ("its_mixed", "it's IT'S It'S"),
    ("apostrophe_s_alone", "'s"),
    ("rock_n_roll", "rock'n'roll"),
    ("curly_apostrophe", "don\u2019t"),
    # control bytes and lead bytes whose tokens may be missing
    ("ctrl_04", "\x04"),
    ("ctrl_a04b", "a\x04b"),
    ("ctrl_run", "\x06\x13\x14\x16\x1d"),
    ("ctrl_between_punct", "!\x04!"),
    ("ctrl_between_dots", "..\x13.."),
    ("ctrl_in_word", "ab\x06cd"),
    ("nul_del", "\x00\x01\x7f"),
    ("lead_f1", "\U00040000"),
    ("lead_f2_in_word", "x\U00080000y"),
    ("lead_f3", "\U000E0001"),
    ("lead_f4_max", "\U0010FFFF"),
    ("c3_80", "\u00c0 \u00c1"),
    # special / added tokens
    ("chat_im", "<|im_start|>user\nhi<|im_end|>"),
    ("eot_alone", "<|endoftext|>"),
    ("eot_embedded", "a<|endoftext|>b"),
    ("eot_spaced", " <|endoftext|> "),
    ("eot_twice", "<|endoftext|><|endoftext|>"),
    ("special_partial", "<|im_start"),
    ("special_upper", "<|IM_START|>"),
    ("llama3_header", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"),
    ("roberta_mask", "The <mask> sat."),
    ("roberta_s", "<s>x</s>"),
    ("flags_lstrip", "a <lstrip> b"),
    ("flags_rstrip", "a <rstrip>  b"),
    ("flags_both", "x  <both>  y"),
    ("flags_single_word", "a<sw>b a <sw> b"),
    ("flags_normalized", "[NORM] [norm] [RAW] [Raw]"),
    ("flags_in_word", "othello hello Hello"),
    ("flags_special_strip", "x <|sp|> y<|eos|>"),
    # leading spaces, words, code
    ("leading_space", " hello"),
    ("leading_two_spaces", "  hello"),
    ("hello_world", "Hello world"),
    ("hello_world_bang", " Hello World!"),
    ("ignore_merges_word", "the postnas tokenizer"),
    ("ignore_merges_long", "supercalifragilistic"),
    ("python_code", "def f(x):\n    return x**2  # square\n"),
    ("c_code", "if (a && b) { return -1; }\n\tx += 3;"),
    ("url", "https://example.com/path?q=1&r=2"),
    ("email", "first.last@example.com"),
    ("html", "<html><body>hi</body></html>"),
    ("latex", "$$\\frac{a}{b}$$"),
    ("punct_runs", "Wait... what?!?! --- (yes)"),
    ("dashes_quotes", "\u2014 \u00abquoted\u00bb \u201cdouble\u201d"),
    ("shakespeare_line", "First Citizen:\nBefore we proceed any further, hear me speak."),
]

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# the 21 byte values SmolLM2-135M's vocabulary has no token for
SMOLLM2_MISSING_BYTES = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2,
                         0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]

# whole-word tokens appended to llama3.json's vocabulary with no merges leading to them: only
# ignore_merges=true can produce them
LLAMA3_EXTRA_WORDS = ["\u0120postnas", "postnas", "\u0120tokenizer", "supercalifragilistic"]

LONG_BYTES = 20000


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def head_text(path, n_bytes=LONG_BYTES):
    """The first n_bytes bytes of the file, backed off to a UTF-8 character boundary, as str."""
    data = open(path, "rb").read()[:n_bytes]
    while data and (data[-1] & 0xC0) == 0x80:
        data = data[:-1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data[:-1].decode("utf-8")  # a lead byte of a cut character at the very end


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(REPO), "shared"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "tokenizers"))
    args = ap.parse_args()

    import tokenizers
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
        processors, trainers

    corpora = os.path.join(args.shared, "data", "corpora")
    shakes_path = os.path.join(corpora, "tinyshakespeare.txt")
    pg_path = os.path.join(corpora, "paul_graham_essays", "worked.txt")
    train_text = open(shakes_path, encoding="utf-8").read()
    # one training "document" per line pair keeps memory small and the result deterministic
    lines = train_text.split("\n")
    train_docs = ["\n".join(lines[i:i + 2]) + "\n" for i in range(0, len(lines), 2)]
    # plus a little generated, indented code so that runs of spaces / tabs / newlines get merged
    # into tokens (as in real vocabularies: "  ", "    ", "\n\n", "\t\t" ...)
    for j in range(400):
        ind = "    " * (1 + j % 3)
        tab = "\t" * (1 + j % 2)
        train_docs.append(f"def f{j}(x):\n{ind}if x > {j}:\n{ind}    return x  # {j}\n\n"
                          f"{tab}y = [{j}, {j + 1}]\n{tab}\tz = y\r\n")
    os.makedirs(args.out, exist_ok=True)
    b2u = bytes_to_unicode()
    alphabet = pre_tokenizers.ByteLevel.alphabet()

    def bpe_train(pre, vocab_size, specials, normalizer=None):
        tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
        if normalizer is not None:
            tok.normalizer = normalizer
        tok.pre_tokenizer = pre
        tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                 special_tokens=specials, initial_alphabet=alphabet)
        tok.train_from_iterator(train_docs, trainer=tr)
        return tok

    def save(tok, name, edit=None):
        d = json.loads(tok.to_str())
        if edit is not None:
            edit(d)
        s = json.dumps(d, indent=2, ensure_ascii=False)
        path = os.path.join(args.out, name)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(s + "\n")
        return Tokenizer.from_file(path)  # always test what is on disk

    def bl(add_prefix_space=False, trim_offsets=True, use_regex=True):
        return dict(add_prefix_space=add_prefix_space, trim_offsets=trim_offsets, use_regex=use_regex)

    built = {}

    # ---------------------------------------------------------------- llama3.json
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(**bl(False, True, False))])
    t = bpe_train(pre, 1000, [])
    llama_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                      "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

    def llama_edit(d):
        d["model"]["ignore_merges"] = True
        vocab = d["model"]["vocab"]
        for w in LLAMA3_EXTRA_WORDS:
            if w not in vocab:
                vocab[w] = len(vocab)
    t = save(t, "llama3.json", llama_edit)
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in llama_specials])
    t.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])])
    t.decoder = decoders.ByteLevel(**bl(True, True, True))
    built["llama3"] = (save(t, "llama3.json"), "Llama-3 style: pre_tokenizer Sequence[Split(llama3 regex, "
                       "isolated), ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=false)], BPE "
                       "ignore_merges=true (+4 whole-word vocab entries reachable only through ignore_merges: "
                       + ", ".join(LLAMA3_EXTRA_WORDS) + "), post_processor Sequence[ByteLevel(trim_offsets=false), "
                       "TemplateProcessing('<|begin_of_text|> $A')], decoder ByteLevel, 6 special added tokens "
                       "after the vocab")

    # ---------------------------------------------------------------- qwen25.json
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(**bl(False, False, False))])
    t = bpe_train(pre, 1000, [], normalizer=normalizers.NFC())
    t.add_special_tokens([AddedToken(s, special=True, normalized=False)
                          for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    t.add_tokens([AddedToken(s, special=False, normalized=False) for s in ["<tool_call>", "</tool_call>"]])
    t.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    t.decoder = decoders.ByteLevel(**bl(False, False, False))
    built["qwen25"] = (save(t, "qwen25.json"), "Qwen2.5 style: normalizer NFC, pre_tokenizer Sequence[Split(qwen2 "
                       "regex, isolated), ByteLevel(add_prefix_space=false, trim_offsets=false, use_regex=false)], "
                       "post_processor ByteLevel (adds nothing), decoder ByteLevel, special <|endoftext|> "
                       "<|im_start|> <|im_end|>, non-special <tool_call> </tool_call>")

    # ---------------------------------------------------------------- gpt2.json
    t = bpe_train(pre_tokenizers.ByteLevel(**bl(False, True, True)), 1000, [])
    t.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    t.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    t.decoder = decoders.ByteLevel(**bl(True, True, True))
    built["gpt2"] = (save(t, "gpt2.json"), "GPT-2 style: pre_tokenizer ByteLevel(add_prefix_space=false, "
                     "use_regex=true) only, post_processor ByteLevel, decoder ByteLevel, <|endoftext|> after "
                     "the vocab")

    # ---------------------------------------------------------------- smollm2_like.json
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(**bl(False, True, True))])
    t = bpe_train(pre, 1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<file_sep>", "<jupyter_code>"])
    missing_chars = {b2u[b] for b in SMOLLM2_MISSING_BYTES}

    def smol_edit(d):
        m = d["model"]
        keep = [(tok_, i) for tok_, i in sorted(m["vocab"].items(), key=lambda kv: kv[1])
                if not (set(tok_) & missing_chars)]
        m["vocab"] = {tok_: new for new, (tok_, _) in enumerate(keep)}
        m["merges"] = [mg for mg in m["merges"] if not (set(mg[0] + mg[1]) & missing_chars)]
        for a in d["added_tokens"]:
            a["id"] = m["vocab"][a["content"]]
    t.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    t.decoder = decoders.ByteLevel(**bl(True, True, True))
    t = save(t, "smollm2_like.json", smol_edit)
    built["smollm2_like"] = (t, "SmolLM2 style: pre_tokenizer Sequence[Digits(individual_digits=true), "
                             "ByteLevel(add_prefix_space=false, use_regex=true)], special tokens ids 0..4, BPE with "
                             "no unk token and the 21 byte tokens SmolLM2 lacks removed (" +
                             " ".join(f"0x{b:02x}" for b in SMOLLM2_MISSING_BYTES) + "): those bytes are dropped; "
                             "post_processor ByteLevel, decoder ByteLevel")

    # ---------------------------------------------------------------- roberta_like.json
    t = bpe_train(pre_tokenizers.ByteLevel(**bl(True, True, True)), 1000, ["<s>", "<pad>", "</s>", "<unk>"])
    t.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, rstrip=False, normalized=False)])
    t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")),
                                                    ("<s>", t.token_to_id("<s>")),
                                                    trim_offsets=True, add_prefix_space=True)
    t.decoder = decoders.ByteLevel(**bl(True, True, True))

    def roberta_edit(d):
        for a in d["added_tokens"]:  # as roberta-base: the first four are special, normalized=false
            a["normalized"] = False
    built["roberta_like"] = (save(t, "roberta_like.json", roberta_edit),
                             "RoBERTa style: pre_tokenizer ByteLevel(add_prefix_space=true, use_regex=true), "
                             "post_processor RobertaProcessing(<s> $A </s>, pair <s> A </s> </s> B </s>), "
                             "<s> <pad> </s> <unk> ids 0..3, <mask> (lstrip=true) after the vocab")

    # ---------------------------------------------------------------- added_flags.json
    t = bpe_train(pre_tokenizers.ByteLevel(**bl(False, True, True)), 600, [], normalizer=normalizers.Lowercase())
    t.add_tokens([
        AddedToken("<lstrip>", special=False, lstrip=True, normalized=False),
        AddedToken("<rstrip>", special=False, rstrip=True, normalized=False),
        AddedToken("<both>", special=False, lstrip=True, rstrip=True, normalized=False),
        AddedToken("<sw>", special=False, single_word=True, normalized=False),
        AddedToken("[norm]", special=False, normalized=True),
        AddedToken("[Raw]", special=False, normalized=False),
        AddedToken("hello", special=False, normalized=True),
    ])
    t.add_special_tokens([
        AddedToken("<|sp|>", special=True, lstrip=True, rstrip=True, normalized=False),
        AddedToken("<|eos|>", special=True, normalized=False),
    ])
    t.post_processor = processors.TemplateProcessing(single="$A <|eos|>", pair="$A <|eos|> $B:1 <|eos|>:1",
                                                     special_tokens=[("<|eos|>", t.token_to_id("<|eos|>"))])
    t.decoder = decoders.ByteLevel(**bl(True, True, True))
    built["added_flags"] = (save(t, "added_flags.json"),
                            "GPT-2 style BPE (600) with normalizer Lowercase and added tokens with flags: <lstrip> "
                            "(lstrip), <rstrip> (rstrip), <both> (lstrip+rstrip), <sw> (single_word), [norm] "
                            "(normalized=true: matches [NORM] too), [Raw] (normalized=false), hello "
                            "(normalized=true, non-special, matches inside words), specials <|sp|> (lstrip+rstrip) "
                            "and <|eos|>; post_processor TemplateProcessing('$A <|eos|>') appends EOS")

    # ---------------------------------------------------------------- ids.json
    long_cases = [
        ("tinyshakespeare_head", "tinyshakespeare.txt", head_text(shakes_path)),
        ("paul_graham_worked_head", "paul_graham_essays/worked.txt", head_text(pg_path)),
    ]
    out = {
        "tokenizers_version": tokenizers.__version__,
        "note": "ids = Tokenizer.from_file(F).encode(text, add_special_tokens=True).ids, ids_no_special = the same "
                "with add_special_tokens=False; decode = decode(ids_no_special, skip_special_tokens=False); "
                "decode_skip = decode(ids, skip_special_tokens=True).  Long texts: the first 20000 bytes of the "
                "file (backed off to a UTF-8 boundary); their ids_no_special are given in full, and ids == "
                "special_prefix + ids_no_special + special_suffix; decode_equals_text / decode_sha256 instead "
                "of the decoded text.",
        "tokenizers": {},
    }
    for name, (t, desc) in built.items():
        d = json.loads(t.to_str())
        entry = {
            "file": f"{name}.json",
            "description": desc,
            "vocab_size_with_added": t.get_vocab_size(with_added_tokens=True),
            "model_vocab_size": len(d["model"]["vocab"]),
            "n_merges": len(d["model"]["merges"]),
            "cases": [],
            "long": [],
        }
        for cname, text in HARD_CASES:
            e1 = t.encode(text, add_special_tokens=True)
            e0 = t.encode(text, add_special_tokens=False)
            entry["cases"].append({
                "name": cname,
                "text": text,
                "ids": e1.ids,
                "ids_no_special": e0.ids,
                "decode": t.decode(e0.ids, skip_special_tokens=False),
                "decode_skip": t.decode(e1.ids, skip_special_tokens=True),
            })
        for cname, src, text in long_cases:
            e1 = t.encode(text, add_special_tokens=True).ids
            e0 = t.encode(text, add_special_tokens=False).ids
            pre_n = next((k for k in range(len(e1) + 1) if e1[k:k + len(e0)] == e0), None)
            assert pre_n is not None, (name, cname)
            dec = t.decode(e0, skip_special_tokens=False)
            entry["long"].append({
                "name": cname,
                "source": src,
                "n_bytes": len(text.encode("utf-8")),
                "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "n_ids": len(e0),
                "special_prefix": e1[:pre_n],
                "special_suffix": e1[pre_n + len(e0):],
                "decode_equals_text": dec == text,
                "decode_sha256": hashlib.sha256(dec.encode("utf-8")).hexdigest(),
                "ids_no_special": e0,
            })
        out["tokenizers"][name] = entry

    path = os.path.join(args.out, "ids.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write('{\n "tokenizers_version": ' + json.dumps(out["tokenizers_version"]) + ",\n")
        f.write(' "note": ' + json.dumps(out["note"]) + ",\n")
        f.write(' "tokenizers": {\n')
        names = list(out["tokenizers"])
        for i, name in enumerate(names):
            e = out["tokenizers"][name]
            f.write(f'  {json.dumps(name)}: {{\n')
            for k in ["file", "description", "vocab_size_with_added", "model_vocab_size", "n_merges"]:
                f.write(f'   {json.dumps(k)}: {json.dumps(e[k], ensure_ascii=False)},\n')
            for key in ["cases", "long"]:
                f.write(f'   {json.dumps(key)}: [\n')
                for j, c in enumerate(e[key]):
                    f.write("    " + json.dumps(c, ensure_ascii=False) + (",\n" if j + 1 < len(e[key]) else "\n"))
                f.write("   ]" + (",\n" if key == "cases" else "\n"))
            f.write("  }" + (",\n" if i + 1 < len(names) else "\n"))
        f.write(" }\n}\n")
    json.load(open(path, encoding="utf-8"))  # well-formed
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
