// pn_shard: tokenized corpora as HDF5 files ("shards"), written by postnas-data and read by the loader.
//
// Layout (format_version 1), readable from h5py as well:
//   /tokens       1-D uint32, chunked (PN_SHARD_CHUNK_TOKENS), shuffle + deflate; every document's ids
//                 followed by its eos id, documents back to back
//   /doc_offsets  1-D uint64 of n_docs + 1 entries: document i is tokens[off[i] : off[i+1]]
//   attributes on "/": tokenizer (string, pn_tokenizer_identity), vocab_size, eos_id, format_version,
//                      n_tokens, n_docs (int64), source (string, free-form)
//
// The writer builds "<path>.tmp.<pid>" and renames it over path only once the file is complete and
// fsynced, so a shard that exists is whole. The reader validates the layout and the tokenizer before
// handing out a single token, and turns HDF5 failures into one-line errors that name the file. It opens
// regular files only (a FIFO is an error, not a hang), walks the file's global heaps before libhdf5 does
// (libhdf5 1.10 trusts their sizes), and reads a dataset only when its storage is what a shard holds:
// 1-D unsigned integers, contiguous and stored in full, or chunked (at most 4 Mi elements a chunk, shuffle /
// deflate / fletcher32 only) with every chunk stored and a stored size that can hold the extent; virtual,
// external, compact and linked-in datasets are refused, so a small file cannot claim billions of
// zero-filled ids. Every document must be non-empty and end with eos (the last one is checked at open,
// all of them by pn_shard_check_ids).
// HDF5 is called from one thread per shard handle at a time (the library is serialized anyway).
#ifndef PN_SHARD_H
#define PN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define PN_SHARD_FORMAT_VERSION 1
// Tokens per HDF5 chunk. A read decompresses every chunk it touches, and the loader reads windows of a
// few thousand tokens at random places, so chunks stay small (256 KiB) rather than the 4 MiB that would
// compress a little better.
#define PN_SHARD_CHUNK_TOKENS (1u << 16)

typedef struct pn_shard_meta {
    const char *tokenizer; // tokenizer identity string
    int64_t vocab_size;
    int64_t eos_id;
    int64_t format_version; // writer: 0 or PN_SHARD_FORMAT_VERSION
    const char *source;     // free-form description of the input (may be NULL when writing)
} pn_shard_meta;

// ---- writer ----

typedef struct pn_shard_writer pn_shard_writer;

// Starts "<path>.tmp.<pid>". NULL with the error set when meta is invalid or the file cannot be made.
pn_shard_writer *pn_shard_writer_open(const char *path, const pn_shard_meta *meta);
// Appends one document. ids must end with the eos id (the caller appends it) and be < vocab_size; a
// document that breaks this is refused and the writer stays as it was. A failed HDF5 write poisons the
// writer instead: close then returns -1 and removes the temporary.
int pn_shard_writer_add_doc(pn_shard_writer *w, const uint32_t *ids, size_t n);
uint64_t pn_shard_writer_n_tokens(const pn_shard_writer *w);
uint64_t pn_shard_writer_n_docs(const pn_shard_writer *w);
// Writes offsets and attributes, fsyncs and renames onto path. Frees w; 0, or -1 (nothing left behind).
int pn_shard_writer_close(pn_shard_writer *w);
// Gives up: frees w and removes the temporary.
void pn_shard_writer_abort(pn_shard_writer *w);

// ---- reader ----

typedef struct pn_shard pn_shard;

// Opens and validates a shard. expected_tokenizer (identity string) and expected_vocab are checked when
// given (non-NULL, non-zero). NULL with a one-line error naming the file otherwise.
pn_shard *pn_shard_open(const char *path, const char *expected_tokenizer, int64_t expected_vocab);
void pn_shard_close(pn_shard *s);

const char *pn_shard_path(const pn_shard *s);
const pn_shard_meta *pn_shard_get_meta(const pn_shard *s); // strings owned by the shard
uint64_t pn_shard_n_tokens(const pn_shard *s);
uint64_t pn_shard_n_docs(const pn_shard *s);

// Reads tokens[start : start + n] into dst. -1 when the range runs past n_tokens or HDF5 fails.
int pn_shard_read(pn_shard *s, uint64_t start, size_t n, uint32_t *dst);
// Reads doc_offsets[first : first + n] (n_docs + 1 entries exist).
int pn_shard_read_offsets(pn_shard *s, uint64_t first, size_t n, uint64_t *dst);
// Token range [*begin, *end) of document `doc`.
int pn_shard_doc_range(pn_shard *s, uint64_t doc, uint64_t *begin, uint64_t *end);

// Full scan: -1 with "X.h5: token 123 at position 456 is ≥ vocab size 100" at the first bad id, or
// "X.h5: document 7 does not end with eos id 2 ..." at the first document that does not end with eos.
int pn_shard_check_ids(pn_shard *s);

#endif
