#!/usr/bin/env python3
"""make_tokenizer_goldens.py -- reference ("golden") token ids for the postnas C tokenizer.

Usage:
    python3 tests/make_tokenizer_goldens.py [--shared DIR] [--out DIR] [--cases FILE]
                                            [--skip-speed | --speed-only]

    --shared DIR   the shared folder (default: ../shared relative to the repository
                   root, i.e. the parent of tests/); the data lives in DIR/data.
    --out DIR      where the goldens go (default: tests/goldens/tokenizer).
    --cases FILE   where the hand-written hard cases go
                   (default: tests/data/tokenizer_hard_cases.jsonl).
    --skip-speed   do not run the two-thread speed pass (qwen2_hf_speed.json then
                   has only the one-thread numbers).
    --speed-only   only re-measure speed: encode the data files again (checking the
                   ids against the existing OUT/qwen2_files.jsonl) and rewrite
                   OUT/qwen2_hf_speed.json; nothing else is written.

Needs Python 3 with `tokenizers` (written against 0.23) and `transformers`
(written against 5.x).  Nothing is downloaded (HF_HUB_OFFLINE=1 is set): the
reference Qwen2 tokenizer is built from the files in
DATA/tokenizers/qwen2/ (vocab.json, merges.txt, tokenizer_config.json; there is
no tokenizer.json), and the tiny tokenizers of part 4 are trained here.
Nothing from the shared folder is copied into the repository except ids,
hashes and the first/last few ids of each file.

Threads: the script sets RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false
before it imports `tokenizers`, so every encoding and all training run on one
thread (this also makes BPE training deterministic).  The two-thread speed pass
runs in a child process of this same script (hidden option --speed2-worker)
with RAYON_NUM_THREADS=2 and TOKENIZERS_PARALLELISM=true, because rayon reads
its thread count only once per process.

Outputs (all JSON Lines files are UTF-8, one object per line, lines end in
"\\n" only; strings are written with ensure_ascii=False, so non-ASCII text is
raw UTF-8 -- including U+2028/U+2029/U+0085, which a reader must not treat as
line ends -- while control characters are \\u escapes / \\r \\n \\t as JSON
requires):

1. The reference tokenizer.
   transformers.AutoTokenizer.from_pretrained(DATA/tokenizers/qwen2) resolves
   to transformers' Qwen2Tokenizer (transformers 5 has no separate "Fast"
   class: Qwen2TokenizerFast is gone and Qwen2Tokenizer is the
   tokenizers-backed one).  It builds BPE(vocab.json, merges.txt,
   byte_fallback=False, unk_token=None, ignore_merges=False), normalizer NFC,
   pre-tokenizer Sequence[Split(Regex(QWEN2_PATTERN), "isolated"),
   ByteLevel(add_prefix_space=False, use_regex=False)], decoder ByteLevel,
   and registers the 22 added tokens of tokenizer_config.json (ids
   151643..151664) with their flags (all lstrip/rstrip/single_word/normalized
   false; special true for 151643..151656, false for 151657..151664).  The
   script checks all of that (pattern, normalizer, merge count, vocabulary
   size, every added token's id and flags) and the known encodings of
   DATA/README.md, and fails loudly on any difference.  As an independent
   cross-check it also builds the same pipeline by hand with the
   `tokenizers` library (BPE from the parsed vocab.json / merges.txt, the
   REFERENCE.md section 3 pre-tokenizer, AddedToken(..., special=...,
   normalized=False) in id order) and asserts that both give identical ids for
   every hard case and every data file.

2. OUT/qwen2_files.jsonl: for every .txt/.jsonl/.csv file under DATA/corpora
   and DATA/tasks (recursively), sorted by the relative path (Python string
   order, "/" separators), one line
       {"file": path relative to DATA, "bytes": file size,
        "n_ids": number of ids, "sha256": hex sha256 of the ids as a
        little-endian uint32 array, "head": first 48 ids, "tail": last 16 ids}
   where ids = tokenizer(text, add_special_tokens=False)["input_ids"] and
   text = the raw file bytes decoded as strict UTF-8 (whole file, one string,
   nothing stripped, no BOM handling -- none of the files has one).
   OUT/qwen2_hf_speed.json: timings of that encoding (NOT deterministic, not for
   tests; for comparing speed with the C tokenizer).  MB = 10^6 bytes of UTF-8
   input.  One thread: per file, the wall time of the transformers call above
   ("transformers") and of the hand-built tokenizers.Tokenizer.encode
   ("tokenizers"), both one call per whole file.  Two threads: per file, the
   text is cut into chunks of about 64 K characters, each cut right after a
   "\\n" that is followed by a non-whitespace character or by one space and a
   non-whitespace character (such a cut can never
   change the pre-tokenization, so the concatenated ids equal the one-thread
   ids; the child checks the sha256), and the chunks are encoded with one
   batch call: tokenizer(chunks) through transformers and
   backend_tokenizer.encode_batch(chunks) directly.

3. tests/data/tokenizer_hard_cases.jsonl (written from the HARD_CASES list
   below): {"name", "text"} per case, names unique.
   OUT/qwen2_hard_cases.jsonl, per case:
       {"name", "text",
        "ids":               tokenizer(text, add_special_tokens=False),
        "ids_split_special": the same with split_special_tokens=True -- this is
                             transformers' option (it sets the backend's
                             encode_special_tokens): tokens flagged special
                             (151643..151656) are NOT recognized and are
                             encoded as plain text, but the 8 added tokens
                             with special=false (<tool_call>, </tool_call>,
                             <|fim_*|>, <|repo_name|>, <|file_sep|>) ARE
                             still matched as single ids,
        "ids_no_added":      the text with no added token recognized at all:
                             the hand-built tokenizer of (1) without any added
                             tokens (pure NFC + regex + byte-level BPE),
        "decoded":           tokenizer.decode(ids) (skip_special_tokens=False,
                             clean_up_tokenization_spaces=False); equal to the
                             text except where NFC changes it (the script
                             checks decoded == NFC(text) for every case)}.

4. Tiny byte-level BPE tokenizers, for the tokenizer.json loading path and the
   other pre-tokenizers.  Each is trained with tokenizers' BpeTrainer
   (vocab_size 600, initial_alphabet = ByteLevel.alphabet(), min_frequency 0,
   no progress bar, one thread) on the first 200,000 bytes of
   DATA/corpora/wikitext2-test.raw.txt (cut back to the last "\\n" in them),
   fed line by line; the text is read from the shared folder, not copied.
   Saved as OUT/<name>/tokenizer.json:
     qwen2-style   normalizer NFC; pre_tokenizer Sequence[Split(Regex(Qwen2
                   pattern), "isolated"), ByteLevel(add_prefix_space=False,
                   use_regex=False)]; decoder ByteLevel; post_processor
                   ByteLevel(trim_offsets=False); "<|endoftext|>" and
                   "<|im_start|>" added AFTER training as special tokens, so
                   they are only in "added_tokens" (ids 600, 601), not in
                   model.vocab -- the layout of the real Qwen2 tokenizer.json;
                   merges in the list-of-pairs format [["a","b"], ...] (what
                   tokenizers 0.23 writes; checked).
     gpt2-style    no normalizer; pre_tokenizer ByteLevel(add_prefix_space=False,
                   use_regex=True) (the built-in GPT-2 regex); decoder
                   ByteLevel; post_processor ByteLevel(trim_offsets=False);
                   "<|endoftext|>" is a trainer special token, so it is id 0
                   and appears both in model.vocab and in added_tokens;
                   merges post-edited into the legacy "a b" string format (the
                   script checks that tokenizers.Tokenizer.from_file loads the
                   edited file and gives the same ids and decodes for every
                   hard case).
     llama3-style  no normalizer; pre_tokenizer Sequence[Split(Regex(Llama 3
                   pattern), "isolated"), ByteLevel(add_prefix_space=False,
                   use_regex=False)]; decoder ByteLevel; model
                   ignore_merges=true (as in the real Llama 3 tokenizer.json:
                   a pre-token that is itself in the vocabulary becomes that
                   one id without applying merges).  A trained vocabulary has
                   no token that its merges cannot build, so to make
                   ignore_merges matter two entries are appended to
                   model.vocab after training: "Hello" (id 600) and
                   "\u0120world" (= " world", id 601), which no merge
                   produces; with ignore_merges they are single ids, without
                   it BPE pieces (the script checks both).  Then
                   "<|begin_of_text|>" is added as special (id 602);
                   post_processor TemplateProcessing "<|begin_of_text|> $A"
                   (only seen with add_special_tokens=True).
   OUT/<name>/expected.jsonl: per hard case (same order)
       {"name", "text", "ids": encode(text, add_special_tokens=False).ids,
        "ids_add_special": encode(text, add_special_tokens=True).ids,
        "decoded": decode(ids, skip_special_tokens=False)}
   (note tokenizers.Tokenizer.decode skips special tokens by default;
   transformers' decode does not).

5. A summary on stdout.  Rerunning gives byte-identical files except
   qwen2_hf_speed.json.  A full run takes about 3 minutes on 2 cores.

Observed Hugging Face behaviour worth knowing when matching it in C
(tokenizers 0.23.3, transformers 5.23.0; all of it is in the goldens):
  * split_special_tokens=True only stops the special=true added tokens from
    matching; the special=false ones (<tool_call>, <|fim_prefix|>, ...) still
    match.  Hence the two fields ids_split_special / ids_no_added.
  * Lone surrogates ("\\ud800") cannot be encoded at all: transformers and
    tokenizers raise TypeError (a Python str with a lone surrogate cannot
    become a Rust String).  So there are no such cases; every golden text is
    valid UTF-8 (invalid UTF-8 bytes cannot appear in a JSON string either).
  * "\\r" is an ordinary whitespace character: "\\r" -> [201], "\\r\\n" ->
    [319], "\\r\\n\\r\\n" -> one token (via \\s*[\\r\\n]+).
  * U+0085 and U+00A0 are whitespace for \\s but, like " ", can also be the
    one optional prefix character of [^\\r\\n\\p{L}\\p{N}]?\\p{L}+
    ("a\\u0085b" pre-tokenizes as "a", "\\u0085b"); U+200B and U+FEFF are not
    whitespace.
  * (?i:'s|...) uses Unicode simple case folding: "'\\u017f" (long s) is
    matched as a contraction.  With this vocabulary that never changes the
    ids (no token joins U+017F with anything), so ASCII-only case folding
    gives the same ids on every hard case; U+212A (Kelvin) is NFC-mapped to
    "K" before the regex.
  * decode() of the ids equals NFC(text), not text, for the 11 NFC cases
    (e.g. "e\\u0301" -> "\\u00e9", U+212B -> U+00C5, U+0958 -> U+0915 U+093C).
"""

