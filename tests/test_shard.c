// shard: writer → reader round trip, the HDF5 layout other tools see, atomic writes, and the catalogue
// of bad files (crafted here with the HDF5 API) that the reader must refuse with one line naming the file.
#include <dirent.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/pn_shard.h"
#include "../src/pn_common.h"
#include "pn_test.h"

#define VOCAB 100
#define EOS 99
#define IDENTITY "test bpe 100 sha256:0123456789abcdef"

static char dir[256];

static char *tmp_path(const char *name) { return pn_path_join(dir, name); }

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Entries of the test directory whose name contains `part` (".tmp." finds leftover temporaries).
static int count_entries(const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

static pn_shard_meta test_meta(void) {
    return (pn_shard_meta){.tokenizer = IDENTITY, .vocab_size = VOCAB, .eos_id = EOS, .format_version = 1,
                           .source = "test corpus"};
}

// Document d of length n: ids from a simple hash, never eos, then eos.
static uint32_t *make_doc(int d, size_t n) {
    uint32_t *ids = pn_malloc(n * sizeof *ids);
    for (size_t i = 0; i + 1 < n; i++) ids[i] = (uint32_t)((i * 2654435761u + (size_t)d * 97u) % EOS);
    ids[n - 1] = EOS;
    return ids;
}

// Writes docs of the given lengths; returns the concatenated stream (caller frees), NULL on failure.
static uint32_t *write_shard(const char *path, const size_t *lens, int n_docs, uint64_t *total) {
    pn_shard_meta meta = test_meta();
    pn_shard_writer *w = pn_shard_writer_open(path, &meta);
    if (!w) return NULL;
    size_t sum = 0;
    for (int d = 0; d < n_docs; d++) sum += lens[d];
    uint32_t *all = pn_malloc((sum + 1) * sizeof *all);
    size_t at = 0;
    for (int d = 0; d < n_docs; d++) {
        uint32_t *ids = make_doc(d, lens[d]);
        if (pn_shard_writer_add_doc(w, ids, lens[d])) fprintf(stderr, "add_doc: %s\n", pn_last_error());
        memcpy(all + at, ids, lens[d] * sizeof *ids);
        at += lens[d];
        free(ids);
    }
    if (pn_shard_writer_close(w)) {
        fprintf(stderr, "close: %s\n", pn_last_error());
        free(all);
        return NULL;
    }
    *total = sum;
    return all;
}

static void test_round_trip(void) {
    // Lengths cross the 64 Ki-token chunks and the writer's 1 Mi-token buffer; a 1-token doc is just eos.
    size_t lens[] = {1, 10, 150000, 3, 1200000, 7};
    int n_docs = 6;
    char *path = tmp_path("good.h5");
    uint64_t total = 0;

    pn_shard_meta meta = test_meta();
    pn_shard_writer *w = pn_shard_writer_open(path, &meta);
    CHECK(w != NULL, "%s", pn_last_error());
    CHECK(!file_exists(path) && count_entries(".tmp.") == 1, "an open writer shows only its temporary");
    pn_shard_writer_abort(w);
    CHECK(count_entries(".tmp.") == 0 && !file_exists(path), "abort leaves nothing");

    uint32_t *all = write_shard(path, lens, n_docs, &total);
    CHECK(all != NULL, "write failed");
    if (!all) return;
    CHECK(file_exists(path) && count_entries(".tmp.") == 0, "closed writer leaves the file and no temporary");

    pn_shard *s = pn_shard_open(path, IDENTITY, VOCAB);
    CHECK(s != NULL, "%s", pn_last_error());
    if (!s) {
        free(all);
        free(path);
        return;
    }
    const pn_shard_meta *m = pn_shard_get_meta(s);
    CHECK(!strcmp(m->tokenizer, IDENTITY) && m->vocab_size == VOCAB && m->eos_id == EOS && m->format_version == 1,
          "meta: '%s' %lld %lld %lld", m->tokenizer, (long long)m->vocab_size, (long long)m->eos_id,
          (long long)m->format_version);
    CHECK(!strcmp(m->source, "test corpus"), "source '%s'", m->source);
    CHECK(pn_shard_n_tokens(s) == total && pn_shard_n_docs(s) == (uint64_t)n_docs, "%llu tokens %llu docs",
          (unsigned long long)pn_shard_n_tokens(s), (unsigned long long)pn_shard_n_docs(s));

    uint32_t *back = pn_malloc(total * sizeof *back);
    CHECK(pn_shard_read(s, 0, total, back) == 0, "%s", pn_last_error());
    CHECK(!memcmp(back, all, total * sizeof *back), "full read differs");
    // Pieces across chunk boundaries, and an empty read.
    uint64_t starts[] = {0, 65530, 131071, total - 5};
    for (int i = 0; i < 4; i++) {
        uint32_t piece[20] = {0};
        size_t n = starts[i] + 20 <= total ? 20 : (size_t)(total - starts[i]);
        CHECK(pn_shard_read(s, starts[i], n, piece) == 0 && !memcmp(piece, all + starts[i], n * 4),
              "piece at %llu", (unsigned long long)starts[i]);
    }
    CHECK(pn_shard_read(s, total, 0, back) == 0, "empty read at the end");
    CHECK_ERR(pn_shard_read(s, total - 2, 3, back), "run past the end");

    uint64_t off = 0;
    for (int d = 0; d < n_docs; d++) {
        uint64_t b = 0, e = 0;
        CHECK(pn_shard_doc_range(s, (uint64_t)d, &b, &e) == 0 && b == off && e == off + lens[d], "doc %d: [%llu, %llu)",
              d, (unsigned long long)b, (unsigned long long)e);
        off += lens[d];
    }
    uint64_t offs[7];
    CHECK(pn_shard_read_offsets(s, 0, 7, offs) == 0 && offs[0] == 0 && offs[6] == total, "offsets");
    uint64_t b, e;
    CHECK_ERR(pn_shard_doc_range(s, (uint64_t)n_docs, &b, &e), "no document 6");
    CHECK(pn_shard_check_ids(s) == 0, "%s", pn_last_error());
    pn_shard_close(s);

    // What h5py users see: chunked + shuffle + deflate tokens, int64 and string attributes.
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t chunk = 0;
    CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 1, &chunk) == 1 && chunk == PN_SHARD_CHUNK_TOKENS,
          "tokens chunked by %llu", (unsigned long long)chunk);
    CHECK(H5Pget_nfilters(dcpl) == 2, "filters: %d", H5Pget_nfilters(dcpl));
    CHECK(H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0, "deflate available");
    unsigned flags, cd[4];
    size_t ncd = 4;
    CHECK(H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL) == H5Z_FILTER_SHUFFLE, "shuffle first");
    ncd = 4;
    CHECK(H5Pget_filter2(dcpl, 1, &flags, &ncd, cd, 0, NULL, NULL) == H5Z_FILTER_DEFLATE && cd[0] >= 1 && cd[0] <= 4,
          "deflate level %u", cd[0]);
    H5Pclose(dcpl);
    hid_t t = H5Dget_type(d);
    CHECK(H5Tequal(t, H5T_STD_U32LE) > 0, "tokens are uint32 LE");
    H5Tclose(t);
    H5Dclose(d);
    const char *int_attrs[] = {"vocab_size", "eos_id", "format_version", "n_tokens", "n_docs"};
    for (int i = 0; i < 5; i++) {
        hid_t a = H5Aopen(f, int_attrs[i], H5P_DEFAULT);
        hid_t at = H5Aget_type(a);
        CHECK(H5Tget_class(at) == H5T_INTEGER && H5Tget_size(at) == 8 && H5Tget_sign(at) == H5T_SGN_2,
              "%s is int64", int_attrs[i]);
        H5Tclose(at);
        H5Aclose(a);
    }
    const char *str_attrs[] = {"tokenizer", "source"};
    for (int i = 0; i < 2; i++) {
        hid_t a = H5Aopen(f, str_attrs[i], H5P_DEFAULT);
        hid_t at = H5Aget_type(a);
        CHECK(H5Tget_class(at) == H5T_STRING, "%s is a string", str_attrs[i]);
        H5Tclose(at);
        H5Aclose(a);
    }
    H5Fclose(f);

    // Damaged copies of the good file: truncated, and a stretch of compressed data overwritten.
    size_t len = 0;
    char *bytes = pn_read_file(path, &len);
    char *trunc = tmp_path("truncated.h5"), *corrupt = tmp_path("corrupt.h5");
    FILE *out = fopen(trunc, "wb");
    fwrite(bytes, 1, len / 2, out);
    fclose(out);
    pn_clear_error();
    s = pn_shard_open(trunc, NULL, 0);
    CHECK(s == NULL && strstr(pn_last_error(), "truncated.h5: not an HDF5 file or corrupted"), "got '%s'",
          s ? "success" : pn_last_error());
    pn_shard_close(s);
    memset(bytes + len / 2, 0x5a, 4096);
    out = fopen(corrupt, "wb");
    fwrite(bytes, 1, len, out);
    fclose(out);
    pn_clear_error();
    s = pn_shard_open(corrupt, NULL, 0);
    int rc = s ? pn_shard_check_ids(s) : -1;
    CHECK(rc != 0 && strstr(pn_last_error(), "corrupt.h5: "), "corrupted data must be reported, got rc=%d '%s'", rc,
          pn_last_error());
    pn_shard_close(s);

    // Expectations at open.
    pn_clear_error();
    s = pn_shard_open(path, "other bpe 100 sha256:ffff", 0);
    CHECK(s == NULL && strstr(pn_last_error(), "good.h5: made with tokenizer '" IDENTITY
                                               "' (vocab 100), not 'other bpe 100 sha256:ffff'"),
          "got '%s'", pn_last_error());
    pn_clear_error();
    s = pn_shard_open(path, NULL, 151665);
    CHECK(s == NULL && strstr(pn_last_error(), "good.h5: made with tokenizer '" IDENTITY "' (vocab 100), not vocab 151665"),
          "got '%s'", pn_last_error());

    unlink(trunc);
    unlink(corrupt);
    unlink(path);
    free(trunc);
    free(corrupt);
    free(bytes);
    free(back);
    free(all);
    free(path);
}

