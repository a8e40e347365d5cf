// safetensors: writer → reader round trip, and the catalogue of damaged files the reader must refuse
// with a message naming the file and the problem.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static char dir[256];

static char *tmp_path(const char *name) { return pn_path_join(dir, name); }

// Writes an 8-byte length, the header text (length as given, or its real length when hlen < 0), data.
static char *write_raw(const char *name, const char *header, long long hlen, const void *data, size_t n) {
    char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    unsigned long long L = hlen < 0 ? strlen(header) : (unsigned long long)hlen;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(L >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    return p;
}

static int open_close(const char *path) {
    pn_safetensors st;
    int rc = pn_st_open(&st, path);
    if (!rc) pn_st_close(&st);
    return rc;
}

static void test_roundtrip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {pn_f32_to_bf16(1.5f), pn_f32_to_bf16(-2.0f), pn_f32_to_bf16(0.25f)};
    int32_t c[1] = {7};
    pn_st_decl decl[3] = {{.name = "a", .dtype = PN_ST_F32, .ndim = 2, .shape = {2, 3}},
                          {.name = "b.weight", .dtype = PN_ST_BF16, .ndim = 1, .shape = {3}},
                          {.name = "scalar", .dtype = PN_ST_I32, .ndim = 0}};
    const char *meta[] = {"format", "pt", NULL};
    char *p = tmp_path("ok.safetensors");
    pn_st_writer *w = pn_st_writer_begin(p, decl, 3, meta);
    CHECK(w != NULL, "%s", pn_last_error());
    CHECK(pn_st_writer_write(w, a, sizeof a) == 0, "write a");
    CHECK(pn_st_writer_write(w, b, sizeof b) == 0, "write b");
    CHECK(pn_st_writer_write(w, c, sizeof c) == 0, "write c");
    CHECK(pn_st_writer_finish(w) == 0, "%s", pn_last_error());
    pn_safetensors st;
    CHECK(pn_st_open(&st, p) == 0, "%s", pn_last_error());
    CHECK(st.n == 3, "n = %d", st.n);
    const pn_st_entry *ea = pn_st_find(&st, "a"), *eb = pn_st_find(&st, "b.weight"), *ec = pn_st_find(&st, "scalar");
    CHECK(ea && ea->dtype == PN_ST_F32 && ea->ndim == 2 && ea->shape[0] == 2 && ea->shape[1] == 3, "a header");
    CHECK(eb && eb->dtype == PN_ST_BF16 && pn_st_numel(eb) == 3, "b header");
    CHECK(ec && ec->ndim == 0 && pn_st_numel(ec) == 1, "scalar header");
    float fa[6], fb[3];
    CHECK(pn_st_to_f32(&st, ea, fa) == 0 && !memcmp(fa, a, sizeof a), "a data");
    CHECK(pn_st_to_f32(&st, eb, fb) == 0 && fb[0] == 1.5f && fb[1] == -2.0f && fb[2] == 0.25f, "b data");
    CHECK(ec && !memcmp(ec->data, c, 4), "scalar data");
    CHECK(pn_st_to_f32(&st, ec, fa) != 0 && strstr(pn_last_error(), "I32"), "I32 is not floating point");
    CHECK(pn_st_meta(&st, "format") && !strcmp(pn_st_meta(&st, "format"), "pt"), "metadata");
    // The header length is padded to a multiple of 8 (REFERENCE.md §2).
    FILE *f = fopen(p, "rb");
    unsigned char len8[8];
    CHECK(fread(len8, 1, 8, f) == 8, "read length");
    fclose(f);
    CHECK(len8[0] % 8 == 0, "header length %d not a multiple of 8", len8[0]);
    pn_st_close(&st);
    // An incomplete write leaves nothing behind.
    char *q = tmp_path("partial.safetensors");
    w = pn_st_writer_begin(q, decl, 3, NULL);
    pn_st_writer_write(w, a, sizeof a);
    CHECK(pn_st_writer_finish(w) != 0 && access(q, F_OK) != 0, "partial write must fail and leave no file");
    // Duplicate names are refused by the writer too.
    pn_st_decl dup[2] = {decl[0], decl[0]};
    CHECK(pn_st_writer_begin(q, dup, 2, NULL) == NULL && strstr(pn_last_error(), "duplicate"), "writer duplicate");
    free(p);
    free(q);
}

static void test_bad_files(void) {
    char zeros[64] = {0};
    char *p;
    p = tmp_path("missing.safetensors");
    CHECK_ERR(open_close(p), "cannot open");
    free(p);
    p = tmp_path("short.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    CHECK_ERR(open_close(p), "truncated");
    free(p);
    p = write_raw("past_end.safetensors", "{}", 9999, NULL, 0);
    CHECK_ERR(open_close(p), "runs past the end");
    free(p);
    p = write_raw("huge.safetensors", "{}", 1LL << 40, NULL, 0);
    CHECK_ERR(open_close(p), "100 MB limit");
    free(p);
    p = write_raw("not_json.safetensors", "{\"a\": {\"dtype\": \"F32\",", -1, NULL, 0);
    CHECK_ERR(open_close(p), "not valid JSON");
    free(p);
    p = write_raw("not_brace.safetensors", "[1, 2, 3]  ", -1, NULL, 0);
    CHECK_ERR(open_close(p), "does not start with '{'");
    free(p);
    p = write_raw("dup.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  -1, zeros, 8);
    CHECK_ERR(open_close(p), "duplicate");
    free(p);
    p = write_raw("overlap.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  -1, zeros, 12);
    CHECK_ERR(open_close(p), "overlaps");
    free(p);
    p = write_raw("gap.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  -1, zeros, 12);
    CHECK_ERR(open_close(p), "belong to no tensor");
    free(p);
    p = write_raw("uncovered.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1,
                  zeros, 12);
    CHECK_ERR(open_close(p), "tensors cover 4");
    free(p);
    p = write_raw("trunc_data.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1,
                  zeros, 8);
    CHECK_ERR(open_close(p), "truncated?");
    free(p);
    p = write_raw("size.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", -1, zeros, 4);
    CHECK_ERR(open_close(p), "needs 6");
    free(p);
    p = write_raw("dtype.safetensors", "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, zeros, 4);
    CHECK_ERR(open_close(p), "unknown dtype \"F128\"");
    free(p);
    p = write_raw("shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, zeros, 4);
    CHECK_ERR(open_close(p), "shape[0]");
    free(p);
    p = write_raw("offsets.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", -1, zeros, 4);
    CHECK_ERR(open_close(p), "bad data_offsets");
    free(p);
    p = write_raw("overflow.safetensors",
                  "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,0]}}", -1, zeros, 0);
    CHECK_ERR(open_close(p), "impossibly large");
    free(p);
    p = write_raw("meta.safetensors", "{\"__metadata__\":{\"format\":1}}", -1, NULL, 0);
    CHECK_ERR(open_close(p), "__metadata__");
    free(p);
    // Trailing spaces after the JSON are legal padding.
    p = write_raw("padded.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}     ", -1,
                  zeros, 2);
    CHECK(open_close(p) == 0, "padded header: %s", pn_last_error());
    // The error names the file.
    CHECK_ERR(open_close("/nonexistent/m.safetensors"), "/nonexistent/m.safetensors");
    free(p);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/pn_test_st_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    test_roundtrip();
    test_bad_files();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return pn_test_done("test_safetensors");
}