import argparse
import os
import sys

# Must happen before `tokenizers` is imported anywhere (rayon reads it once).
if "--speed2-worker" in sys.argv:
    os.environ["RAYON_NUM_THREADS"] = "2"
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
else:
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import array  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
from pathlib import Path  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer  # noqa: E402
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

KNOWN_ENCODINGS = [
    ("Hello world", [9707, 1879]),
    (" Hello world", [21927, 1879]),
    ("The capital of France is", [785, 6722, 315, 9625, 374]),
    ("3333", [18, 18, 18, 18]),
    ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
     [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198]),
]

N_VOCAB = 151643          # vocab.json entries, ids 0..151642
N_MERGES = 151387         # merges.txt lines after "#version: 0.2"
FILE_EXTS = (".txt", ".jsonl", ".csv")
HEAD, TAIL = 48, 16
CHUNK_CHARS = 64 * 1024
TRAIN_BYTES = 200_000
TINY_VOCAB = 600


def die(msg):
    sys.exit("make_tokenizer_goldens: FAIL: " + msg)


# ---------------------------------------------------------------- hard cases

ADDED_TOKENS = [  # id, content, special -- checked against tokenizer_config.json
    (151643, "<|endoftext|>", True), (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True), (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True), (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True), (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True), (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True), (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True), (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False), (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False), (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False), (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False), (151664, "<|file_sep|>", False),
]