static void test_empty_shard(void) {
    char *path = tmp_path("empty.h5");
    uint64_t total = 1;
    uint32_t *all = write_shard(path, NULL, 0, &total);
    CHECK(all != NULL && total == 0, "empty shard written");
    pn_shard *s = pn_shard_open(path, IDENTITY, VOCAB);
    CHECK(s && pn_shard_n_tokens(s) == 0 && pn_shard_n_docs(s) == 0, "%s", s ? "counts" : pn_last_error());
    if (s) CHECK(pn_shard_check_ids(s) == 0, "check_ids on nothing");
    pn_shard_close(s);
    unlink(path);
    free(all);
    free(path);
}

static void test_writer_refusals(void) {
    char *path = tmp_path("refuse.h5");
    pn_shard_meta meta = test_meta();

    // Bad meta: nothing is created.
    pn_shard_meta bad = meta;
    bad.eos_id = VOCAB;
    pn_clear_error();
    CHECK(pn_shard_writer_open(path, &bad) == NULL && strstr(pn_last_error(), "eos id 100"), "%s", pn_last_error());
    bad = meta;
    bad.tokenizer = "";
    CHECK(pn_shard_writer_open(path, &bad) == NULL && strstr(pn_last_error(), "tokenizer identity"), "%s",
          pn_last_error());
    bad = meta;
    bad.format_version = 2;
    CHECK(pn_shard_writer_open(path, &bad) == NULL && strstr(pn_last_error(), "format version 2"), "%s",
          pn_last_error());
    char *nodir = tmp_path("no/such/dir/x.h5");
    pn_clear_error();
    CHECK(pn_shard_writer_open(nodir, &meta) == NULL && strstr(pn_last_error(), "cannot create"), "%s",
          pn_last_error());
    free(nodir);
    CHECK(count_entries("refuse") == 0, "refused meta leaves nothing");

    // Refused documents leave the writer as it was.
    pn_shard_writer *w = pn_shard_writer_open(path, &meta);
    uint32_t good[] = {5, 6, EOS}, no_eos[] = {5, 6, 7}, big[] = {5, 150, EOS};
    CHECK_ERR(pn_shard_writer_add_doc(w, good, 0), "document 0 is empty");
    CHECK_ERR(pn_shard_writer_add_doc(w, no_eos, 3), "does not end with eos id 99");
    CHECK_ERR(pn_shard_writer_add_doc(w, big, 3), "token 150 at position 1 is ≥ vocab size 100");
    CHECK(pn_shard_writer_add_doc(w, good, 3) == 0, "%s", pn_last_error());
    CHECK(pn_shard_writer_n_tokens(w) == 3 && pn_shard_writer_n_docs(w) == 1, "counts after refusals");
    CHECK(pn_shard_writer_close(w) == 0, "%s", pn_last_error());
    pn_shard *s = pn_shard_open(path, IDENTITY, VOCAB);
    CHECK(s && pn_shard_n_tokens(s) == 3, "only the good document");
    pn_shard_close(s);
    unlink(path);

    // A failure at close (here: the final name is taken by a directory) removes the temporary and
    // leaves nothing that looks like a shard.
    mkdir(path, 0755);
    w = pn_shard_writer_open(path, &meta);
    CHECK(w != NULL, "%s", pn_last_error());
    if (w) {
        pn_shard_writer_add_doc(w, good, 3);
        CHECK_ERR(pn_shard_writer_close(w), "rename failed");
    }
    CHECK(count_entries(".tmp.") == 0, "failed close leaves no temporary");
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "the directory is untouched");
    pn_clear_error();
    s = pn_shard_open(path, NULL, 0);
    CHECK(s == NULL && strstr(pn_last_error(), "refuse.h5: is a directory"), "%s", pn_last_error());
    rmdir(path);
    free(path);
}

