// pn_tokenizer: byte-level BPE exactly as Hugging Face `tokenizers` runs it for Qwen2/Qwen2.5/Qwen3,
// GPT-2, Llama 3, SmolLM2 and RoBERTa-style tokenizers (REFERENCE.md §3; tests/tokenizers).
//
// Loads a checkpoint folder's tokenizer.json, or vocab.json + merges.txt (+ tokenizer_config.json for the
// added tokens and the tokenizer class). Encoding: added tokens are split out of the raw text first;
// each remaining piece is NFC-normalized (when the tokenizer asks for it), split by the pre-tokenizer
// regex (PCRE2, Unicode classes, look-ahead), mapped to GPT-2's byte-level alphabet and merged by rank.
// Decoding maps tokens back to raw bytes, so a token holding half of a UTF-8 sequence round-trips.
#ifndef PN_TOKENIZER_H
#define PN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pn_tokenizer pn_tokenizer;

// Load from a folder. Returns NULL with the error set (file and problem named).
pn_tokenizer *pn_tokenizer_load(const char *dir);
// The project's own byte-level vocabulary for synthetic data: ids 0..255 are the bytes, 256 is
// "<|endoftext|>" (eos). No merges, no pre-tokenizer.
pn_tokenizer *pn_tokenizer_bytes(void);
void pn_tokenizer_free(pn_tokenizer *tok);

// Vocabulary size (largest id + 1, added tokens included) and special ids (-1 when absent).
int pn_tokenizer_vocab_size(const pn_tokenizer *tok);
int pn_tokenizer_eos_id(const pn_tokenizer *tok);
int pn_tokenizer_bos_id(const pn_tokenizer *tok);
// A short identity string ("bpe vocab 151665 fnv1a64:<16 hex digits>", a hash of the vocabulary, merges,
// added tokens, normalizer and pre-tokenizer — not of the file format) stored in data shards so a shard
// made with another tokenizer is refused.
const char *pn_tokenizer_identity(const pn_tokenizer *tok);

// Encode `len` bytes of text (any bytes; invalid UTF-8 is kept as bytes, never dropped). Added tokens
// are recognized when allow_special is set (HF's default), else encoded as plain text. Appends to
// *ids (realloc'd, *n and *cap updated). Returns 0, or -1 with the error set. Thread-safe for
// concurrent calls on one tokenizer (each thread keeps its own cache).
int pn_tokenizer_encode(const pn_tokenizer *tok, const char *text, size_t len, int allow_special, int32_t **ids,
                        size_t *n, size_t *cap);

// Encode as Hugging Face's encode(text) does by default (add_special_tokens=True): the post-processor's
// special tokens (TemplateProcessing's BOS/EOS, RobertaProcessing's <s> </s>; none for Qwen2 or GPT-2)
// around pn_tokenizer_encode(..., allow_special = 1). Appends like pn_tokenizer_encode.
int pn_tokenizer_encode_special(const pn_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n,
                                size_t *cap);
// How many special tokens the post-processor puts before and after one sequence; returns their sum.
int pn_tokenizer_special_count(const pn_tokenizer *tok, int *prefix, int *suffix);

// Decode ids into raw bytes (NUL-terminated, *len without the NUL): the exact bytes encode consumed.
// skip_special drops added tokens marked special. -1 with the error set for an id outside the vocabulary.
int pn_tokenizer_decode(const pn_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, char **out,
                        size_t *len);

// The token's string form as stored in the vocabulary ("Ġthe"), or NULL for an unknown id.
const char *pn_tokenizer_token(const pn_tokenizer *tok, int32_t id);

#endif