def _long_word():
    # 500 letters, deterministic, not a repetition of one letter
    letters = "abcdefghijklmnopqrstuvwxyz"
    x, out = 12345, []
    for _ in range(500):
        x = (x * 1103515245 + 12345) % (1 << 31)
        out.append(letters[(x >> 16) % 26])
    return "".join(out)


def _token_name(content):
    return re.sub(r"[^a-z0-9_]", "", content.lower().replace("/", "end_"))


HARD_CASES = [
    # --- trivial / boundaries
    ("empty", ""),
    ("single_space", " "),
    ("single_letter", "a"),
    ("only_spaces", "        "),
    ("long_word_500_letters", _long_word()),
    ("long_word_500_a", "a" * 500),
    ("long_digit_run", "1234567890" * 10),
    ("long_space_run_then_word", " " * 100 + "x"),
    ("many_newlines", "\n" * 50),
    # --- whitespace and newlines
    ("crlf", "line one\r\nline two\r\n"),
    ("cr_only", "a\rb\rc"),
    ("lone_cr", "\r"),
    ("three_newlines", "a\n\n\nb"),
    ("crlf_double", "a\r\n\r\nb\r\n \r\nc"),
    ("cr_space_mix", "a\r \rb \r"),
    ("spaces_newline_spaces", "a  \n  b"),
    ("spaces_around_newline_end", "  \n  "),
    ("tabs", "\tindented\t\ttabs\t"),
    ("trailing_spaces", "trailing spaces   "),
    ("leading_spaces", "   leading spaces"),
    ("space_tab_mix", "x \t y\t \tz"),
    ("nbsp", "100\u00a0km and\u00a0\u00a0more\u00a0"),
    ("ideographic_space", "東京\u3000大阪\u3000"),
    ("line_separator", "x\u2028y\u2029z"),
    ("next_line_u0085", "a\u0085b"),
    ("vtab_formfeed", "a\u000bb\u000cc"),
    ("zero_width_space_not_ws", "a\u200bb \u200b c"),
    ("bom_at_start", "\ufeffHello"),
    ("blank_lines_with_spaces", "para one.\n \n\t\n  \npara two."),
    ("newline_then_space_word", "end\n word"),
    ("space_before_punct_newline", "ok !!\n\n"),
    # --- numbers
    ("digits_12345", "12345"),
    ("pi", "3.14159"),
    ("thousands", "1,000,000"),
    ("negative_exp", "-42 and 1e-10 and 0x1F"),
    ("ordinals_units", "3rd 21st 100km 2x4 v1.2.3"),
    ("arabic_indic_digits", "٣٤٥"),
    ("devanagari_digits", "१२३"),
    ("fullwidth_digits", "１２３"),
    ("circled_one", "①②③"),
    ("superscript", "x² + y³ = z⁴"),
    ("fractions_roman", "½ ¾ Ⅻ ⅷ"),
    # --- contractions (the (?i:...) alternative)
    ("contractions_upper", "I'M SURE THEY'RE FINE, DON'T WORRY"),
    ("contractions_mixed_case", "they'LL It'S we'Ve she'D you'Re I'm don'T"),
    ("contraction_d_alone", "'d"),
    ("contraction_double_quote_s", "''s"),
    ("contraction_space_s", "it 's"),
    ("contraction_alone_s", "'s 'S 't 're 've 'm 'll 'd"),
    ("contraction_long_s_casefold", "it'ſ here"),
    ("contraction_kelvin_sign", "'\u212a and 'K"),
    ("contraction_long_s_then_letter", "x'\u017ft Jesu'\u017f'\u017fa"),
    ("contraction_then_letters", "they'llx we'veto I'dd"),
    ("apostrophe_run", "''' ' '' x''"),
    ("curly_apostrophe", "don\u2019t it\u2019s"),
    ("apostrophe_digits", "'90s rock'n'roll"),
    # --- punctuation
    ("punct_run", "Wait!!! What??? ...really?!?"),
    ("punct_newlines", "---\n\n***\r\n!!!\n"),
    ("arrows", "a-->b <== c ==> d"),
    ("quotes_mixed", "\u00abquoted\u00bb \u201cdouble\u201d \u2018single\u2019 \u00bfque? \u00a1si!"),
    ("ellipsis_char", "wait\u2026 what\u2026"),
    ("math_symbols", "\u2211\u222b\u221a\u221e \u2260 \u2264 \u2265 \u00b1"),
    # --- URLs, code, markup
    ("url", "See https://example.com/path/to?q=1&r=two#frag for more."),
    ("email", "mail user.name+tag@example.co.uk now"),
    ("python_code", "def f(x):\n    if x > 0:\n        return x + 1\n\n\nclass A:\n\tpass\n"),
    ("c_code", "int main(void) {\n    printf(\"%d\\n\", a[i]++);\n    return 0;\n}\n"),
    ("json_snippet", '{"key": [1, 2.5, null], "k2": "v\\"q"}'),
    ("html", "<div class=\"x\">Hi &amp; bye</div>"),
    ("markdown", "# Title\n\n* item one\n* item two\n\n```bash\nls -la\n```\n"),
    ("ansi_escape_del_nul", "\u001b[31mred\u001b[0m\u007f a\u0000b"),
    # --- emoji
    ("emoji_simple", "I love it 😀😂🎉"),
    ("emoji_skin_tone", "👍🏽 👋🏿"),
    ("emoji_zwj_family", "👨\u200d👩\u200d👧\u200d👦"),
    ("emoji_flags", "🇫🇷🇯🇵 🇺🇸"),
    ("emoji_rainbow_flag_vs16", "🏳\ufe0f\u200d🌈 ❤\ufe0f"),
    ("emoji_keycap", "1\ufe0f\u20e3 #\ufe0f\u20e3"),
    # --- CJK
    ("chinese", "我爱北京天安门。你好，世界！"),
    ("japanese_kana_kanji", "東京はひらがなとカタカナ、漢字を使います。"),
    ("korean", "안녕하세요, 세계! 한국어 텍스트입니다."),
    ("halfwidth_katakana", "ｶﾀｶﾅ ﾃｽﾄ"),
    # --- Indic, Thai
    ("hindi", "नमस्ते दुनिया, यह एक परीक्षण है।"),
    ("tamil", "வணக்கம் உலகம்"),
    ("bengali", "আমি বাংলায় গান গাই"),
    ("thai", "สวัสดีครับ ภาษาไทย"),
    ("devanagari_qa_composition_exclusion", "\u0958\u0915\u093c"),
    # --- RTL
    ("arabic", "مرحبا بالعالم"),
    ("arabic_harakat", "العَرَبِيَّة"),
    ("hebrew_niqqud", "שָׁלוֹם עוֹלָם"),
    ("rtl_mixed_ltr", "The word שלום means peace (سلام)."),
    # --- NFC: composes / changes
    ("nfc_e_acute", "caf" + "e\u0301"),
    ("nfc_a_ring", "A\u030angstr\u00f6m"),
    ("nfc_hangul_jamo", "\u1100\u1161\u11a8 \u1112\u1161\u11ab"),
    ("nfc_angstrom_sign", "\u212b \u2126"),
    ("nfc_reorder_marks", "q\u0307\u0323"),
    ("nfc_recompose_dot", "\u1e0b\u0323"),
    ("nfc_greek_dialytika_tonos", "\u03b9\u0344"),
    ("nfc_many_precomposable", "Ame\u0301lie na\u0308ive Ren\u0303e"),
    # --- NFC: stays
    ("combining_no_precomposed", "x\u0301 a\u0332b\u0332"),
    ("zalgo", "Z\u0324\u0308a\u030el\u034bg\u030fo\u0322"),
    ("ligature_fi_nfkc_only", "\ufb01nance \ufb02ow"),
    ("precomposed_already", "\u00e9\u00c5\u00f1"),
    # --- other scripts / letters
    ("cyrillic_greek", "Привет мир! Γειά σου Κόσμε!"),
    ("german_sharp_s", "Stra\u00dfe STRA\u1e9eE"),
    ("turkish_dotted_i", "\u0130stanbul \u0131s\u0131k"),
    ("titlecase_digraph", "\u01c5ivko \u01c4"),
    ("special_unicode", "\ufffd \ue000 \uffff \U0010ffff \U0001d54f"),
    # --- mixed scripts without spaces
    ("mixed_scripts_no_spaces", "Hello世界Привет123мир😀abc"),
    ("mixed_scripts_2", "日本語English한국어ελληνικά١٢٣"),
    ("letters_digits_interleaved", "abc123def456ghi"),
]