// ---- crafted files ----

typedef struct craft {
    const uint32_t *tokens;
    size_t n_tokens;
    const uint64_t *offsets;
    size_t n_offsets;
    int64_t vocab, eos, version, n_tokens_attr, n_docs_attr;
    const char *tokenizer;
    const char *skip_attr;  // leave this attribute out
    int vocab_as_string;    // vocab_size written as a string
    int tokens_as_i64;      // tokens dataset of int64
    int no_tokens;          // no tokens dataset at all
} craft;

static const uint32_t craft_tokens[] = {1, 2, EOS, 3, 4, 5, 6, EOS};
static const uint64_t craft_offsets[] = {0, 3, 8};

static craft craft_default(void) {
    return (craft){.tokens = craft_tokens, .n_tokens = 8, .offsets = craft_offsets, .n_offsets = 3, .vocab = VOCAB,
                   .eos = EOS, .version = 1, .n_tokens_attr = 8, .n_docs_attr = 2, .tokenizer = IDENTITY};
}

static void craft_attr_i64(hid_t f, const craft *c, const char *name, int64_t v) {
    if (c->skip_attr && !strcmp(c->skip_attr, name)) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

// Fixed-length strings, as h5py writes numpy bytes: the reader must take those too.
static void craft_attr_str(hid_t f, const craft *c, const char *name, const char *v) {
    if (c->skip_attr && !strcmp(c->skip_attr, name)) return;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) > 0 ? strlen(v) : 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

// Contiguous (unchunked, uncompressed) datasets: also what a quick h5py script produces.
static char *craft_file(const char *name, const craft *c) {
    char *path = tmp_path(name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (!c->no_tokens) {
        hsize_t n = c->n_tokens;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        if (c->tokens_as_i64) {
            int64_t *v = pn_malloc(c->n_tokens * sizeof *v);
            for (size_t i = 0; i < c->n_tokens; i++) v[i] = c->tokens[i];
            hid_t d = H5Dcreate2(f, "tokens", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            H5Dclose(d);
            free(v);
        } else {
            hid_t d = H5Dcreate2(f, "tokens", H5T_STD_U32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->tokens);
            H5Dclose(d);
        }
        H5Sclose(sp);
    }
    hsize_t no = c->n_offsets;
    hid_t sp = H5Screate_simple(1, &no, NULL);
    hid_t d = H5Dcreate2(f, "doc_offsets", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->offsets);
    H5Dclose(d);
    H5Sclose(sp);
    craft_attr_str(f, c, "tokenizer", c->tokenizer);
    if (c->vocab_as_string) craft_attr_str(f, c, "vocab_size", "100");
    else craft_attr_i64(f, c, "vocab_size", c->vocab);
    craft_attr_i64(f, c, "eos_id", c->eos);
    craft_attr_i64(f, c, "format_version", c->version);
    craft_attr_i64(f, c, "n_tokens", c->n_tokens_attr);
    craft_attr_i64(f, c, "n_docs", c->n_docs_attr);
    craft_attr_str(f, c, "source", "crafted");
    H5Fclose(f);
    return path;
}

// Opens the crafted file and expects the error `needle` (NULL: expects success).
static void expect_open(const char *name, const craft *c, const char *needle) {
    char *path = craft_file(name, c);
    pn_clear_error();
    pn_shard *s = pn_shard_open(path, NULL, 0);
    if (!needle) {
        CHECK(s != NULL, "%s: %s", name, pn_last_error());
    } else {
        char want[512];
        snprintf(want, sizeof want, "%s: %s", name, needle);
        CHECK(s == NULL && strstr(pn_last_error(), want), "%s: wanted '%s', got '%s'", name, want,
              s ? "success" : pn_last_error());
    }
    pn_shard_close(s);
    unlink(path);
    free(path);
}

static void test_bad_files(void) {
    craft c = craft_default();
    expect_open("crafted_ok.h5", &c, NULL);

    // Ids beyond the vocabulary open fine (checking needs a full scan) and are caught by check_ids.
    uint32_t bad_ids[] = {1, 2, EOS, 3, 4, 5, 150, EOS};
    c.tokens = bad_ids;
    char *path = craft_file("bad_ids.h5", &c);
    pn_shard *s = pn_shard_open(path, IDENTITY, VOCAB);
    CHECK(s != NULL, "%s", pn_last_error());
    if (s) CHECK_ERR(pn_shard_check_ids(s), "bad_ids.h5: token 150 at position 6 is ≥ vocab size 100");
    pn_shard_close(s);
    unlink(path);
    free(path);

    uint64_t short_end[] = {0, 3, 7}, late_start[] = {1, 3, 8}, decreasing[] = {0, 5, 3, 8};
    c = craft_default();
    c.offsets = short_end;
    expect_open("offsets_end.h5", &c, "doc_offsets end at 7, not at n_tokens 8");
    c.offsets = late_start;
    expect_open("offsets_start.h5", &c, "doc_offsets[0] is 1, not 0");
    c.offsets = decreasing;
    c.n_offsets = 4;
    c.n_docs_attr = 3;
    expect_open("offsets_decrease.h5", &c, "doc_offsets decrease at index 2 (3 after 5)");
    c = craft_default();
    c.n_docs_attr = 5;
    expect_open("offsets_count.h5", &c, "'doc_offsets' holds 3 entries but n_docs 5 needs 6");
    c = craft_default();
    c.n_tokens_attr = 9;
    expect_open("n_tokens.h5", &c, "'tokens' holds 8 ids but n_tokens says 9");

    c = craft_default();
    c.skip_attr = "eos_id";
    expect_open("no_eos.h5", &c, "no 'eos_id' attribute");
    c.skip_attr = "tokenizer";
    expect_open("no_tokenizer.h5", &c, "no 'tokenizer' attribute");
    c.skip_attr = "format_version";
    expect_open("no_version.h5", &c, "no 'format_version' attribute");
    c = craft_default();
    c.vocab_as_string = 1;
    expect_open("vocab_string.h5", &c, "attribute 'vocab_size' is not an integer");
    c = craft_default();
    c.version = 2;
    expect_open("version2.h5", &c, "format_version 2 is not one this build reads (1)");
    c = craft_default();
    c.eos = 100;
    expect_open("eos_range.h5", &c, "eos_id 100 is not in the vocabulary");
    c = craft_default();
    c.tokens_as_i64 = 1;
    expect_open("tokens_i64.h5", &c, "dataset 'tokens' is not uint32");
    c = craft_default();
    c.no_tokens = 1;
    expect_open("no_tokens.h5", &c, "no 'tokens' dataset");

    // Not HDF5 at all.
    path = tmp_path("text.h5");
    FILE *f = fopen(path, "w");
    fputs("this is a text file with an .h5 name\n", f);
    fclose(f);
    pn_clear_error();
    s = pn_shard_open(path, NULL, 0);
    CHECK(s == NULL && strstr(pn_last_error(), "text.h5: not an HDF5 file or corrupted"), "%s", pn_last_error());
    unlink(path);
    free(path);
    path = tmp_path("missing.h5");
    pn_clear_error();
    s = pn_shard_open(path, NULL, 0);
    CHECK(s == NULL && strstr(pn_last_error(), "missing.h5: cannot open: No such file"), "%s", pn_last_error());
    free(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/pn_test_shard.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_empty_shard();
    test_writer_refusals();
    test_bad_files();
    CHECK(count_entries(".") == 2, "the test directory is empty at the end (%d entries)", count_entries("."));
    rmdir(dir);
    H5close(); // HDF5 keeps library state until exit; free it so the leak checker sees only ours
    return pn_test_done("shard");
}