# --- added tokens: alone, embedded with spaces, embedded without spaces
for _id, _content, _special in ADDED_TOKENS:
    HARD_CASES.append(("added_alone_" + _token_name(_content), _content))
for _id, _content, _special in ADDED_TOKENS:
    HARD_CASES.append(("added_embedded_" + _token_name(_content), "Hello " + _content + " world"))
HARD_CASES += [
    ("added_no_spaces", "a<|im_end|>b<tool_call>c<|fim_prefix|>d"),
    ("added_adjacent", "<|im_start|><|im_end|><|endoftext|><|endoftext|>"),
    ("added_adjacent_nonspecial", "<tool_call></tool_call><|fim_prefix|><|fim_suffix|><|fim_middle|>"),
    ("added_spaces_around", " <|endoftext|> "),
    ("added_newlines_around", "\n<|im_start|>\n\n<|im_end|>\n"),
    ("added_partial_im_start", "<|im_start"),
    ("added_partial_endoftext", "<|endoftext|"),
    ("added_partial_suffix", "im_start|> and |endoftext|>"),
    ("added_partial_then_full", "<|im_start<|im_start|>"),
    ("added_wrong_case", "<|IM_START|> <|EndOfText|>"),
    ("added_inner_space", "< |im_start|> <| im_start |>"),
    ("added_nested", "<|im_<|endoftext|>start|>"),
    ("added_prefix_of_other", "<|fim_pad|><|fim_prefix|><|fim_"),
    ("added_with_nfc_after", "<|im_end|>e\u0301"),
    ("added_in_words", "tool<tool_call>call</tool_call>s"),
    ("chat_template", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
                      "2+2 = 4.<|im_end|>\n<|endoftext|>"),
    ("fim_layout", "<|repo_name|>postnas\n<|file_sep|>src/a.c\n<|fim_prefix|>int f(){\n"
                   "<|fim_suffix|>\n}\n<|fim_middle|>return 1;"),
    ("vision_layout", "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Describe."),
]


# ---------------------------------------------------------------- helpers

def sha256_u32(ids):
    a = array.array("I", ids)
    if a.itemsize != 4:
        a = array.array("L", ids)
        if a.itemsize != 4:
            die("no 4-byte array type")
    if sys.byteorder == "big":
        a.byteswap()
    return hashlib.sha256(a.tobytes()).hexdigest()


def jline(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def data_files(data):
    out = []
    for top in ("corpora", "tasks"):
        for p in (data / top).rglob("*"):
            if p.is_file() and p.name.endswith(FILE_EXTS):
                out.append(p.relative_to(data).as_posix())
    if not out:
        die(f"no data files under {data}/corpora or {data}/tasks")
    return sorted(out)


def read_utf8(path):
    raw = path.read_bytes()
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as e:
        die(f"{path} is not valid UTF-8: {e}")


# A cut right after a "\n" that is followed by a non-whitespace character, or by
# one space and then a non-whitespace character, never changes the Qwen2
# pre-tokenization: no pre-token runs past such a newline (letter runs and
# punctuation runs cannot contain it, `\s*[\r\n]+` and `[\r\n]*` stop at the
# last newline of a whitespace run, and the next pre-token starts at the space
# or the non-whitespace character in both cases), and NFC never composes
# across "\n".  Python's \S is narrower than Rust's (Python also counts
# U+001C..U+001F as space), so this errs on the safe side.
CUT_RE = re.compile(r"\n(?= ?\S)")


def chunks_at_newlines(text, size=CHUNK_CHARS):
    """Cut at CUT_RE matches, each chunk >= size characters (except the last)."""
    out, start = [], 0
    while len(text) - start > size:
        m = CUT_RE.search(text, start + size - 1)
        if not m:
            break
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return out


# ---------------------------------------------------------------- Qwen2 reference

def load_qwen2_transformers(qdir):
    import transformers
    from transformers import AutoTokenizer
    transformers.logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(qdir), local_files_only=True)


def read_vocab_merges(qdir):
    vocab = json.loads((qdir / "vocab.json").read_text(encoding="utf-8"))
    lines = (qdir / "merges.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = []
    for ln in lines:
        if not ln:
            continue
        parts = ln.split(" ")
        if len(parts) != 2:
            die(f"bad merges.txt line {ln!r}")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def build_qwen2_by_hand(qdir, with_added=True):
    vocab, merges = read_vocab_merges(qdir)
    if len(vocab) != N_VOCAB or len(merges) != N_MERGES:
        die(f"vocab {len(vocab)} / merges {len(merges)}, expected {N_VOCAB} / {N_MERGES}")
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                             continuing_subword_prefix="", end_of_word_suffix="",
                             fuse_unk=False, byte_fallback=False, ignore_merges=False))
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    if with_added:
        for tid, content, special in ADDED_TOKENS:
            tok = AddedToken(content, single_word=False, lstrip=False, rstrip=False,
                             normalized=False, special=special)
            if special:
                t.add_special_tokens([tok])
            else:
                t.add_tokens([tok])
            if t.token_to_id(content) != tid:
                die(f"hand-built: {content} got id {t.token_to_id(content)}, expected {tid}")
    return t


def check_qwen2(tok, qdir):
    cls = type(tok).__name__
    if cls != "Qwen2Tokenizer":
        die(f"AutoTokenizer gave {cls}, expected Qwen2Tokenizer")
    j = json.loads(tok.backend_tokenizer.to_str())
    m = j["model"]
    if m["type"] != "BPE" or len(m["merges"]) != N_MERGES or len(m["vocab"]) != N_VOCAB:
        die(f"backend model {m['type']} merges {len(m['merges'])} vocab {len(m['vocab'])}")
    for k, v in (("byte_fallback", False), ("ignore_merges", False), ("unk_token", None),
                 ("dropout", None), ("fuse_unk", False)):
        if m.get(k) != v:
            die(f"backend BPE {k} = {m.get(k)!r}, expected {v!r}")
    if j["normalizer"] != {"type": "NFC"}:
        die(f"normalizer {j['normalizer']}")
    pt = j["pre_tokenizer"]
    try:
        split, bl = pt["pretokenizers"]
        ok = (pt["type"] == "Sequence" and split["type"] == "Split"
              and split["pattern"] == {"Regex": QWEN2_PATTERN}
              and split["behavior"] == "Isolated" and split["invert"] is False
              and bl["type"] == "ByteLevel" and bl["add_prefix_space"] is False
              and bl["use_regex"] is False)
    except (KeyError, ValueError, TypeError):
        ok = False
    if not ok:
        die(f"pre_tokenizer {pt}")
    if j["decoder"]["type"] != "ByteLevel":
        die(f"decoder {j['decoder']}")
    # added tokens: the config, transformers' view and the backend must agree
    cfg = json.loads((qdir / "tokenizer_config.json").read_text(encoding="utf-8"))
    dec = cfg["added_tokens_decoder"]
    if sorted(int(k) for k in dec) != [t[0] for t in ADDED_TOKENS]:
        die("tokenizer_config.json added tokens are not ids 151643..151664")
    backend_added = {a["id"]: a for a in j["added_tokens"]}
    if sorted(backend_added) != [t[0] for t in ADDED_TOKENS]:
        die(f"backend added tokens {sorted(backend_added)}")
    flags = ("lstrip", "rstrip", "single_word", "normalized", "special")
    for tid, content, special in ADDED_TOKENS:
        c = dec[str(tid)]
        if c["content"] != content or c["special"] != special:
            die(f"config token {tid}: {c}")
        t = tok.added_tokens_decoder[tid]
        b = backend_added[tid]
        if t.content != content or b["content"] != content:
            die(f"token {tid}: transformers {t.content!r} backend {b['content']!r}")
        for fl in flags:
            if getattr(t, fl) != c[fl] or b[fl] != c[fl]:
                die(f"token {tid} {content} flag {fl}: config {c[fl]} transformers "
                    f"{getattr(t, fl)} backend {b[fl]}")
        if tok.convert_tokens_to_ids(content) != tid:
            die(f"{content} -> {tok.convert_tokens_to_ids(content)}")
    if len(tok) != N_VOCAB + len(ADDED_TOKENS):
        die(f"len(tokenizer) = {len(tok)}")
    for text, want in KNOWN_ENCODINGS:
        got = tok(text, add_special_tokens=False)["input_ids"]
        if got != want:
            die(f"known encoding {text!r}: got {got}, expected {want}")
        # add_special_tokens=True must add nothing (no BOS/EOS for Qwen2)
        if tok(text)["input_ids"] != want:
            die(f"add_special_tokens=True changes {text!r}")
    return j


# ---------------------------------------------------------------- part 2

def encode_files(tok, ref, data, files):
    lines, speed_files = [], []
    tot_bytes = tot_hf = tot_raw = 0.0
    for rel in files:
        raw, text = read_utf8(data / rel)
        t0 = time.perf_counter()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        t1 = time.perf_counter()
        ids2 = ref.encode(text, add_special_tokens=False).ids
        t2 = time.perf_counter()
        if ids != ids2:
            die(f"{rel}: transformers and hand-built tokenizers differ")
        if not ids and raw:
            die(f"{rel}: no ids")
        sha = sha256_u32(ids)
        lines.append(jline({"file": rel, "bytes": len(raw), "n_ids": len(ids), "sha256": sha,
                            "head": ids[:HEAD], "tail": ids[-TAIL:]}))
        speed_files.append({"file": rel, "bytes": len(raw), "n_ids": len(ids), "sha256": sha,
                            "s_transformers_1t": round(t1 - t0, 6),
                            "s_tokenizers_1t": round(t2 - t1, 6)})
        tot_bytes += len(raw)
        tot_hf += t1 - t0
        tot_raw += t2 - t1
    return lines, speed_files, int(tot_bytes), tot_hf, tot_raw


def speed2_worker(shared):
    data = shared / "data"
    tok = load_qwen2_transformers(data / "tokenizers" / "qwen2")
    bt = tok.backend_tokenizer
    res = []
    for rel in data_files(data):
        raw, text = read_utf8(data / rel)
        chunks = chunks_at_newlines(text)
        t0 = time.perf_counter()
        enc = tok(chunks, add_special_tokens=False)["input_ids"]
        t1 = time.perf_counter()
        enc2 = bt.encode_batch(chunks, add_special_tokens=False)
        t2 = time.perf_counter()
        ids = [i for e in enc for i in e]
        ids2 = [i for e in enc2 for i in e.ids]
        if ids != ids2:
            die(f"speed2 {rel}: transformers and backend batch differ")
        res.append({"file": rel, "bytes": len(raw), "chunks": len(chunks),
                    "sha256": sha256_u32(ids), "s_transformers_2t": t1 - t0,
                    "s_tokenizers_2t": t2 - t1})
    json.dump({"rayon_num_threads": os.environ.get("RAYON_NUM_THREADS"), "files": res},
              sys.stdout)


# ---------------------------------------------------------------- part 4

def train_text(data):
    raw = (data / "corpora" / "wikitext2-test.raw.txt").read_bytes()[:TRAIN_BYTES]
    raw = raw[:raw.rfind(b"\n") + 1]
    text = raw.decode("utf-8")
    return [ln for ln in re.split(r"(?<=\n)", text) if ln]


def make_variant(name, lines):
    bl_alphabet = pre_tokenizers.ByteLevel.alphabet()
    if name == "qwen2-style":
        t = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, ignore_merges=False))
        t.normalizer = normalizers.NFC()
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        trainer_specials = []
    elif name == "gpt2-style":
        t = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, ignore_merges=False))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer_specials = ["<|endoftext|>"]
    elif name == "llama3-style":
        t = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, ignore_merges=True))
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        trainer_specials = []
    else:
        die(name)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, min_frequency=0, show_progress=False,
                                  special_tokens=trainer_specials,
                                  initial_alphabet=bl_alphabet)
    t.train_from_iterator(lines, trainer=trainer)
    if t.get_vocab_size() != TINY_VOCAB:
        die(f"{name}: trained vocab {t.get_vocab_size()}")
    if name == "qwen2-style":
        t.add_special_tokens([AddedToken(s, normalized=False, special=True)
                              for s in ("<|endoftext|>", "<|im_start|>")])
        t.post_processor = processors.ByteLevel(trim_offsets=False)
    elif name == "gpt2-style":
        t.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        j = json.loads(t.to_str())
        for w in UNREACHABLE:
            if w in j["model"]["vocab"]:
                die(f"{name}: {w!r} is already in the trained vocabulary")
            j["model"]["vocab"][w] = len(j["model"]["vocab"])
        t = Tokenizer.from_str(json.dumps(j))
        t.add_special_tokens([AddedToken("<|begin_of_text|>", normalized=False, special=True)])
        bos = t.token_to_id("<|begin_of_text|>")
        t.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])
    return t


def expected_lines(t, cases):
    out = []
    for name, text in cases:
        ids = t.encode(text, add_special_tokens=False).ids
        out.append({"name": name, "text": text, "ids": ids,
                    "ids_add_special": t.encode(text, add_special_tokens=True).ids,
                    "decoded": t.decode(ids, skip_special_tokens=False)})
    return out


def byte_decoder():
    # GPT-2 bytes_to_unicode, inverted
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


UNREACHABLE = ("Hello", "\u0120world")  # appended to llama3-style's vocab


def ignore_merges_witnesses(t):
    """Vocab tokens (by id) whose text is one pre-token and whose BPE with
    merges differs from the single id that ignore_merges gives."""
    j = json.loads(t.to_str())
    j["model"]["ignore_merges"] = False
    t_no = Tokenizer.from_str(json.dumps(j))
    bd = byte_decoder()
    out = []
    for tokstr, tid in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1]):
        try:
            text = bytes(bd[c] for c in tokstr).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            continue
        pre = t.pre_tokenizer.pre_tokenize_str(text)
        if len(pre) != 1:
            continue
        a = t.encode(text, add_special_tokens=False).ids
        b = t_no.encode(text, add_special_tokens=False).ids
        if a == [tid] and b != a:
            out.append((text, tid, b))
    return out


def write_variants(out, data, cases):
    lines = train_text(data)
    summary = []
    for name in ("qwen2-style", "gpt2-style", "llama3-style"):
        t = make_variant(name, lines)
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        path = d / "tokenizer.json"
        t.save(str(path), pretty=True)
        j = json.loads(path.read_text(encoding="utf-8"))
        merges = j["model"]["merges"]
        if not merges:
            die(f"{name}: zero merges")
        exp = expected_lines(t, cases)
        note = ""
        if name == "qwen2-style":
            if not all(isinstance(m, list) and len(m) == 2 for m in merges):
                die(f"{name}: merges are not written as pairs")
        if name == "gpt2-style":
            if any(" " in a or " " in b for a, b in merges):
                die(f"{name}: a merge contains a space, cannot use 'a b' strings")
            j["model"]["merges"] = [a + " " + b for a, b in merges]
            write_text(path, json.dumps(j, ensure_ascii=False, indent=2) + "\n")
            t2 = Tokenizer.from_file(str(path))
            if expected_lines(t2, cases) != exp:
                die(f"{name}: the 'a b' merges file encodes differently")
            t = t2
        if name == "llama3-style":
            w = ignore_merges_witnesses(t)
            bd = byte_decoder()
            want = [bytes(bd[c] for c in u).decode("utf-8") for u in UNREACHABLE]
            if [x[0] for x in w] != want:
                die(f"{name}: ignore_merges witnesses {w}, expected exactly {want}")
            note = "ignore_merges witnesses: " + ", ".join(
                f"{text!r} -> [{tid}] (by merges {without})" for text, tid, without in w)
        # reload check: the saved file reproduces the in-memory tokenizer
        if expected_lines(Tokenizer.from_file(str(path)), [(c["name"], c["text"]) for c in exp]) != exp:
            die(f"{name}: reloaded tokenizer.json differs")
        write_text(d / "expected.jsonl", "".join(jline(e) for e in exp))
        summary.append((name, path.stat().st_size, len(merges), len(exp), note))
    return summary


# ---------------------------------------------------------------- main

def main():
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(repo.parent / "shared"))
    ap.add_argument("--out", default=str(repo / "tests" / "goldens" / "tokenizer"))
    ap.add_argument("--cases", default=str(repo / "tests" / "data" / "tokenizer_hard_cases.jsonl"))
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--speed2-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shared = Path(args.shared).resolve()
    data = shared / "data"
    if args.speed2_worker:
        speed2_worker(shared)
        return
    qdir = data / "tokenizers" / "qwen2"
    if not (qdir / "vocab.json").is_file():
        die(f"{qdir}/vocab.json not found (use --shared)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import transformers
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}, "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")

    # 1. reference tokenizer + checks
    tok = load_qwen2_transformers(qdir)
    check_qwen2(tok, qdir)
    ref = build_qwen2_by_hand(qdir, with_added=True)
    plain = build_qwen2_by_hand(qdir, with_added=False)
    print(f"reference: {type(tok).__name__} via AutoTokenizer.from_pretrained({qdir}); "
          f"{N_VOCAB} vocab + {len(ADDED_TOKENS)} added tokens, {N_MERGES} merges; "
          f"known encodings OK")

    if args.speed_only:
        speed_pass(tok, ref, data, shared, out, args, check_existing=True)
        print("done")
        return

    # 3. hard cases (before the files: they are cheap and catch problems early)
    names = [n for n, _ in HARD_CASES]
    if len(set(names)) != len(names):
        die("duplicate hard-case names")
    write_text(Path(args.cases), "".join(jline({"name": n, "text": s}) for n, s in HARD_CASES))
    hard, nfc_diff = [], []
    for name, text in HARD_CASES:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ref.encode(text, add_special_tokens=False).ids != ids:
            die(f"hard case {name}: transformers and hand-built tokenizers differ")
        split = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ref.encode_special_tokens = True
        if ref.encode(text, add_special_tokens=False).ids != split:
            die(f"hard case {name}: split_special_tokens and encode_special_tokens differ")
        ref.encode_special_tokens = False
        no_added = plain.encode(text, add_special_tokens=False).ids
        decoded = tok.decode(ids)
        if decoded != unicodedata.normalize("NFC", text):
            die(f"hard case {name}: decode gives {decoded!r}, not NFC(text)")
        if decoded != text:
            nfc_diff.append(name)
        hard.append({"name": name, "text": text, "ids": ids, "ids_split_special": split,
                     "ids_no_added": no_added, "decoded": decoded})
    # the default must not have been changed by the split_special_tokens call
    if tok(KNOWN_ENCODINGS[4][0], add_special_tokens=False)["input_ids"] != KNOWN_ENCODINGS[4][1]:
        die("split_special_tokens=True stuck")
    write_text(out / "qwen2_hard_cases.jsonl", "".join(jline(h) for h in hard))
    print(f"hard cases: {len(hard)} written to {args.cases} and {out}/qwen2_hard_cases.jsonl; "
          f"decoded != text (NFC) for {len(nfc_diff)}: {', '.join(nfc_diff)}")

    # 4. tiny tokenizer.json variants
    variants = write_variants(out, data, HARD_CASES)
    for name, size, nm, ne, note in variants:
        print(f"variant {name}: tokenizer.json {size} bytes, {nm} merges, {ne} expected lines"
              + (f"; {note}" if note else ""))

    # 2. all data files
    speed_pass(tok, ref, data, shared, out, args, check_existing=False)
    print("done")


def speed_pass(tok, ref, data, shared, out, args, check_existing):
    import transformers
    files = data_files(data)
    load_before = os.getloadavg()
    lines, speed_files, tot_bytes, tot_hf, tot_raw = encode_files(tok, ref, data, files)
    if check_existing:
        old = (out / "qwen2_files.jsonl").read_text(encoding="utf-8")
        if old != "".join(lines):
            die(f"ids differ from the existing {out}/qwen2_files.jsonl")
    else:
        write_text(out / "qwen2_files.jsonl", "".join(lines))
    total_ids = sum(f["n_ids"] for f in speed_files)
    print(f"files: {len(files)} files, {tot_bytes} bytes, {total_ids} ids -> {out}/qwen2_files.jsonl")
    speed = {
        "note": "wall-clock timings of Hugging Face encoding, not deterministic, not for tests; "
                "MB = 1e6 bytes of UTF-8 input",
        "machine": {"nproc": os.cpu_count(),
                    "loadavg_1_5_15_before": [round(x, 2) for x in load_before]},
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
        "total_bytes": tot_bytes, "total_ids": total_ids, "n_files": len(files),
        "one_thread": {
            "how": "RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false; one call per whole file",
            "transformers": {"seconds": round(tot_hf, 4), "mb_per_s": round(tot_bytes / tot_hf / 1e6, 4)},
            "tokenizers": {"seconds": round(tot_raw, 4), "mb_per_s": round(tot_bytes / tot_raw / 1e6, 4)},
        },
    }
    if not args.skip_speed:
        env = dict(os.environ, RAYON_NUM_THREADS="2", TOKENIZERS_PARALLELISM="true")
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--speed2-worker",
                            "--shared", str(shared)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"speed2 worker failed:\n{r.stderr}")
        w = json.loads(r.stdout)
        by = {f["file"]: f for f in w["files"]}
        s_hf2 = s_raw2 = 0.0
        for f in speed_files:
            g = by[f["file"]]
            if g["sha256"] != f["sha256"]:
                die(f"speed2 {f['file']}: chunked ids differ from whole-file ids")
            f["chunks"] = g["chunks"]
            f["s_transformers_2t"] = round(g["s_transformers_2t"], 6)
            f["s_tokenizers_2t"] = round(g["s_tokenizers_2t"], 6)
            s_hf2 += g["s_transformers_2t"]
            s_raw2 += g["s_tokenizers_2t"]
        speed["two_threads"] = {
            "how": "child process with RAYON_NUM_THREADS=2, TOKENIZERS_PARALLELISM=true; per file "
                   "chunks of ~64K chars cut after a newline followed by [space] non-whitespace, one batch "
                   "call per file (ids checked equal to the one-thread ids)",
            "transformers": {"seconds": round(s_hf2, 4), "mb_per_s": round(tot_bytes / s_hf2 / 1e6, 4)},
            "tokenizers": {"seconds": round(s_raw2, 4), "mb_per_s": round(tot_bytes / s_raw2 / 1e6, 4)},
        }
    speed["files"] = speed_files
    write_text(out / "qwen2_hf_speed.json", json.dumps(speed, indent=1) + "\n")
    one = speed["one_thread"]
    print(f"speed, 1 thread: transformers {one['transformers']['mb_per_s']:.3f} MB/s, "
          f"tokenizers {one['tokenizers']['mb_per_s']:.3f} MB/s")
    if "two_threads" in speed:
        two = speed["two_threads"]
        print(f"speed, 2 threads: transformers {two['transformers']['mb_per_s']:.3f} MB/s, "
              f"tokenizers {two['tokenizers']['mb_per_s']:.3f} MB/s")


if __name__ == "__main__":
    main()
